"""Stand-ins for the GPU kernels attnpick hands tensors to, for tests on a CPU: each one refuses what the real kernel
refuses (read from the library's own source or, for xFormers, checked by the library's own code) and computes a float64
reference otherwise.

- `varlen_attn(api)`: `torch.nn.attention.varlen.varlen_attn` with the signature of torch 2.10 (`is_causal`), 2.11
  (`window_size`, no GQA) or 2.12+ (`window_size`, `enable_gqa`): flash kernels take float16 / bfloat16 only,
  `[tokens, heads, head_dim]` with a contiguous last dimension, head_dim <= 256, int32 `cu_seq` on the tensors'
  device, `max_q` / `max_k` Python ints no shorter than any sequence, key/value heads equal to the query heads unless
  `enable_gqa` (and then dividing them).
- `flash_attn_func` / `flash_attn_varlen_func`: flash-attn 2.8.3's functions (same rules; GQA native; `[B, S, H, D]`).
- `memory_efficient_attention`: xFormers' own function, checked by xFormers' own `Inputs.validate_inputs()` and the
  `not_supported_reasons()` of the CUDA build's forward operators and, when the inputs need gradients, its backward
  operators, leaving out only what a CPU cannot have (the device, a build without kernels, bf16's capability check).
- `efficient_sdpa`: SDPA pinned to the memory-efficient kernel, which has no grouped-query attention.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

HALF = (torch.float16, torch.bfloat16)
CALLS: list[dict[str, Any]] = []  # what each stand-in was handed, for the tests to read


class Refused(RuntimeError):
    """What the real kernel would raise for these inputs."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise Refused(message)


def _check_flash_tensors(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gqa_allowed: bool, name: str) -> None:
    _require(q.dtype in HALF, f"{name}: FlashAttention only supports fp16 and bf16, got {q.dtype}")
    _require(q.dtype == k.dtype == v.dtype, f"{name}: query, key and value must have the same dtype")
    _require(q.device == k.device == v.device, f"{name}: query, key and value must be on one device")
    _require(q.shape[-1] <= 256, f"{name}: FlashAttention supports head_dim <= 256, got {q.shape[-1]}")
    _require(all(t.stride(-1) == 1 for t in (q, k, v)), f"{name}: the last dimension must be contiguous")
    heads, kv_heads = q.shape[-2], k.shape[-2]
    if gqa_allowed:
        _require(heads % kv_heads == 0, f"{name}: {heads} query heads do not divide into {kv_heads} kv heads")
    else:
        _require(heads == kv_heads, f"{name}: {kv_heads} kv heads for {heads} query heads without enable_gqa")


def _check_offsets(cu: torch.Tensor, total: int, longest: Any, device: torch.device, name: str) -> list[int]:
    _require(cu.dtype == torch.int32, f"{name}: cu_seqlens must be int32, got {cu.dtype}")
    _require(cu.dim() == 1 and cu.device == device, f"{name}: cu_seqlens must be 1-D on {device}")
    _require(isinstance(longest, int) and not isinstance(longest, bool), f"{name}: max_seqlen must be a Python int")
    bounds = cu.tolist()
    _require(bounds[0] == 0 and bounds[-1] == total, f"{name}: cu_seqlens must run from 0 to {total}, got {bounds}")
    lengths = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
    _require(all(n >= 0 for n in lengths), f"{name}: cu_seqlens must not decrease")
    _require(max(lengths, default=0) <= longest, f"{name}: max_seqlen {longest} is shorter than a sequence")
    return bounds


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None, left: int, right: int,
            bias: torch.Tensor | None = None) -> torch.Tensor:
    """[heads, q, d] x [kv_heads, kv, d] in float64, causal window aligned bottom-right (-1: unbounded)."""
    q, k, v = q.double(), k.double(), v.double()
    groups = q.shape[0] // k.shape[0]
    k, v = k.repeat_interleave(groups, 0), v.repeat_interleave(groups, 0)
    scores = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5 if scale is None else scale)
    rows = torch.arange(q.shape[1]).unsqueeze(1) + (k.shape[1] - q.shape[1])
    cols = torch.arange(k.shape[1]).unsqueeze(0)
    allowed = torch.ones(q.shape[1], k.shape[1], dtype=torch.bool)
    if right >= 0:
        allowed &= cols <= rows + right
    if left >= 0:
        allowed &= cols >= rows - left
    scores = scores.masked_fill(~allowed, float("-inf"))
    if bias is not None:
        scores = scores + bias.double()
    return torch.nan_to_num(scores.softmax(-1)) @ v


