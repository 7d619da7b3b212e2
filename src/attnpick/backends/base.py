"""`Backend`: everything attnpick knows about one attention backend, in one frozen object.

Each file in `attnpick/backends/` exports one `BACKEND` (pinned SDPA: one per kernel) and
`attnpick.backends.registry` lists them in order: a new backend is one file and one registry line. Requirements are
data read by one generic checker (`attnpick.decide.decision.assess`); what differs from backend to backend is a
few hooks, each optional:

- `register()`: add the backend's attention function (and mask function) to transformers' interfaces;
- `attention()`: the attention function itself where transformers' AttentionInterface has none (eager);
- `causal_mask(seq, device, dtype)`: the mask transformers hands it for an unpadded causal batch (eager's additive
  mask, FlexAttention's BlockMask), for the kernel benchmark;
- `install_hints(facts, missing)`: what to install on this machine, each hint with its place among all hints;
- `install(facts)`: the one pip command that installs a build this machine accepts;
- `load(folder, max_seq_length, dtype, load_in_4bit)`: for a model loader (`kind="loader"`, Unsloth) that builds the
  model itself instead of giving transformers an attention function; `api()`: its own `FastLanguageModel`-shaped
  API; `loader_kernel(facts)`: the attention kernel it dispatches to; `patched()`: whether it patched transformers
  in this process;
- `probe_details()`: facts an import check records beside "it imports" (xFormers: built for which torch);
- `note(facts)`: a line shown beside the verdict.

A FlashAttention backend with a kernels-hub build carries it as `hub` (`HubBuild`: the repo, its pinned version and
devices, as transformers loads them). `role="reference"` marks the backend every parity check and speedup is measured
against (eager).

Heavy libraries are imported inside the hooks only: importing a backend file costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from attnpick.decide.facts import EnvFacts, HubKernel

DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32")
HALF = frozenset({"bfloat16", "float16"})
ANY_DTYPE = frozenset(DTYPES)
GPU_TYPES = frozenset({"cuda", "rocm", "xpu"})
ALL_DEVICES = frozenset({"cuda", "rocm", "mps", "xpu", "cpu"})

Kind = Literal["attention", "loader"]
Provider = Literal["package", "hub", "torch"]
Role = Literal["candidate", "reference"]


@dataclass(frozen=True)
class InstallHint:
    """A command that would add a backend here. `order` places it among every backend's hints (lower first): Unsloth
    first everywhere, then the guide's advice for the OS (Windows: xFormers; Linux: FlashAttention)."""

    backend: str
    command: str
    note: str = ""
    provider: str = "package"  # package (pip), hub (the kernels package, prebuilt builds from the hub)
    order: int = 5

    def to_dict(self) -> dict[str, str]:
        out = {"backend": self.backend, "provider": self.provider, "command": self.command}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class HubBuild:
    """A FlashAttention build on the Hugging Face kernels hub, as transformers loads it for this backend
    (`modeling_flash_attention_utils`: FLASH_ATTN_KERNEL_FALLBACK, _VERSIONS, _DEVICES): its repo, pinned version and
    devices; the build transformers loads on ROCm instead; the version it pins below a torch release."""

    kernel: HubKernel
    rocm: HubKernel | None = None
    older_torch: tuple[str, int] | None = None  # (torch release, pinned version below it)

    def for_machine(self, device_type: str, torch_version: str | None) -> HubKernel:
        from dataclasses import replace as with_

        from attnpick.util.versions import release

        if device_type == "rocm" and self.rocm is not None:
            return self.rocm
        if self.older_torch and torch_version:
            bound, version = self.older_torch
            have, limit = release(torch_version), release(bound)
            if have is not None and limit is not None and have < limit:
                return with_(self.kernel, version=version)
        return self.kernel


def capability_text(capability: tuple[int, int]) -> str:
    """(8, 6) -> "8.6": an NVIDIA compute capability as NVIDIA writes it."""
    return f"{capability[0]}.{capability[1]}"


def refuse_softcap_and_sinks(name: str, kwargs: dict[str, Any]) -> None:
    """An attention function without logit softcapping or attention sinks refuses a call that needs them (the
    decision already rejects such models; this keeps a forced call from computing something else)."""
    if kwargs.get("softcap") is not None:
        raise ValueError(f"{name} attention does not support softcapping; use eager or flash_attention_2")
    if kwargs.get("s_aux") is not None or kwargs.get("sinks") is not None:
        raise ValueError(f"{name} attention does not support attention sinks; use eager")


