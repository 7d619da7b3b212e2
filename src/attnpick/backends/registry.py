"""The ordered registry of attention backends (one `Backend` per file in `attnpick/backends/`), the distributions
attnpick probes (derived from it), the kernels hub's FlashAttention builds, and what to install.

`attnpick.decide.decision.assess()` is the one generic reader of the backends' requirements. Sources for the numbers:
flash-attention's README and setup.py (FA2: Ampere or newer, head_dim <= 256, fp16/bf16; FA3: Hopper; FA4: Hopper
and Blackwell), transformers' `utils/import_utils.py` (FA2 >= 2.3.3, distribution names), xformers' `fmha` op
attributes (bf16 needs sm80), Unsloth's `models/_utils.py` (kernel choice: flash-attn on sm80+, else xformers, else
SDPA), PyTorch's flex_attention and `torch.nn.attention.varlen` docs.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from attnpick.backends import (
    eager,
    flash_attention_2,
    flash_attention_3,
    flash_attention_4,
    flex_attention,
    sdpa,
    sdpa_pinned,
    torch_varlen,
    unsloth,
    xformers,
)
from attnpick.backends.base import ALL_DEVICES, ANY_DTYPE, DTYPES, GPU_TYPES, HALF, Backend
from attnpick.decide.facts import EnvFacts, HubKernel
from attnpick.errors import UsageError

__all__ = ["ALL_DEVICES", "ANY_DTYPE", "BACKENDS", "BACKEND_NAMES", "CATALOG", "DTYPES", "GPU_TYPES", "HALF",
           "ORDER", "PINNED_SDPA", "PROBED_MODULES", "Backend", "backend", "ensure_registered", "is_loader",
           "loader_api"]

# The guide's runtime order (Unsloth, FlashAttention, xFormers, PyTorch), with PyTorch's own varlen FlashAttention
# beside the FlashAttention packages it needs none of; flex_attention last, only ever chosen on request. Then the
# pinned SDPA kernels: never in auto's order, used on request or by `--policy measured` when a bench showed one is
# fastest. A new backend is one file in attnpick/backends/ and one line here.
BACKENDS: tuple[Backend, ...] = (
    unsloth.BACKEND,
    flash_attention_3.BACKEND,
    flash_attention_4.BACKEND,
    flash_attention_2.BACKEND,
    torch_varlen.BACKEND,
    xformers.BACKEND,
    sdpa.BACKEND,
    eager.BACKEND,
    flex_attention.BACKEND,
    *sdpa_pinned.BACKENDS,
)

CATALOG: dict[str, Backend] = {spec.name: spec for spec in BACKENDS}
PINNED_SDPA: dict[str, Backend] = {spec.name: spec for spec in sdpa_pinned.BACKENDS}
ORDER: tuple[str, ...] = tuple(name for name in CATALOG if name not in PINNED_SDPA)
BACKEND_NAMES: tuple[str, ...] = tuple(CATALOG)

# The distributions attnpick reports on, by their PyPI names, and the module an import check imports: the stack
# every run needs, then each backend's own (derived, so a backend cannot be missing from the probe).
STACK_MODULES: dict[str, str] = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "bitsandbytes": "bitsandbytes",
    "kernels": "kernels",
}
PROBED_MODULES: dict[str, str] = {**STACK_MODULES, **{dist: module for spec in BACKENDS
                                                      for dist, module in spec.modules.items()}}
# Imported alone, in a child of their own: they patch the libraries imported after them.
ISOLATED: tuple[str, ...] = tuple(dist for spec in BACKENDS if spec.import_alone for dist in spec.modules)


def backend(name: str) -> Backend:
    """The registered backend called `name`."""
    return CATALOG[name]


def is_loader(name: str) -> bool:
    """Whether `name` is a whole-model loader (Unsloth) rather than an attention function."""
    spec = CATALOG.get(name)
    return spec is not None and spec.is_loader


def loader_api(name: str) -> object | None:
    """The own API (`FastLanguageModel`-shaped) of the model loader `name`, or None for an attention function."""
    spec = CATALOG.get(name)
    return spec.api() if spec is not None and spec.api is not None else None


def ensure_registered(name: str) -> None:
    """Register the attention implementation `name` needs in transformers, if it is one of attnpick's own."""
    spec = CATALOG.get(name)
    if spec is not None and spec.register is not None:
        spec.register()


