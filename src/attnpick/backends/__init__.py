"""Backends transformers lacks or loads differently: xFormers and pinned SDPA kernels (registration), and
Unsloth (its loader)."""

from __future__ import annotations

from attnpick.backends.sdpa_pinned import PINNED, register_pinned_sdpa
from attnpick.backends.xformers import register_xformers


def ensure_registered(backend: str) -> None:
    """Register the attention implementation `backend` needs in transformers, if it is one of attnpick's."""
    if backend == "xformers":
        register_xformers()
    elif backend in PINNED:
        register_pinned_sdpa()