def _varlen_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: list[int], cu_k: list[int],
                      scale: float | None, window: tuple[int, int]) -> torch.Tensor:
    out = torch.zeros(q.shape[0], q.shape[1], v.shape[-1], dtype=torch.float64)
    for (qs, qe), (ks, ke) in zip(zip(cu_q, cu_q[1:], strict=False), zip(cu_k, cu_k[1:], strict=False), strict=True):
        if qe > qs:
            part = _attend(q[qs:qe].transpose(0, 1), k[ks:ke].transpose(0, 1), v[ks:ke].transpose(0, 1), scale,
                           *window)
            out[qs:qe] = part.transpose(0, 1)
    return out.to(q.dtype)


def varlen_attn(api: str = "2.13") -> Any:
    """A stand-in for torch's `varlen_attn` with the keywords of torch `api` ("2.10", "2.11" or "2.13")."""

    def run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=None, window=(-1, -1), enable_gqa=False):
        _require(query.dim() == key.dim() == value.dim() == 3, "varlen_attn: takes [tokens, heads, head_dim]")
        _check_flash_tensors(query, key, value, enable_gqa, "varlen_attn")
        bounds_q = _check_offsets(cu_seq_q, query.shape[0], max_q, query.device, "varlen_attn")
        bounds_k = _check_offsets(cu_seq_k, key.shape[0], max_k, query.device, "varlen_attn")
        CALLS.append({"kernel": "varlen_attn", "api": api, "dtype": query.dtype, "heads": query.shape[1],
                      "kv_heads": key.shape[1], "cu": bounds_q, "max_q": max_q, "window": tuple(window),
                      "enable_gqa": enable_gqa, "grad": query.requires_grad})
        return _varlen_reference(query, key, value, bounds_q, bounds_k, scale, tuple(window))

    if api == "2.10":
        def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
            return run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, None, (-1, 0) if is_causal else (-1, -1))
    elif api == "2.11":
        def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                        window_size=(-1, -1)):
            return run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale, window_size)
    else:
        def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                        window_size=(-1, -1), enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):
            return run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale, window_size, enable_gqa)
    return varlen_attn


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash-attn 2.8.3's `flash_attn_func`: q `[B, S, H, D]`, k/v `[B, S, Hkv, D]`."""
    _require(q.dim() == 4, "flash_attn_func: takes [batch, seqlen, heads, head_dim]")
    _check_flash_tensors(q, k, v, True, "flash_attn_func")
    CALLS.append({"kernel": "flash_attn_func", "dtype": q.dtype, "causal": causal, "grad": q.requires_grad})
    left, right = window_size
    out = [_attend(q[b].transpose(0, 1), k[b].transpose(0, 1), v[b].transpose(0, 1), softmax_scale, left,
                   0 if causal else right).transpose(0, 1) for b in range(q.shape[0])]
    return torch.stack(out).to(q.dtype)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, block_table=None):
    """flash-attn 2.8.3's `flash_attn_varlen_func`: `[tokens, heads, head_dim]` and int32 offsets."""
    _require(q.dim() == 3, "flash_attn_varlen_func: takes [tokens, heads, head_dim]")
    _check_flash_tensors(q, k, v, True, "flash_attn_varlen_func")
    max_q = int(max_seqlen_q) if isinstance(max_seqlen_q, torch.Tensor) else max_seqlen_q
    max_k = int(max_seqlen_k) if isinstance(max_seqlen_k, torch.Tensor) else max_seqlen_k
    bounds_q = _check_offsets(cu_seqlens_q, q.shape[0], max_q, q.device, "flash_attn_varlen_func")
    bounds_k = _check_offsets(cu_seqlens_k, k.shape[0], max_k, q.device, "flash_attn_varlen_func")
    CALLS.append({"kernel": "flash_attn_varlen_func", "dtype": q.dtype, "causal": causal, "cu": bounds_q,
                  "grad": q.requires_grad})
    left, right = window_size
    return _varlen_reference(q, k, v, bounds_q, bounds_k, softmax_scale, (left, 0 if causal else right))


# xFormers' operators as its CUDA build dispatches them; reasons a CPU machine always has are left out.
_NOT_ON_THIS_MACHINE = ("device=", "wasn't build with CUDA", "requires device with capability",
                        "bf16 is only supported", "operator wasn't built", "non-deterministic")