def details_for_module(module: str) -> dict[str, object]:
    """The facts a backend records beside a successful import of `module` (in the import-check child)."""
    for spec in BACKENDS:
        if spec.probe_details is not None and module in spec.modules.values():
            return spec.probe_details()
    return {}


# The kernels hub's FlashAttention builds as transformers 5.24 maps them (modeling_flash_attention_utils:
# FLASH_ATTN_KERNEL_FALLBACK, _VERSIONS, _DEVICES). Used only for a facts file that lacks the installed
# transformers' own table (`hub.flash_kernels`). flash-attn2 is pinned to version 4 from torch 2.10 on, 3 before.
HUB_KERNELS: dict[str, HubKernel] = {
    "flash_attention_2": HubKernel("kernels-community/flash-attn2", 4, ("cuda", "xpu")),
    "flash_attention_3": HubKernel("kernels-community/vllm-flash-attn3", 1, ("cuda",)),
    "flash_attention_4": HubKernel("kernels-community/flash-attn4", 0, ("cuda",)),
}
ROCM_HUB_KERNEL = HubKernel("kernels-community/aiter-flash-attn", 2, ("rocm",))  # FA2 and FA3 on ROCm
FLASH_ATTN2_BEFORE_TORCH_2_10 = 3  # flash-attn2's pinned version with torch < 2.10


def check_hub_facts(facts: EnvFacts, where: str) -> None:
    """A facts file's `hub.flash_kernels` names backends of this catalog (facts.py reads the file without it)."""
    unknown = sorted(set(facts.hub.flash_kernels) - set(HUB_KERNELS))
    if unknown:
        raise UsageError(f"{where}: 'hub.flash_kernels.{unknown[0]}' names no backend with a hub build here (known: "
                         f"{', '.join(HUB_KERNELS)}). Remove it, or write the file with 'attnpick doctor --json'.")


def hub_kernel(facts: EnvFacts, backend: str) -> HubKernel | None:
    """The kernels-hub build transformers would load for `backend` on this machine: the installed transformers'
    own table when the facts carry it, else transformers 5.24's."""
    if backend not in HUB_KERNELS:
        return None
    known = facts.hub.flash_kernels.get(backend)
    if known is not None:
        return known
    if facts.device.type == "rocm" and backend in ("flash_attention_2", "flash_attention_3"):
        return ROCM_HUB_KERNEL
    kernel = HUB_KERNELS[backend]
    if backend == "flash_attention_2" and facts.torch and _torch_before(facts.torch, "2.10"):
        return HubKernel(kernel.repo, FLASH_ATTN2_BEFORE_TORCH_2_10, kernel.devices)
    return kernel


def fetch_command(kernel: HubKernel) -> str:
    """How to get a hub kernel onto a machine without a connection: download on a connected one, carry the folder."""
    revision = f" --revision v{kernel.version}" if kernel.version is not None else ""
    return (f"on a connected machine: hf download {kernel.repo} --repo-type kernel{revision} --cache-dir "
            "kernel-cache; copy kernel-cache here and set KERNELS_CACHE to it (or LOCAL_KERNELS="
            f"{kernel.repo}=<a folder with its build/>)")


def _torch_before(version: str, bound: str) -> bool:
    try:
        return Version(version.partition("+")[0]).release < Version(bound).release
    except InvalidVersion:
        return False

@dataclass(frozen=True)
class InstallHint:
    backend: str
    command: str
    note: str = ""
    provider: str = "package"  # package (pip), hub (the kernels package, prebuilt builds from the hub)

    def to_dict(self) -> dict[str, str]:
        out = {"backend": self.backend, "provider": self.provider, "command": self.command}
        if self.note:
            out["note"] = self.note
        return out


