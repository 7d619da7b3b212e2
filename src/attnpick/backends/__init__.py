"""Backends transformers lacks or loads differently: xFormers (registration) and Unsloth (its loader)."""
