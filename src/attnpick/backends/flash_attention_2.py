"""FlashAttention-2 (transformers' `flash_attention_2`): the flash-attn package (Ampere or newer, ROCm builds
too; flash-attention's README and setup.py), or the kernels hub's prebuilt `kernels-community/flash-attn2`.
transformers requires flash-attn >= 2.3.3 (`utils/import_utils.py`). On Linux with compute capability 8.0 or more it is
the guide's advice (faster than xFormers); the package compiles against the user's torch, the hub build needs none."""

from __future__ import annotations

from attnpick.backends.base import HALF, Backend, HubBuild, InstallHint
from attnpick.decide.facts import EnvFacts, HubKernel

NAME = "flash_attention_2"

# transformers 5.24's hub table: flash-attn2 pinned to version 4 from torch 2.10 on, 3 before; AMD's aiter build on
# ROCm (FA2 and FA3 alike).
HUB = HubBuild(HubKernel("kernels-community/flash-attn2", 4, ("cuda", "xpu")),
               rocm=HubKernel("kernels-community/aiter-flash-attn", 2, ("rocm",)), older_torch=("2.10", 3))


def _install_hints(facts: EnvFacts, missing: frozenset[str]) -> tuple[InstallHint, ...]:
    cap = facts.device.capability_tuple
    if NAME not in missing or facts.device.type != "cuda" or facts.os == "windows" or cap is None or cap < (8, 0):
        return ()
    return (InstallHint(NAME, "pip install flash-attn --no-build-isolation", "FlashAttention-2 built from source "
                        "against your torch (needs nvcc; can take an hour).", order=4),)


BACKEND = Backend(
    name=NAME,
    title="FlashAttention-2",
    hf_name=NAME,
    distribution="flash-attn",
    versions=">=2.3.3,<3",
    modules={"flash-attn": "flash_attn"},
    devices=frozenset({"cuda", "rocm"}),
    min_capability=(8, 0),
    dtypes=HALF,
    max_head_dim=256,
    hub=HUB,
    install_hints=_install_hints,
)
