"""PyTorch SDPA pinned to one kernel, as attention implementations of their own.

SDPA is several kernels (flash, memory-efficient, cuDNN, math) and picks one silently. Registering
`sdpa_fa` (its FlashAttention kernel), `sdpa_efficient`, `sdpa_cudnn` and `sdpa_math` lets `attnpick bench`
measure each as its own row, and lets a measured winner be loaded. Masks are SDPA's own (`sdpa_mask`).
No name contains "flash": transformers takes any such name for a FlashAttention hub kernel.

The memory-efficient kernel has no grouped-query attention: where transformers would pass `enable_gqa=True`
(GQA and no mask: packed or unpadded batches), SDPA finds "No available kernel". `sdpa_efficient` repeats key/value
to the query heads first (a copy, as transformers itself does when a mask is given).
"""

from __future__ import annotations

from typing import Any

from attnpick.backends.base import HALF, Backend

# attn_implementation name -> torch.nn.attention.SDPBackend member
PINNED = {
    "sdpa_fa": "FLASH_ATTENTION",
    "sdpa_efficient": "EFFICIENT_ATTENTION",
    "sdpa_cudnn": "CUDNN_ATTENTION",
    "sdpa_math": "MATH",
}


# Kernels without grouped-query attention: key/value reach them repeated to the query heads.
NO_GQA = frozenset({"EFFICIENT_ATTENTION"})


class _Repeated:
    """The attention module as transformers' SDPA function reads it (`is_causal`, `num_key_value_groups`), once
    key/value are repeated: one group, so no `enable_gqa`."""

    num_key_value_groups = 1

    def __init__(self, module: Any) -> None:
        self.is_causal = getattr(module, "is_causal", True)
        self.training = getattr(module, "training", False)


def _pinned(member: str) -> Any:
    def forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

        if member in NO_GQA and key.shape[1] != query.shape[1]:
            groups = query.shape[1] // key.shape[1]
            module, key, value = _Repeated(module), repeat_kv(key, groups), repeat_kv(value, groups)
        with sdpa_kernel([getattr(SDPBackend, member)]):
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    forward.__qualname__ = f"sdpa_attention_forward[{member}]"
    return forward


def register_pinned_sdpa() -> None:
    """Register every pinned SDPA kernel in AttentionInterface and AttentionMaskInterface."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    for name, member in PINNED.items():
        AttentionInterface.register(name, _pinned(member))
        AttentionMaskInterface.register(name, sdpa_mask)


BACKENDS: tuple[Backend, ...] = (
    Backend(name="sdpa_fa", title="SDPA, flash kernel only", hf_name="sdpa_fa", in_auto=False, sdpa_kernel="flash",
            register=register_pinned_sdpa),
    Backend(name="sdpa_efficient", title="SDPA, memory-efficient kernel only", hf_name="sdpa_efficient",
            devices=frozenset({"cuda", "rocm"}), in_auto=False, sdpa_kernel="efficient", register=register_pinned_sdpa),
    Backend(name="sdpa_cudnn", title="SDPA, cuDNN kernel only", hf_name="sdpa_cudnn", devices=frozenset({"cuda"}),
            min_capability=(8, 0), dtypes=HALF, in_auto=False, sdpa_kernel="cudnn", register=register_pinned_sdpa),
    Backend(name="sdpa_math", title="SDPA, math kernel only", hf_name="sdpa_math", in_auto=False, sdpa_kernel="math",
            register=register_pinned_sdpa),
)
