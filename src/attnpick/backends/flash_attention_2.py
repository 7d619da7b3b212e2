"""FlashAttention-2 (transformers' own `flash_attention_2`): the flash-attn package (Ampere or newer, ROCm builds
too; flash-attention's README and setup.py), or the kernels hub's prebuilt `kernels-community/flash-attn2`.
transformers requires flash-attn >= 2.3.3 (`utils/import_utils.py`)."""

from __future__ import annotations

from attnpick.backends.base import HALF, Backend

BACKEND = Backend(
    name="flash_attention_2",
    title="FlashAttention-2",
    hf_name="flash_attention_2",
    distribution="flash-attn",
    versions=">=2.3.3,<3",
    modules={"flash-attn": "flash_attn"},
    devices=frozenset({"cuda", "rocm"}),
    min_capability=(8, 0),
    dtypes=HALF,
    max_head_dim=256,
    hub=True,
)
