"""eager (transformers' `eager`): the model's own matmul + softmax attention; the reference of parity checks and
the baseline of every speedup."""

from __future__ import annotations

from attnpick.backends.base import Backend

BACKEND = Backend(name="eager", title="eager (PyTorch matmul + softmax)", hf_name="eager")