def kernel_inputs(query: Any, key: Any, value: Any, module: Any) -> tuple[Any, Any, Any]:
    """q/k/v in the dtype a flash-class kernel computes in, by transformers' own FlashAttention rule
    (`get_target_dtype`): unchanged unless float32, else the autocast dtype, or a quantized model's compute dtype,
    or its linear layers' dtype.

    Under QLoRA they arrive in float32 whatever the model's dtype: peft's `prepare_model_for_kbit_training` casts every
    parameter that is not 4-bit (norms, embeddings) to float32, and bitsandbytes' `Linear4bit` returns its input's
    dtype. PyTorch's and FlashAttention's flash kernels take only float16 and bfloat16."""
    import torch

    if query.dtype != torch.float32 or getattr(module, "config", None) is None:
        return query, key, value
    from transformers.integrations.flash_attention import get_target_dtype

    target = get_target_dtype(query, module)
    if target is None or target == torch.float32:
        return query, key, value
    return query.to(target), key.to(target), value.to(target)


@dataclass(frozen=True)
class Backend:
    """One backend: what it needs (capability bounds apply to NVIDIA `cuda` devices only) and how it runs.

    `modules` maps each distribution the backend needs to the module an import check imports (flash-attn and
    flash-attn-4 both install `flash_attn`: transformers tells them apart by distribution, and so does attnpick).
    `import_alone`: the module patches other libraries on import (Unsloth), so its import check runs in a child of
    its own and it is imported before torch wherever it runs.
    """

    name: str
    title: str
    hf_name: str | None
    kind: Kind = "attention"
    distribution: str | None = None
    versions: str = ""
    modules: dict[str, str] = field(default_factory=dict)
    import_alone: bool = False
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
    # (package version, torch its build was made for, this torch) -> whether the build runs here; default: the same
    # torch release
    runs_on_torch: Callable[[str, str, str], bool] | None = field(default=None, compare=False)
    sdpa_kernel: str | None = None  # the SDPA kernel this backend needs in the torch build (facts.sdpa_kernels)
    picks_kernel_at_run_time: bool = False  # SDPA: which kernel ran is known only from the confirmation
    hub: HubBuild | None = None  # transformers can also load it from the kernels hub (`kernels` package)
    role: Role = "candidate"
    install: Callable[[EnvFacts], str] | None = field(default=None, compare=False)
    install_hints: Callable[[EnvFacts, frozenset[str]], tuple[InstallHint, ...]] | None = field(default=None,
                                                                                               compare=False)
    register: Callable[[], None] | None = field(default=None, compare=False)
    attention: Callable[[], Callable[..., Any]] | None = field(default=None, compare=False)
    causal_mask: Callable[[int, Any, Any], Any] | None = field(default=None, compare=False)
    load: Callable[..., tuple[Any, Any, str]] | None = field(default=None, compare=False)
    probe_details: Callable[[], dict[str, Any]] | None = field(default=None, compare=False)
    note: Callable[[EnvFacts], str | None] | None = field(default=None, compare=False)
    loader_kernel: Callable[[EnvFacts], str] | None = field(default=None, compare=False)
    patched: Callable[[], bool] | None = field(default=None, compare=False)
    api: Callable[[], Any] | None = field(default=None, compare=False)
    # packed training batches: the attention implementation to switch to (registered by the call), for a backend
    # whose own implementation would attend a packed row as one square (SDPA)
    packed: Callable[[], str] | None = field(default=None, compare=False)

    @property
    def is_loader(self) -> bool:
        """A whole-model loader (Unsloth), not an attention function: it is not compared or timed as a kernel."""
        return self.kind == "loader"

    @property
    def provider(self) -> Provider:
        """How it runs when nothing else is said: its pip package, or torch itself."""
        return "package" if self.distribution else "torch"

    def capability_reasons(self, capability: tuple[int, int] | None) -> list[tuple[str, str]]:
        """(code, message) for an NVIDIA compute capability outside this backend's bounds; none when it fits or
        is unknown."""
        if capability is None:
            return []
        have = capability_text(capability)
        out = []
        if self.min_capability and capability < self.min_capability:
            need = capability_text(self.min_capability)
            out.append(("capability_too_low", f"need compute capability >= {need}, have {have}"))
        if self.capability_majors and capability[0] not in self.capability_majors:
            majors = " or ".join(f"{m}.x" for m in sorted(self.capability_majors))
            out.append(("capability_unsupported", f"need compute capability {majors}, have {have}"))
        return out
