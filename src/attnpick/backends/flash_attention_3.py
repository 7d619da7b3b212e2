"""FlashAttention-3 (transformers' `flash_attention_3`): Hopper only (flash-attention's hopper/ folder, the
`flash-attn-3` distribution), or the kernels hub's `kernels-community/vllm-flash-attn3` (AMD's aiter build on ROCm)."""

from __future__ import annotations

from attnpick.backends.base import HALF, Backend, HubBuild, InstallHint
from attnpick.decide.facts import EnvFacts, HubKernel

NAME = "flash_attention_3"
HUB = HubBuild(HubKernel("kernels-community/vllm-flash-attn3", 1, ("cuda",)),
               rocm=HubKernel("kernels-community/aiter-flash-attn", 2, ("rocm",)))


def _install_hints(facts: EnvFacts, missing: frozenset[str]) -> tuple[InstallHint, ...]:
    cap = facts.device.capability_tuple
    if NAME not in missing or facts.device.type != "cuda" or facts.os == "windows" or cap is None or cap[0] != 9:
        return ()
    return (InstallHint(NAME, "pip install flash-attn-3 --no-build-isolation", "Hopper: FlashAttention-3 built from "
                        "flash-attention's hopper/ folder (compiles).", order=3),)


BACKEND = Backend(
    name=NAME,
    title="FlashAttention-3",
    hf_name=NAME,
    distribution="flash-attn-3",
    modules={"flash-attn-3": "flash_attn_interface"},
    devices=frozenset({"cuda"}),
    capability_majors=frozenset({9}),
    dtypes=HALF,
    max_head_dim=256,
    hub=HUB,
    install_hints=_install_hints,
)
