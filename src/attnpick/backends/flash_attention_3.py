"""FlashAttention-3 (transformers' `flash_attention_3`): Hopper only (flash-attention's hopper/ folder, the
`flash-attn-3` distribution), or the kernels hub's `kernels-community/vllm-flash-attn3`."""

from __future__ import annotations

from attnpick.backends.base import HALF, Backend

BACKEND = Backend(
    name="flash_attention_3",
    title="FlashAttention-3",
    hf_name="flash_attention_3",
    distribution="flash-attn-3",
    modules={"flash-attn-3": "flash_attn_interface"},
    devices=frozenset({"cuda"}),
    capability_majors=frozenset({9}),
    dtypes=HALF,
    max_head_dim=256,
    hub=True,
)