def xformers_site() -> Path | None:
    """Where xFormers' Python package is for the contract tests: importable already (the Unsloth lane), or the folder
    ./dev installs it into (`.venv/contracts`, outside the venv's site-packages so that attnpick's probe on this CPU
    machine does not count it installed)."""
    folder = Path(os.environ.get("ATTNPICK_CONTRACTS_SITE", Path(__file__).resolve().parents[1] / ".venv/contracts"))
    return folder if (folder / "xformers").is_dir() else None


def xformers_reasons(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_bias: Any, p: float,
                     scale: float | None, needs_gradient: bool) -> tuple[list[str], list[str]]:
    """(forward, backward) operator names that accept these inputs by xFormers' own checks (CUDA dispatch order),
    or raise `Refused` with every operator's reasons."""
    from unittest import mock

    from xformers.ops import fmha
    from xformers.ops.fmha import Inputs, dispatch

    inp = Inputs(query=query, key=key, value=value, attn_bias=attn_bias, p=p, scale=scale)
    try:
        inp.validate_inputs()
    except ValueError as exc:
        raise Refused(f"memory_efficient_attention: {exc}") from None
    with mock.patch.object(torch.version, "cuda", "12.8"):
        forward = list(dispatch._dispatch_fw_priority_list(inp, needs_gradient))
    backward = [fmha.flash3.BwOp, fmha.flash.BwOp, fmha.cutlass.BwOp] if needs_gradient else []

    def usable(ops: list[Any], what: str) -> list[str]:
        found, why = [], []
        for op in ops:
            reasons = [r for r in op.not_supported_reasons(inp) if not r.startswith(_NOT_ON_THIS_MACHINE)]
            if reasons:
                why.append(f"{op.NAME}: {'; '.join(reasons)}")
            else:
                found.append(op.NAME)
        if not found:
            raise Refused(f"No operator found for `memory_efficient_attention_{what}`: " + " | ".join(why))
        return found

    return usable(forward, "forward"), usable(backward, "backward") if needs_gradient else []


def memory_efficient_attention(query, key, value, attn_bias=None, p=0.0, scale=None, *, op=None, output_dtype=None):
    """`xformers.ops.memory_efficient_attention`, checked by xFormers itself, then computed in float64."""
    from xformers.ops.fmha.attn_bias import LowerTriangularFromBottomRightMask

    grads = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    forward, backward = xformers_reasons(query, key, value, attn_bias, p, scale, grads)
    kind = "none" if attn_bias is None else "causal" if isinstance(attn_bias, LowerTriangularFromBottomRightMask) \
        else "bias" if isinstance(attn_bias, torch.Tensor) else type(attn_bias).__name__
    _require(kind in ("none", "causal", "bias"), f"stand-in: no reference for attn_bias {kind}")
    CALLS.append({"kernel": "xformers", "dtype": query.dtype, "dims": query.dim(), "forward": forward,
                  "backward": backward, "bias": kind, "grad": grads})
    five_d = query.dim() == 5
    q, k, v = (t.flatten(2, 3) if five_d else t for t in (query, key, value))  # [B, S, H, D]
    out = []
    for b in range(q.shape[0]):
        extra = None
        if kind == "bias":
            extra = attn_bias[b].flatten(0, 1) if five_d else attn_bias[b]
        right = 0 if kind == "causal" else -1
        part = _attend(q[b].transpose(0, 1), k[b].transpose(0, 1), v[b].transpose(0, 1), scale, -1, right, extra)
        out.append(part.transpose(0, 1))
    result = torch.stack(out).to(query.dtype)
    return result.unflatten(2, query.shape[2:4]) if five_d else result


def efficient_sdpa(real: Any) -> Any:
    """`torch.nn.functional.scaled_dot_product_attention` that, while SDPA is pinned to its memory-efficient kernel
    alone, refuses grouped-query attention as that kernel does ("No available kernel"), then runs the real one."""

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        flags = torch.backends.cuda
        only_efficient = (flags.mem_efficient_sdp_enabled() and not flags.flash_sdp_enabled()
                          and not flags.math_sdp_enabled())
        if only_efficient:
            _require(not enable_gqa and key.shape[1] == query.shape[1],
                     "No available kernel. Aborting execution. (memory-efficient attention has no GQA: "
                     f"{query.shape[1]} query heads, {key.shape[1]} kv heads, enable_gqa={enable_gqa})")
            CALLS.append({"kernel": "sdpa_efficient", "heads": query.shape[1], "kv_heads": key.shape[1]})
        with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
            return real(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                        enable_gqa=enable_gqa)

    return sdpa

