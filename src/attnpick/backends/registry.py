"""The ordered registry of attention backends: one `Backend` per file in `attnpick/backends/`, one line each below.
Everything else reads it: the distributions attnpick probes, the kernels-hub builds, the reference of every parity
check and speedup, the install hints (each backend's own, ordered, plus the one `pip install kernels` that serves
every FlashAttention hub build).

`attnpick.decide.decision.assess()` is the one generic reader of the backends' requirements. Sources for the numbers:
flash-attention's README and setup.py (FA2: Ampere or newer, head_dim <= 256, fp16/bf16; FA3: Hopper; FA4: Hopper
and Blackwell), transformers' `utils/import_utils.py` (FA2 >= 2.3.3, distribution names) and
`modeling_flash_attention_utils.py` (the hub builds), xformers' `fmha` op attributes (bf16 needs sm80), Unsloth's
`models/_utils.py` (kernel choice: flash-attn on sm80+, else xformers, else SDPA), PyTorch's flex_attention and
`torch.nn.attention.varlen` docs.
"""

from __future__ import annotations

import sys

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
from attnpick.backends.base import ALL_DEVICES, ANY_DTYPE, DTYPES, GPU_TYPES, HALF, Backend, InstallHint
from attnpick.decide.facts import EnvFacts, HubKernel
from attnpick.errors import UsageError

__all__ = ["ALL_DEVICES", "ANY_DTYPE", "BACKENDS", "BACKEND_NAMES", "CATALOG", "DTYPES", "GPU_TYPES", "HALF",
           "HUB_BACKENDS", "ORDER", "PINNED_SDPA", "PROBED_MODULES", "REFERENCE", "Backend", "InstallHint", "backend",
           "ensure_registered", "install_hints", "is_loader", "loader_api"]

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

# Every table below is derived from BACKENDS by `index()`, in place, so that a backend added to BACKENDS (and
# `index()` run again, as a test that plugs one in does) is seen by every module that imported them.
CATALOG: dict[str, Backend] = {}
PINNED_SDPA: dict[str, Backend] = {spec.name: spec for spec in sdpa_pinned.BACKENDS}
ORDER: list[str] = []  # auto's order: every backend but the pinned SDPA kernels
BACKEND_NAMES: list[str] = []
HUB_BACKENDS: list[str] = []  # those with a kernels-hub build
# The distributions attnpick reports on, by their PyPI names, and the module an import check imports: the stack
# every run needs, then each backend's own (derived, so a backend cannot be missing from the probe).
STACK_MODULES: dict[str, str] = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "bitsandbytes": "bitsandbytes",
    "kernels": "kernels",
}
PROBED_MODULES: dict[str, str] = {}
ISOLATED: list[str] = []  # imported alone, in a child of their own: they patch the libraries imported after them
# The backend every parity check and every speedup is measured against.
REFERENCE: str = next(spec.name for spec in BACKENDS if spec.role == "reference")


def index(backends: tuple[Backend, ...] | None = None) -> None:
    """Derive every table from `backends` (default: BACKENDS), in place."""
    backends = BACKENDS if backends is None else backends
    CATALOG.clear()
    CATALOG.update({spec.name: spec for spec in backends})
    ORDER[:] = [spec.name for spec in backends if spec.name not in PINNED_SDPA]
    BACKEND_NAMES[:] = list(CATALOG)
    HUB_BACKENDS[:] = [spec.name for spec in backends if spec.hub is not None]
    PROBED_MODULES.clear()
    PROBED_MODULES.update({**STACK_MODULES, **{d: m for spec in backends for d, m in spec.modules.items()}})
    ISOLATED[:] = [dist for spec in backends if spec.import_alone for dist in spec.modules]


index()


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


def patched_in_process() -> bool | None:
    """Whether a loader that patches transformers (Unsloth) did so in this process; None when no such loader's module
    was imported here."""
    loaders = [spec for spec in BACKENDS if spec.patched is not None and spec.import_alone
               and any(module in sys.modules for module in spec.modules.values())]
    if not loaders:
        return None
    return any(spec.patched() for spec in loaders if spec.patched is not None)


def hub_kernel(facts: EnvFacts, name: str) -> HubKernel | None:
    """The kernels-hub build transformers would load for backend `name` here: the installed transformers' own table
    when the facts carry it, else the backend's (transformers 5.24's)."""
    spec = CATALOG.get(name)
    if spec is None or spec.hub is None:
        return None
    known = facts.hub.flash_kernels.get(name)
    if known is not None:
        return known
    return spec.hub.for_machine(facts.device.type, facts.torch)


def check_hub_facts(facts: EnvFacts, where: str) -> None:
    """A facts file's `hub.flash_kernels` names backends of this registry (facts.py reads the file without it)."""
    unknown = sorted(set(facts.hub.flash_kernels) - set(HUB_BACKENDS))
    if unknown:
        raise UsageError(f"{where}: 'hub.flash_kernels.{unknown[0]}' names no backend with a hub build here (known: "
                         f"{', '.join(HUB_BACKENDS)}). Remove it, or write the file with 'attnpick doctor --json'.")


def fetch_command(kernel: HubKernel) -> str:
    """How to get a hub kernel onto a machine without a connection: download on a connected one, carry the folder."""
    revision = f" --revision v{kernel.version}" if kernel.version is not None else ""
    return (f"on a connected machine: hf download {kernel.repo} --repo-type kernel{revision} --cache-dir "
            "kernel-cache; copy kernel-cache here and set KERNELS_CACHE to it (or LOCAL_KERNELS="
            f"{kernel.repo}=<a folder with its build/>)")


def kernels_command(facts: EnvFacts) -> str:
    """`pip install kernels`, within the range the installed transformers accepts when it is known."""
    if facts.hub.kernels_range:
        return f"pip install 'kernels{facts.hub.kernels_range}'"
    return "pip install kernels"


def install_hints(facts: EnvFacts, missing: frozenset[str], kernels_usable: bool) -> list[InstallHint]:
    """What attnpick recommends installing on a GPU machine, for the backends in `missing` (not usable yet): each
    backend's own hints, and one `pip install kernels` for every FlashAttention build the hub has for this device
    (prebuilt, no compiler: first on Linux; after xFormers on Windows, where the kernels docs document no builds and
    recommend WSL 2), in the order their `order` gives."""
    if facts.device.type not in GPU_TYPES:
        return []
    hints = [hint for spec in BACKENDS if spec.install_hints is not None
             for hint in spec.install_hints(facts, missing)]
    capability = facts.device.capability_tuple if facts.device.type == "cuda" else None
    hub = [name for name in HUB_BACKENDS if name in missing and name in ORDER
           and (kernel := hub_kernel(facts, name)) is not None and kernel.builds_for(facts.device.type)
           and not CATALOG[name].capability_reasons(capability)]
    if hub and not kernels_usable:
        repos = ", ".join(sorted({k.repo for k in (hub_kernel(facts, n) for n in hub) if k}))
        note = f"prebuilt FlashAttention from the Hugging Face kernels hub ({repos}), fetched on first use: no " \
               "compiler, seconds"
        windows = facts.os == "windows" and facts.device.type == "cuda"
        if windows:
            note = "the kernels docs document no Windows builds of the FlashAttention kernels and recommend WSL 2; " \
                   "attnpick's smoke run tells whether one loads here"
        hints.append(InstallHint(hub[0], kernels_command(facts), note, provider="hub", order=2 if windows else 1))
    return sorted(hints, key=lambda h: h.order)
