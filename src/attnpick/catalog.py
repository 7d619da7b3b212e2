"""The attention backends, their requirements as data, and how to install them.

One `BackendSpec` per backend; `attnpick.decision.check()` is the one generic reader of these fields.
Sources for the numbers: flash-attention's README and setup.py (FA2: Ampere or newer, head_dim <= 256,
fp16/bf16; FA3: Hopper; FA4: Hopper and Blackwell), transformers' `utils/import_utils.py` (FA2 >= 2.3.3,
distribution names), xformers' `fmha` op attributes (bf16 needs sm80), Unsloth's `models/_utils.py`
(kernel choice: flash-attn on sm80+, else xformers, else SDPA) and PyTorch's flex_attention docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from packaging.version import InvalidVersion, Version

from attnpick.facts import EnvFacts, HubKernel

BackendName = Literal[
    "unsloth",
    "flash_attention_4",
    "flash_attention_3",
    "flash_attention_2",
    "xformers",
    "flex_attention",
    "sdpa",
    "eager",
    "sdpa_fa",
    "sdpa_efficient",
    "sdpa_cudnn",
    "sdpa_math",
]

DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32")
HALF = frozenset({"bfloat16", "float16"})
ANY_DTYPE = frozenset(DTYPES)
GPU_TYPES = frozenset({"cuda", "rocm", "xpu"})
ALL_DEVICES = frozenset({"cuda", "rocm", "mps", "xpu", "cpu"})


@dataclass(frozen=True)
class BackendSpec:
    """What one backend needs. Capability bounds apply to NVIDIA (`cuda`) devices only."""

    name: BackendName
    title: str
    hf_name: str | None
    distribution: str | None = None
    versions: str = ""
    devices: frozenset[str] = ALL_DEVICES
    min_capability: tuple[int, int] | None = None
    capability_majors: frozenset[int] | None = None
    dtypes: frozenset[str] = ANY_DTYPE
    bf16_min_capability: tuple[int, int] | None = None
    max_head_dim: int | None = None
    min_torch: str | None = None
    softcapping: bool = True
    sinks: bool = True
    cpu_backward: bool = True
    in_auto: bool = True
    cpu_mode_forced_only: bool = False
    needs_kernels_check: bool = False
    sdpa_kernel: str | None = None
    hub: bool = False  # transformers can also load this backend from the kernels hub (`kernels` package)


CATALOG: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            name="unsloth",
            title="Unsloth",
            hf_name=None,
            distribution="unsloth",
            devices=GPU_TYPES,
            min_capability=(7, 0),
            bf16_min_capability=(8, 0),
            cpu_mode_forced_only=True,
        ),
        BackendSpec(
            name="flash_attention_3",
            title="FlashAttention-3",
            hf_name="flash_attention_3",
            distribution="flash-attn-3",
            devices=frozenset({"cuda"}),
            capability_majors=frozenset({9}),
            dtypes=HALF,
            max_head_dim=256,
            hub=True,
        ),
        BackendSpec(
            name="flash_attention_4",
            title="FlashAttention-4",
            hf_name="flash_attention_4",
            distribution="flash-attn-4",
            devices=frozenset({"cuda"}),
            min_capability=(9, 0),
            dtypes=HALF,
            hub=True,
        ),
        BackendSpec(
            name="flash_attention_2",
            title="FlashAttention-2",
            hf_name="flash_attention_2",
            distribution="flash-attn",
            versions=">=2.3.3,<3",
            devices=frozenset({"cuda", "rocm"}),
            min_capability=(8, 0),
            dtypes=HALF,
            max_head_dim=256,
            hub=True,
        ),
        BackendSpec(
            name="xformers",
            title="xFormers",
            hf_name="xformers",
            distribution="xformers",
            devices=frozenset({"cuda"}),
            bf16_min_capability=(8, 0),
            softcapping=False,
            sinks=False,
            needs_kernels_check=True,
        ),
        BackendSpec(
            name="sdpa",
            title="PyTorch SDPA",
            hf_name="sdpa",
        ),
        BackendSpec(
            name="eager",
            title="eager (PyTorch matmul + softmax)",
            hf_name="eager",
        ),
        BackendSpec(
            name="flex_attention",
            title="PyTorch FlexAttention",
            hf_name="flex_attention",
            min_torch="2.5",
            cpu_backward=False,
            in_auto=False,
        ),
    )
}

# The guide's runtime order, on every OS; flex_attention is listed last and only ever chosen on request.
ORDER: tuple[str, ...] = tuple(CATALOG)

# PyTorch SDPA pinned to one kernel (attnpick/backends/sdpa_pinned.py): never in auto's order, used on
# request or by `--policy measured` when a bench showed one is fastest.
PINNED_SDPA: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(name="sdpa_fa", title="SDPA, flash kernel only", hf_name="sdpa_fa", in_auto=False,
                    sdpa_kernel="flash"),
        BackendSpec(name="sdpa_efficient", title="SDPA, memory-efficient kernel only", hf_name="sdpa_efficient",
                    devices=frozenset({"cuda", "rocm"}), in_auto=False, sdpa_kernel="efficient"),
        BackendSpec(name="sdpa_cudnn", title="SDPA, cuDNN kernel only", hf_name="sdpa_cudnn",
                    devices=frozenset({"cuda"}), min_capability=(8, 0), dtypes=HALF, in_auto=False,
                    sdpa_kernel="cudnn"),
        BackendSpec(name="sdpa_math", title="SDPA, math kernel only", hf_name="sdpa_math", in_auto=False,
                    sdpa_kernel="math"),
    )
}
CATALOG.update(PINNED_SDPA)
BACKEND_NAMES: tuple[str, ...] = tuple(CATALOG)

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

# xformers wheels are built against one torch release each (xformers release notes); installing another
# pairing gives "undefined symbol" at import. Torch releases not listed use the PyTorch index, which
# carries the xformers build made for each CUDA flavour of torch.
XFORMERS_FOR_TORCH: dict[str, str] = {
    "2.4.1": "0.0.28.post1",
    "2.5.1": "0.0.28.post3",
    "2.6.0": "0.0.29.post3",
    "2.7.0": "0.0.30",
    "2.7.1": "0.0.31.post1",
    "2.8.0": "0.0.32.post2",
}


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


def xformers_command(torch_version: str | None, cuda: str | None) -> str:
    """The pip command that installs the xformers build matching this torch, without replacing torch."""
    base, _, _ = (torch_version or "").partition("+")
    if base in XFORMERS_FOR_TORCH:
        return f"pip install --no-deps xformers=={XFORMERS_FOR_TORCH[base]}"
    if cuda:
        tag = "cu" + cuda.replace(".", "")
        return f"pip install --no-deps xformers --index-url https://download.pytorch.org/whl/{tag}"
    return "pip install --no-deps xformers"


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
            hints.append(InstallHint("xformers", xformers_command(facts.torch, facts.cuda),
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
        hints.append(InstallHint("xformers", xformers_command(facts.torch, facts.cuda),
                                 "FlashAttention-2 needs compute capability 8.0; xFormers runs on this GPU."))
    return hints


def _hub_build(facts: EnvFacts, backend: str) -> bool:
    kernel = hub_kernel(facts, backend)
    return kernel is not None and kernel.builds_for(facts.device.type)


def _fits(spec: BackendSpec, capability: tuple[int, int]) -> bool:
    if spec.min_capability and capability < spec.min_capability:
        return False
    return not (spec.capability_majors and capability[0] not in spec.capability_majors)
