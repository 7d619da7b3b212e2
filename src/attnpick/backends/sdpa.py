"""PyTorch SDPA (transformers' `sdpa`): `torch.nn.functional.scaled_dot_product_attention`, which picks its flash,
memory-efficient, cuDNN or math kernel at run time. The confirmation names the one that ran.

Packed training batches (one row of several sequences, `DataCollatorWithFlattening`) reach transformers' SDPA with
a block-diagonal causal mask over the whole row: the kernel computes every query against every key of the row, a
cost that grows with the square of the batch's tokens, and with a mask SDPA has no flash kernel on a GPU. `PACKED`
(`sdpa_packed`) is the same SDPA called on each packed sequence alone, causal and without a mask, from the sequence
boundaries the collator gives (`cu_seq_lens_q`, as FlashAttention's varlen kernel takes them): the same result (each
token sees its own sequence's earlier tokens) at the cost of the sequences' own squares. Any other batch (padded,
one sequence, generation) goes to transformers' SDPA unchanged. `attnpick train` switches a packed sdpa run to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attnpick.backends.base import Backend

if TYPE_CHECKING:
    from attnpick.decide.facts import EnvFacts

PACKED = "sdpa_packed"


def _note(facts: EnvFacts) -> str | None:
    return "SDPA kernels in this torch build: " + ", ".join(facts.sdpa_kernels) if facts.sdpa_kernels else None


def packed_attention_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                             cu_seq_lens_q: Any = None, cu_seq_lens_k: Any = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' SDPA on each packed sequence alone (query/key/value: batch 1, heads, tokens, head_dim); any
    batch without sequence boundaries, or with several rows, as transformers' SDPA takes it."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    bounds = [int(b) for b in (cu_seq_lens_q.tolist() if hasattr(cu_seq_lens_q, "tolist") else cu_seq_lens_q)]
    if bounds[0] != 0 or bounds[-1] != query.shape[2]:
        raise ValueError(f"packed sequence boundaries {bounds[:3]}...{bounds[-1:]} do not cover the row's "
                         f"{query.shape[2]} tokens")
    kwargs.pop("is_causal", None)
    spans = [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    parts = [sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None,
                                    is_causal=True, **kwargs)[0] for a, b in spans]
    return torch.cat(parts, dim=1), None


def register_packed() -> str:
    """`sdpa_packed` in AttentionInterface, with SDPA's own masks (used for every batch that is not packed); its
    name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PACKED, packed_attention_forward)
    AttentionMaskInterface.register(PACKED, sdpa_mask)
    return PACKED


BACKEND = Backend(name="sdpa", title="PyTorch SDPA", hf_name="sdpa", note=_note, picks_kernel_at_run_time=True,
                  packed=register_packed)
