"""PyTorch's own varlen FlashAttention as a transformers attention implementation: `torch_varlen`.

`torch.nn.attention.varlen.varlen_attn` (torch >= 2.10; GQA through `enable_gqa` from 2.12; CUDA only, on
FlashAttention-2-class GPUs, and only in torch builds that ship the flash kernel: Windows builds do not) runs
FlashAttention's variable-length kernel with nothing installed. Sequences are given as one token axis plus
cumulative offsets (`cu_seqlens`), so padded and packed batches cost only their real tokens.

The name holds no "flash": transformers takes any such name for a kernels-hub FlashAttention kernel.

How a batch becomes sequences (`sequences()`):
- a 2D padding mask (the mask function is transformers' `flash_attention_mask`: None when nothing is padded):
  the real tokens of each row, gathered, and scattered back with zeros at padding positions;
- no mask but `position_ids` that restart (padding-free packing, TRL's and attnpick's collators): one sequence
  from each restart to the next; `cu_seq_lens_q`/`max_length_q` from a flattening collator are taken as given;
- otherwise every row is one sequence.
Attention is causal (`window_size=(-1, 0)`, or `(sliding_window - 1, 0)`). GQA passes key/value with their own head
count (`enable_gqa`, torch >= 2.12); torch 2.10-2.11's `varlen_attn` has no GQA, so there key/value are repeated to the
query heads first (a copy per layer, as transformers' eager and SDPA paths make).

The sequences are worked out once per forward, not once per layer: every layer gets the same mask (or
`position_ids`) tensor, so the offsets are kept for that tensor (while it lives and is not modified) and the
device-to-host reads they need (the longest sequence, the real tokens' indices) happen once. Offsets a flattening
collator gives (`cu_seq_lens_q`, `max_length_q` as a Python int) need none.

Inputs reach the kernel in half precision by transformers' own FlashAttention rule (`base.kernel_inputs`): under
QLoRA they arrive in float32, which the kernel refuses.

Decoding with a KV cache (fewer queries than keys) and a caller's own 4-D mask go to PyTorch SDPA with an explicit
boolean mask, causal aligned bottom-right: decode steps are memory-bound, and the varlen kernel's gain is in
training and prefill, which it runs.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import TYPE_CHECKING, Any

from attnpick.backends.base import HALF, Backend, kernel_inputs, refuse_softcap_and_sinks
from attnpick.util.versions import at_least

if TYPE_CHECKING:
    from attnpick.decide.facts import EnvFacts

NAME = "torch_varlen"


@cache
def _parameters() -> frozenset[str]:
    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def _varlen_kernel(query: Any, key: Any, value: Any, cu_q: Any, cu_k: Any, max_q: int, max_k: int,
                   scale: float | None, window: tuple[int, int], gqa: bool) -> Any:
    """The real kernel on `[tokens, heads, head_dim]` tensors, called with this torch's keywords: torch 2.10 says
    causal as `is_causal` and has no `scale` (the query is scaled instead), later releases say `window_size=(-1, 0)`;
    GQA is `enable_gqa` (2.12), before which key/value are repeated to the query heads."""
    from torch.nn.attention.varlen import varlen_attn

    params = _parameters()
    kwargs: dict[str, Any] = {}
    if "scale" in params:
        kwargs["scale"] = scale
    elif scale is not None and scale != query.shape[-1] ** -0.5:  # torch 2.10: always 1/sqrt(head_dim)
        query = query * (scale * query.shape[-1] ** 0.5)
    if "window_size" in params:
        kwargs["window_size"] = window
    elif window == (-1, 0):
        kwargs["is_causal"] = True
    elif window != (-1, -1):
        raise ValueError("this torch's varlen_attn has no sliding window; upgrade torch or use flash_attention_2")
    if gqa and "enable_gqa" in params:
        kwargs["enable_gqa"] = True
    elif gqa:
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    return varlen_attn(query, key, value, cu_q, cu_k, max_q, max_k, **kwargs)


# Tests on machines without CUDA substitute a reference here (the varlen kernel has no CPU implementation).
KERNEL = _varlen_kernel


# The last forward's sequences: (weak reference to the mask or position_ids tensor, its version, batch, length,
# device) -> sequences. Every layer of one forward passes the same tensor.
_LAST: tuple[tuple[Any, ...], tuple[Any, int, Any]] | None = None


def sequences(attention_mask: Any, position_ids: Any, batch: int, length: int, device: Any,
              given: dict[str, Any] | None = None) -> tuple[Any, int, Any]:
    """(cu_seqlens int32 [n+1], longest sequence, flat indices of the real tokens or None when every token is real)
    for a batch of `batch` rows of `length` tokens; worked out once per mask (or position_ids) tensor."""
    global _LAST
    given = given or {}
    if attention_mask is None and given.get("cu_seq_lens_q") is not None:
        return _given(given, device)
    source = attention_mask if attention_mask is not None else position_ids
    if source is None:
        return _compute(None, None, batch, length, device)
    import weakref

    key = (source._version, batch, length, str(device))
    if _LAST is not None and _LAST[0][0]() is source and _LAST[0][1:] == key:
        return _LAST[1]
    found = _compute(attention_mask, position_ids, batch, length, device)
    _LAST = ((weakref.ref(source), *key), found)
    return found


def _given(given: dict[str, Any], device: Any) -> tuple[Any, int, Any]:
    """A flattening collator's own offsets: no device-to-host read when the longest length is a Python int."""
    import torch

    longest = given["max_length_q"]
    return (given["cu_seq_lens_q"].to(device=device, dtype=torch.int32),
            longest if isinstance(longest, int) else int(longest), None)


