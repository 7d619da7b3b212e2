"""PyTorch FlexAttention (transformers' `flex_attention`, torch >= 2.5): chosen only on request; on CPU it has a
forward only (PyTorch's flex_attention docs), so it cannot train there."""

from __future__ import annotations

from attnpick.backends.base import Backend

BACKEND = Backend(
    name="flex_attention",
    title="PyTorch FlexAttention",
    hf_name="flex_attention",
    min_torch="2.5",
    cpu_backward=False,
    in_auto=False,
)
