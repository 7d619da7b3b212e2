"""PyTorch FlexAttention (transformers' `flex_attention`, torch >= 2.5): chosen only on request; on CPU it has a
forward only (PyTorch's flex_attention docs), so it cannot train there. With no mask it attends to every key, so its
benchmark row gets a causal BlockMask (and is credited causal FLOPs like every row)."""

from __future__ import annotations

from typing import Any

from attnpick.backends.base import Backend


def _causal_mask(seq: int, device: Any, dtype: Any) -> Any:
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(lambda b, h, q, kv: q >= kv, None, None, seq, seq, device=str(device))


BACKEND = Backend(
    name="flex_attention",
    title="PyTorch FlexAttention",
    hf_name="flex_attention",
    min_torch="2.5",
    cpu_backward=False,
    in_auto=False,
    causal_mask=_causal_mask,
)