def _compute(attention_mask: Any, position_ids: Any, batch: int, length: int, device: Any) -> tuple[Any, int, Any]:
    import torch

    if attention_mask is not None:
        keep = attention_mask.bool().reshape(batch, length)
        lengths = keep.sum(dim=1, dtype=torch.int32)
        index = torch.nonzero(keep.reshape(-1), as_tuple=False).flatten()
        cu = torch.nn.functional.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))
        return cu, int(lengths.max()), index
    if position_ids is not None:
        flat = position_ids.expand(batch, length).reshape(-1)
        starts = torch.ones_like(flat, dtype=torch.bool)
        starts[1:] = flat[1:] != flat[:-1] + 1
        starts[::length] = True  # every row starts a sequence
        bounds = torch.nonzero(starts, as_tuple=False).flatten().to(torch.int32)
        cu = torch.cat([bounds, torch.tensor([batch * length], dtype=torch.int32, device=bounds.device)])
        return cu.to(device), int((cu[1:] - cu[:-1]).max()), None
    cu = torch.arange(0, (batch + 1) * length, length, dtype=torch.int32, device=device)
    return cu, length, None


def _window(causal: bool, sliding_window: int | None) -> tuple[int, int]:
    if not causal:
        return (-1, -1)
    return (sliding_window - 1, 0) if sliding_window else (-1, 0)


def _sdpa_with_mask(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None,
                    causal: bool, sliding_window: int | None) -> Any:
    """Decode steps and 4-D masks: PyTorch SDPA with an explicit boolean mask (causal aligned bottom-right, the
    padding of a 2-D mask, the sliding window), GQA as SDPA's `enable_gqa`."""
    import torch

    q_len, kv_len = query.shape[2], key.shape[2]
    if attention_mask is not None and attention_mask.dim() == 4:
        mask = attention_mask if attention_mask.dtype == torch.bool else attention_mask.to(query.dtype)
    else:
        rows = torch.arange(q_len, device=query.device).unsqueeze(1) + (kv_len - q_len)
        cols = torch.arange(kv_len, device=query.device).unsqueeze(0)
        mask = (cols <= rows) if causal else torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device)
        if sliding_window:
            mask = mask & (cols > rows - sliding_window)
        mask = mask[None, None]
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, None, -kv_len:]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, scale=scaling, enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous()


def varlen_attention_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    sliding_window: int | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-function signature (query `[B, Hq, S, D]`, key/value `[B, Hkv, Skv, D]`, output
    `[B, S, Hq, D]`), computed by PyTorch's varlen FlashAttention."""
    refuse_softcap_and_sinks(NAME, kwargs)
    if dropout and (module is None or module.training):
        raise ValueError("torch_varlen has no attention dropout; set the model's attention_dropout to 0")
    import torch

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    batch, q_heads, q_len, head_dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    if q_len != kv_len or (attention_mask is not None and attention_mask.dim() != 2):
        return _sdpa_with_mask(module, query, key, value, attention_mask, scaling, causal, sliding_window), None
    query, key, value = kernel_inputs(query, key, value, module)
    cu, longest, index = sequences(attention_mask, kwargs.get("position_ids"), batch, q_len, query.device, kwargs)
    q = query.transpose(1, 2).reshape(batch * q_len, q_heads, head_dim)
    k = key.transpose(1, 2).reshape(batch * kv_len, kv_heads, head_dim)
    v = value.transpose(1, 2).reshape(batch * kv_len, kv_heads, value.shape[-1])
    if index is not None:
        q, k, v = q[index], k[index], v[index]
    out = KERNEL(q, k, v, cu, cu, longest, longest, scaling, _window(causal, sliding_window), q_heads != kv_heads)
    if index is not None:
        full = torch.zeros(batch * q_len, q_heads, out.shape[-1], dtype=out.dtype, device=out.device)
        out = full.index_copy(0, index, out)
    return out.reshape(batch, q_len, q_heads, out.shape[-1]), None


def register_varlen() -> None:
    """Make `attn_implementation="torch_varlen"` valid for every transformers model in this process (imports
    transformers, not the kernel: that happens at the first attention call)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, flash_attention_mask)


def _note(facts: EnvFacts) -> str | None:
    if facts.torch and not at_least(facts.torch, "2.12"):
        return (f"torch {facts.torch}'s varlen_attn has no GQA: for GQA models key/value are repeated to the query "
                "heads (a copy per layer); torch >= 2.12 passes them as they are")
    return None


BACKEND = Backend(
    name=NAME,
    title="PyTorch varlen FlashAttention",
    hf_name=NAME,
    devices=frozenset({"cuda"}),
    min_capability=(8, 0),
    dtypes=HALF,
    max_head_dim=256,
    min_torch="2.10",
    softcapping=False,
    sinks=False,
    sdpa_kernel="flash",
    register=register_varlen,
    note=_note,
)
