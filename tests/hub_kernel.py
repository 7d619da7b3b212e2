"""A FlashAttention kernel laid out like a kernels-hub build (build/torch-cpu/), in pure torch: its attention calls
SDPA. Loaded through the kernels package's LOCAL_KERNELS, it lets the hub provider's whole path run on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

KERNEL = '''
import torch
import torch.nn.functional as F

PLANTED_FAILURE = {failure!r}


def _attention(q, k, v, causal, scale):
    q, k, v = (t.transpose(0, 1) for t in (q, k, v))  # [S, H, D] -> [H, S, D]
    mask = None
    if causal:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril(k.shape[-2] - q.shape[-2])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=k.shape[0] != q.shape[0])
    return out.transpose(0, 1)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    if PLANTED_FAILURE:
        raise RuntimeError(PLANTED_FAILURE)
    return torch.stack([_attention(q[i], k[i], v[i], causal, softmax_scale) for i in range(q.shape[0])])


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, block_table=None):
    if PLANTED_FAILURE:
        raise RuntimeError(PLANTED_FAILURE)
    pieces = []
    for i in range(len(cu_seqlens_q) - 1):
        qs, qe, ks, ke = (int(x) for x in (cu_seqlens_q[i], cu_seqlens_q[i + 1], cu_seqlens_k[i], cu_seqlens_k[i + 1]))
        pieces.append(_attention(q[qs:qe], k[ks:ke], v[ks:ke], causal, softmax_scale))
    return torch.cat(pieces)
'''


def write_kernel(folder: Path, failure: str | None = None) -> Path:
    """A kernel repo folder with one CPU build; `failure` makes every attention call raise it."""
    variant = folder / "build" / "torch-cpu"
    variant.mkdir(parents=True)
    (variant / "__init__.py").write_text(KERNEL.format(failure=failure), encoding="utf-8")
    (variant / "metadata.json").write_text(json.dumps({
        "id": "_flash_attn2_sdpa_cpu", "name": "flash-attn2", "version": 4, "license": "Apache-2.0",
        "python-depends": [], "backend": {"type": "cpu"}}), encoding="utf-8")
    return folder
