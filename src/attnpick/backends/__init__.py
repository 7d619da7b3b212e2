"""Backends transformers lacks or loads differently: xFormers and pinned SDPA kernels (registration), and
Unsloth (its loader)."""

from __future__ import annotations


def ensure_registered(backend: str) -> None:
    """Register the attention implementation `backend` needs in transformers, if it is one of attnpick's."""
    from attnpick.backends.sdpa_pinned import PINNED, register_pinned_sdpa

    if backend == "xformers":
        from attnpick.backends.xformers import register_xformers

        register_xformers()
    elif backend in PINNED:
        register_pinned_sdpa()
