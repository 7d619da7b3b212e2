"""eager (transformers' `eager`): the model's own matmul + softmax attention; the reference of parity checks and
the baseline of every speedup (`role="reference"`)."""

from __future__ import annotations

from typing import Any

from attnpick.backends.base import Backend


def _attention() -> Any:
    """eager has no AttentionInterface entry: each model calls its own `eager_attention_forward` (Llama's here)."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    return eager_attention_forward


def _causal_mask(seq: int, device: Any, dtype: Any) -> Any:
    """What transformers hands eager for an unpadded causal batch: an additive mask."""
    import torch

    return torch.full((seq, seq), torch.finfo(dtype).min, device=device, dtype=dtype).triu(1)[None, None]


BACKEND = Backend(name="eager", title="eager (PyTorch matmul + softmax)", hf_name="eager", role="reference",
                  attention=_attention, causal_mask=_causal_mask)
