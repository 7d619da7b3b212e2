"""`Backend`: everything attnpick knows about one attention backend, in one frozen object.

Each file in `attnpick/backends/` exports one `BACKEND` (pinned SDPA: one per kernel) and
`attnpick.backends.registry` lists them in order. Requirements are data read by one generic checker
(`attnpick.decide.decision.assess`); behaviour is a few hooks, each optional:

- `register()`: add the backend's attention function (and mask function) to transformers' interfaces;
- `load(folder, max_seq_length, dtype, load_in_4bit)`: for a model loader (`kind="loader"`, Unsloth) that builds the
  model itself instead of giving transformers an attention function;
- `probe_details()`: facts an import check records beside "it imports" (xFormers: built for which torch);
- `note(facts)`: a line shown beside the verdict;
- `inner_kernel(facts)`: for a loader, the attention kernel it dispatches to;
- `api()`: for a loader, its own `FastLanguageModel`-shaped API (`get_peft_model`, `for_inference`, `for_training`),
  which attnpick's drop-in and `attnpick train` hand a model it loaded back to.

Heavy libraries are imported inside the hooks only: importing a backend file costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from attnpick.decide.facts import EnvFacts

DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32")
HALF = frozenset({"bfloat16", "float16"})
ANY_DTYPE = frozenset(DTYPES)
GPU_TYPES = frozenset({"cuda", "rocm", "xpu"})
ALL_DEVICES = frozenset({"cuda", "rocm", "mps", "xpu", "cpu"})

Kind = Literal["attention", "loader"]
Provider = Literal["package", "hub", "torch"]


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
    hub: bool = False  # transformers can also load this backend from the kernels hub (`kernels` package)
    install: Callable[[EnvFacts], str] | None = field(default=None, compare=False)  # the pip command for this machine
    register: Callable[[], None] | None = field(default=None, compare=False)
    load: Callable[..., tuple[Any, Any, str]] | None = field(default=None, compare=False)
    probe_details: Callable[[], dict[str, Any]] | None = field(default=None, compare=False)
    note: Callable[[EnvFacts], str | None] | None = field(default=None, compare=False)
    inner_kernel: Callable[[EnvFacts], str] | None = field(default=None, compare=False)
    api: Callable[[], Any] | None = field(default=None, compare=False)

    @property
    def is_loader(self) -> bool:
        """A whole-model loader (Unsloth), not an attention function: it is not compared or timed as a kernel."""
        return self.kind == "loader"

    @property
    def provider(self) -> Provider:
        """How it runs when nothing else is said: its pip package, or torch itself."""
        return "package" if self.distribution else "torch"
