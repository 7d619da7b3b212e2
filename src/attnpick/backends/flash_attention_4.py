"""FlashAttention-4 (transformers' `flash_attention_4`): Hopper and Blackwell (the `flash-attn-4` distribution,
which installs `flash_attn.cute`), or the kernels hub's `kernels-community/flash-attn4`."""

from __future__ import annotations

from attnpick.backends.base import HALF, Backend, HubBuild
from attnpick.decide.facts import HubKernel

BACKEND = Backend(
    name="flash_attention_4",
    title="FlashAttention-4",
    hf_name="flash_attention_4",
    distribution="flash-attn-4",
    modules={"flash-attn-4": "flash_attn.cute"},
    devices=frozenset({"cuda"}),
    min_capability=(9, 0),
    dtypes=HALF,
    hub=HubBuild(HubKernel("kernels-community/flash-attn4", 0, ("cuda",))),
)