def kernels_command(facts: EnvFacts) -> str:
    """`pip install kernels`, within the range the installed transformers accepts when it is known."""
    if facts.hub.kernels_range:
        return f"pip install 'kernels{facts.hub.kernels_range}'"
    return "pip install kernels"


def install_hints(facts: EnvFacts, missing: frozenset[str], kernels_usable: bool) -> list[InstallHint]:
    """What attnpick recommends installing. Unsloth first everywhere. FlashAttention: where the kernels hub has a
    build for this device, `pip install kernels` first (prebuilt, no compiler), the source build second. Windows
    keeps xFormers first (prebuilt wheels; the kernels docs document no Windows FlashAttention builds and
    recommend WSL 2). Only backends not yet usable are listed."""
    device_type, capability = facts.device.type, facts.device.capability_tuple
    if device_type not in GPU_TYPES:
        return []
    hints: list[InstallHint] = []
    if "unsloth" in missing:
        hints.append(InstallHint("unsloth", "pip install unsloth",
                                 "Unsloth pins its own transformers/trl range; use a separate venv if that clashes."))
    hub_fa = [name for name in ("flash_attention_3", "flash_attention_2") if name in missing
              and _hub_build(facts, name) and (capability is None or _fits(CATALOG[name], capability))]
    kernels_hint = None
    if hub_fa and not kernels_usable:
        repos = ", ".join(sorted({kernel.repo for kernel in (hub_kernel(facts, n) for n in hub_fa) if kernel}))
        kernels_hint = InstallHint(hub_fa[0], kernels_command(facts), f"prebuilt FlashAttention from the Hugging "
                                   f"Face kernels hub ({repos}), fetched on first use: no compiler, seconds",
                                   provider="hub")
    if device_type != "cuda":
        return hints + ([kernels_hint] if kernels_hint else [])
    if facts.os == "windows":
        if "xformers" in missing:
            hints.append(InstallHint("xformers", _install(xformers.BACKEND, facts),
                                     "Windows: xFormers has prebuilt wheels; --no-deps keeps your torch."))
        if kernels_hint:
            hints.append(InstallHint(kernels_hint.backend, kernels_hint.command,
                                     "the kernels docs document no Windows builds of the FlashAttention kernels and "
                                     "recommend WSL 2; attnpick's smoke run tells whether one loads here",
                                     provider="hub"))
        return hints
    if kernels_hint:
        hints.append(kernels_hint)
    if capability is not None and capability[0] == 9 and "flash_attention_3" in missing:
        hints.append(InstallHint("flash_attention_3", "pip install flash-attn-3 --no-build-isolation",
                                 "Hopper: FlashAttention-3 built from flash-attention's hopper/ folder (compiles)."))
    if capability is not None and capability >= (8, 0) and "flash_attention_2" in missing:
        hints.append(InstallHint("flash_attention_2", "pip install flash-attn --no-build-isolation",
                                 "FlashAttention-2 built from source against your torch (needs nvcc; can take an "
                                 "hour)."))
    elif capability is not None and capability < (8, 0) and "xformers" in missing:
        hints.append(InstallHint("xformers", _install(xformers.BACKEND, facts),
                                 "FlashAttention-2 needs compute capability 8.0; xFormers runs on this GPU."))
    return hints


def _install(spec: Backend, facts: EnvFacts) -> str:
    return spec.install(facts) if spec.install else f"pip install {spec.distribution}"


def _hub_build(facts: EnvFacts, backend: str) -> bool:
    kernel = hub_kernel(facts, backend)
    return kernel is not None and kernel.builds_for(facts.device.type)


def _fits(spec: Backend, capability: tuple[int, int]) -> bool:
    if spec.min_capability and capability < spec.min_capability:
        return False
    return not (spec.capability_majors and capability[0] not in spec.capability_majors)
