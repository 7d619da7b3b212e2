"""PyTorch SDPA (transformers' `sdpa`): `torch.nn.functional.scaled_dot_product_attention`, which picks its flash,
memory-efficient, cuDNN or math kernel at run time. The confirmation names the one that ran."""

from __future__ import annotations

from typing import TYPE_CHECKING

from attnpick.backends.base import Backend

if TYPE_CHECKING:
    from attnpick.decide.facts import EnvFacts


def _note(facts: EnvFacts) -> str | None:
    return "SDPA kernels in this torch build: " + ", ".join(facts.sdpa_kernels) if facts.sdpa_kernels else None


BACKEND = Backend(name="sdpa", title="PyTorch SDPA", hf_name="sdpa", note=_note, picks_kernel_at_run_time=True)
