"""The decision: which backend to use, as a pure function of facts, request and model.

`choose(facts, request, model_facts)` never touches the machine, so a test can describe a T4 with flash-attn
2.8 in one line. Every candidate gets a verdict with all of its reasons ("need X, have Y") under a stable code.

The rewrites of a decision are pure too, each from facts gathered elsewhere: `reject` (backends that failed
parity on this machine), `rank_by_times` (`--policy measured`) and `common_to_ranks` (torchrun). Their callers
do the measuring and the communicating.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from attnpick.backends.base import Provider, capability_text
from attnpick.backends.registry import (
    BACKEND_NAMES,
    CATALOG,
    DTYPES,
    ORDER,
    Backend,
    InstallHint,
    fetch_command,
    hub_kernel,
    install_hints,
    kernels_command,
)
from attnpick.decide.facts import EnvFacts, HubKernel, ModelFacts, PackageFacts
from attnpick.errors import NoBackendError, UsageError, first_line
from attnpick.util.versions import at_least, in_range

Verdict = Literal["accepted", "rejected", "eligible"]

_DEVICE_WORDS = {
    "cuda": "an NVIDIA GPU",
    "rocm": "an AMD GPU (ROCm)",
    "xpu": "an Intel GPU",
    "mps": "an Apple GPU (MPS)",
    "cpu": "a CPU",
}


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.fix:
            out["fix"] = self.fix
        return out


@dataclass(frozen=True)
class Request:
    """What the user asked for: one backend or `auto`, a dtype (None: the device's default), whether the model
    will be trained (backward needed), where the backend came from (`origin`: auto, --backend, the environment)
    and the backends switched off on this process."""

    backend: str = "auto"
    dtype: str | None = None
    training: bool = True
    origin: str = "auto"
    disabled: frozenset[str] = frozenset()

    @classmethod
    def from_names(cls, backends: list[str] | tuple[str, ...] | str | None, dtype: str | None = None,
                   training: bool = True, origin: str | None = None,
                   disabled: frozenset[str] = frozenset()) -> Request:
        """Validate user input: one known backend name (or `auto`) and a known dtype."""
        names = [backends] if isinstance(backends, str) else list(backends or [])
        names = [n.strip() for name in names for n in name.split(",") if n.strip()]
        if len(set(names)) > 1:
            raise UsageError(
                f"Can't use {' and '.join(sorted(set(names)))} together: one model uses exactly one attention "
                "backend (FlashAttention and xFormers are alternatives). Pass --backend once."
            )
        backend = names[0] if names else "auto"
        if backend != "auto" and backend not in CATALOG:
            raise UsageError(f"Unknown backend {backend!r}. Choose one of: auto, {', '.join(BACKEND_NAMES)}.")
        if dtype is not None and dtype not in DTYPES:
            raise UsageError(f"Unknown dtype {dtype!r}. Choose one of: {', '.join(DTYPES)}.")
        if origin is None:
            origin = "auto" if backend == "auto" else "--backend"
        return cls(backend=backend, dtype=dtype, training=training, origin=origin, disabled=disabled)

    @property
    def forced(self) -> bool:
        return self.backend != "auto"


@dataclass(frozen=True)
class Candidate:
    """One backend's verdict with all its reasons; when it can run, how: the provider (package, hub or torch)
    and the exact `attn_implementation` attnpick passes to transformers (a kernels-hub repo for the hub)."""

    backend: str
    verdict: Verdict
    reasons: tuple[Reason, ...] = ()
    note: str | None = None
    provider: str | None = None
    attn_implementation: str | None = None
    kernel: HubKernel | None = None

    @property
    def implementation(self) -> str | None:
        """What to pass as `attn_implementation`: the assessed string, else the catalog's name."""
        return self.attn_implementation or CATALOG[self.backend].hf_name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.backend,
            "verdict": self.verdict,
            "reasons": [r.to_dict() for r in self.reasons],
            "provider": self.provider,
            "attn_implementation": self.attn_implementation,
        }
        if self.kernel is not None:
            out["kernel"] = {"repo": self.kernel.repo, "version": self.kernel.version}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Decision:
    """Every candidate's verdict and the chosen backend. `mode` is "forced" when one backend was asked for;
    `chosen_by` says what ordered the candidates: auto (the guide's order), --backend, ATTNPICK_BACKEND,
    measured (`--policy measured`) or "agreed by every rank"."""

    chosen: str | None
    mode: Literal["auto", "forced"]
    dtype: str
    candidates: tuple[Candidate, ...]
    install_hints: tuple[InstallHint, ...] = ()
    loader_kernel: str | None = None  # the attention kernel a chosen model loader (Unsloth) dispatches to
    chosen_by: str = "auto"
    model_facts: ModelFacts | None = field(default=None, compare=False)

    def candidate(self, backend: str) -> Candidate:
        return next(c for c in self.candidates if c.backend == backend)

    @property
    def runnable(self) -> tuple[str, ...]:
        """The backends not rejected, in the order the loader tries them."""
        return tuple(c.backend for c in self.candidates if c.verdict != "rejected")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "chosen": self.chosen,
            "mode": self.mode,
            "chosen_by": self.chosen_by,
            "dtype": self.dtype,
            "candidates": [c.to_dict() for c in self.candidates],
            "install_hints": [h.to_dict() for h in self.install_hints],
        }
        if self.loader_kernel is not None:
            out["loader_kernel"] = out["unsloth_kernel"] = self.loader_kernel  # the older key kept as an alias
        if self.model_facts is not None:
            out["model"] = self.model_facts.to_dict()
        return out

    def require(self) -> str:
        """The chosen backend, or `NoBackendError` restating the request and every candidate's reasons."""
        if self.chosen is not None:
            return self.chosen
        lines = [f"{c.backend}: " + "; ".join(r.message for r in c.reasons) for c in self.candidates if c.reasons]
        if self.mode == "forced":
            head = f"The requested backend {self.candidates[0].backend} cannot run here ({self.dtype})"
        else:
            head = f"No attention backend can run here ({self.dtype})"
        raise NoBackendError(head + ": " + " | ".join(lines), decision=self)


def default_dtype(facts: EnvFacts) -> str:
    """bfloat16 where the device computes it natively, float16 on older GPUs, float32 on CPU."""
    device = facts.device
    if device.type == "cuda":
        cap = device.capability_tuple
        return "bfloat16" if cap is None or cap >= (8, 0) else "float16"
    if device.type in ("rocm", "xpu"):
        return "bfloat16"
    if device.type == "mps":
        return "float16"
    return "float32"


# Below this width (query heads x head_dim) a CPU spends more converting to bfloat16 than its bfloat16 matrix
# products save (measured: docs/guide.md).
AUTOCAST_MIN_WIDTH = 256


def cpu_autocast(facts: EnvFacts, dtype: str, four_bit: bool, model: ModelFacts | None) -> str | None:
    """"bfloat16" when a training step on this CPU should run its matrix products in bfloat16 over float32 weights
    (torch.autocast): the CPU computes bfloat16 natively, the model is float32, not 4-bit, and at least
    `AUTOCAST_MIN_WIDTH` wide; None otherwise (a GPU's dtype choice is `default_dtype`'s)."""
    heads, _, head_dim = model.attention_shape if model is not None else (0, 0, 0)
    if facts.device.type != "cpu" or not facts.device.bf16_native or dtype != "float32" or four_bit \
            or heads * head_dim < AUTOCAST_MIN_WIDTH:
        return None
    return "bfloat16"


@dataclass(frozen=True)
class Assessment:
    """One backend on one machine: every reason it cannot run, else how it would run (the provider and the exact
    `attn_implementation` string passed to transformers; the hub kernel for the hub provider)."""

    reasons: tuple[Reason, ...]
    provider: Provider | None = None
    attn_implementation: str | None = None
    kernel: HubKernel | None = None


def assess(spec: Backend, facts: EnvFacts, request: Request, dtype: str,
           model_facts: ModelFacts | None = None) -> Assessment:
    """Every reason `spec` cannot run on `facts` for this request, through any of its providers.

    A FlashAttention backend has two providers: its pip package, which wins when it imports, and the kernels
    hub build transformers loads through the `kernels` package. Capability, dtype and head_dim apply to both.
    """
    common = _request_reasons(spec, facts, request) + _hardware_reasons(spec, facts, request, dtype, model_facts)
    if not spec.distribution:
        devices = _device_reasons(spec, facts, request, spec.devices)
        return _assessed(devices + common, "torch", spec.hf_name)
    package = _package_reasons(spec, facts)
    if not package or not spec.hub:
        devices = _device_reasons(spec, facts, request, spec.devices)
        return _assessed(package + devices + common, "package", spec.hf_name)
    kernel = hub_kernel(facts, spec.name)
    assert kernel is not None
    hub = _hub_reasons(spec, facts, kernel)
    if not hub:
        return _assessed(common, "hub", kernel.repo, kernel)
    devices = _device_reasons(spec, facts, request, spec.devices | set(kernel.devices))
    if devices:  # no provider runs on this device: that one reason says it
        hub = [r for r in hub if r.code != "no_hub_build"]
    return Assessment(tuple(_merge_missing(spec, facts, kernel, package, hub) + devices + common))


def _assessed(reasons: list[Reason], provider: Provider, impl: str | None, kernel: HubKernel | None = None
              ) -> Assessment:
    if reasons:
        return Assessment(tuple(reasons))
    return Assessment((), provider, impl, kernel)


def _request_reasons(spec: Backend, facts: EnvFacts, request: Request) -> list[Reason]:
    reasons: list[Reason] = []
    if spec.name in request.disabled:
        reasons.append(Reason("disabled", f"need {spec.name} enabled, have it disabled by ATTNPICK_DISABLE_BACKENDS"))
    if request.backend == "auto" and not spec.in_auto:
        reasons.append(Reason("request_only", f"{spec.title} is chosen only on request, never by auto",
                              f"--backend {spec.name}"))
    if facts.torch is None:
        reasons.append(Reason("torch_missing", "need torch installed, have none", "pip install torch"))
    elif spec.min_torch and not at_least(facts.torch, spec.min_torch):
        reasons.append(Reason("torch_too_old", f"need torch >= {spec.min_torch}, have {facts.torch}",
                              f"pip install -U 'torch>={spec.min_torch}'"))
    return reasons


def _device_reasons(spec: Backend, facts: EnvFacts, request: Request, devices: Collection[str]) -> list[Reason]:
    device = facts.device
    if device.type in devices:
        return []
    have_device = _have_device(facts)
    if spec.cpu_mode_forced_only and device.type == "cpu":
        if request.forced:
            return []
        return [Reason("cpu_mode_forced_only", f"need a GPU for auto to pick {spec.title}, have {have_device}: its "
                       "CPU mode wraps stock transformers, so auto never picks it", f"--backend {spec.name}")]
    wanted = " or ".join(_DEVICE_WORDS[t] for t in sorted(devices))
    return [Reason("device_unsupported", f"need {wanted}, have {have_device}")]


def _hardware_reasons(spec: Backend, facts: EnvFacts, request: Request, dtype: str,
                      model_facts: ModelFacts | None) -> list[Reason]:
    device = facts.device
    cap = device.capability_tuple if device.type == "cuda" else None
    reasons = [Reason(code, message) for code, message in spec.capability_reasons(cap)]
    if dtype not in spec.dtypes:
        reasons.append(Reason("dtype_unsupported",
                              f"need dtype {' or '.join(sorted(spec.dtypes))}, have {dtype}", "--dtype bfloat16"))
    elif dtype == "bfloat16" and cap is not None and spec.bf16_min_capability and cap < spec.bf16_min_capability:
        need = capability_text(spec.bf16_min_capability)
        reasons.append(Reason("bf16_unsupported", f"need compute capability >= {need} for bfloat16, have "
                              f"{capability_text(cap)}", "--dtype float16"))
    if spec.sdpa_kernel and facts.sdpa_kernels:
        have = set(facts.sdpa_kernels) | ({"flash"} if "flash_cpu" in facts.sdpa_kernels else set())
        if spec.sdpa_kernel not in have:
            reasons.append(Reason("sdpa_kernel_missing", f"need SDPA's {spec.sdpa_kernel} kernel, have "
                                  f"{', '.join(facts.sdpa_kernels)} in this torch build"))
    elif spec.sdpa_kernel == "flash" and facts.os == "windows" and device.type == "cuda":
        # A facts file that does not list the build's kernels: PyTorch's Windows CUDA builds ship no flash kernel.
        reasons.append(Reason("sdpa_kernel_missing", "need SDPA's flash kernel, have a Windows torch build, which "
                              "ships none (PyTorch builds FlashAttention into its Linux CUDA wheels only)"))
    if device.type == "cpu" and request.training and not spec.cpu_backward:
        reasons.append(Reason("no_cpu_backward",
                              f"need a backward pass for training, have {spec.title} on CPU, which has forward only"))
    if model_facts is not None:
        head_dim = model_facts.head_dim
        if spec.max_head_dim and head_dim and head_dim > spec.max_head_dim:
            reasons.append(Reason("head_dim_too_large", f"need head_dim <= {spec.max_head_dim}, have {head_dim}"))
        if model_facts.softcapping and not spec.softcapping:
            reasons.append(Reason("softcapping_unsupported",
                                  f"need no attention logit softcapping, have softcap {model_facts.softcapping}"))
        if model_facts.has_sinks and not spec.sinks:
            reasons.append(Reason("sinks_unsupported",
                                  f"need no attention sinks, have {model_facts.model_type}'s sinks"))
    return reasons


def _hub_reasons(spec: Backend, facts: EnvFacts, kernel: HubKernel) -> list[Reason]:
    """Why transformers cannot load `kernel` here: the `kernels` package, a build for this device, and a copy
    (local folder, local cache, or a reachable hub)."""
    reasons = _kernels_reasons(facts, f"{spec.title} from the kernels hub")
    if reasons and reasons[0].code in ("kernels_missing", "kernels_not_importable"):
        return reasons
    local = kernel.repo in facts.hub.local
    if not local and not kernel.builds_for(facts.device.type):
        reasons.append(Reason("no_hub_build", f"need a build of {kernel.repo} for {_have_device(facts)}, have builds "
                              f"for {', '.join(kernel.devices)} only (transformers' device table)"))
    elif not facts.hub.available_offline(kernel):
        version = f" version {kernel.version}" if kernel.version is not None else ""
        if facts.hub.offline:
            reasons.append(Reason("hub_offline_not_cached", f"need {kernel.repo}{version} in the local cache, have "
                                  "HF_HUB_OFFLINE set and no copy", fetch_command(kernel)))
        elif facts.hub.reachable is False:
            reasons.append(Reason("hub_unreachable", f"need huggingface.co reachable to fetch {kernel.repo}{version}, "
                                  "have no connection and no cached copy", fetch_command(kernel)))
    return reasons


def _merge_missing(spec: Backend, facts: EnvFacts, kernel: HubKernel, package: list[Reason],
                   hub: list[Reason]) -> list[Reason]:
    """Neither provider installed: one reason naming both and the quicker fix (kernels, where the hub has a build
    for this device). Otherwise every reason of both providers."""
    if [r.code for r in package] == ["not_installed"] and [r.code for r in hub] == ["kernels_missing"]:
        fix = kernels_command(facts) if kernel.builds_for(facts.device.type) else package[0].fix
        return [Reason("not_installed", f"need {spec.distribution} installed (or kernels, for the hub build "
                       f"{kernel.repo}), have neither", fix)]
    return package + hub


def choose(facts: EnvFacts, request: Request | None = None, model_facts: ModelFacts | None = None) -> Decision:
    """Give every candidate a verdict and pick the first eligible one in the guide's order.

    Args:
        facts: the machine, from `attnpick.decide.probe.collect_facts()` or an `--env` file.
        request: the backend asked for (`auto` by default), the dtype and whether training is planned.
        model_facts: facts read from the model's config.json, if known.

    Returns:
        A `Decision`; `chosen` is None when nothing (or not the forced backend) can run.

    Example:
        >>> decision = choose(facts, Request.from_names("auto"))
        >>> decision.chosen
        'sdpa'
    """
    request = request or Request()
    dtype = request.dtype or default_dtype(facts)
    names = [request.backend] if request.forced else list(ORDER)
    chosen: str | None = None
    candidates: list[Candidate] = []
    for name in names:
        spec = CATALOG[name]
        assessment = assess(spec, facts, request, dtype, model_facts)
        reasons = assessment.reasons
        note = spec.note(facts) if spec.note is not None and not (spec.is_loader and reasons) else None
        if reasons:
            verdict: Verdict = "rejected"
        elif chosen is None:
            verdict, chosen = "accepted", name
        else:
            verdict = "eligible"
        candidates.append(Candidate(name, verdict, reasons, note, assessment.provider,
                                    assessment.attn_implementation, assessment.kernel))

    kernels_usable = _kernels_usable(facts)
    missing = frozenset(
        name for name, spec in CATALOG.items()
        if spec.distribution and facts.package(spec.distribution).version is None
        and not (spec.hub and kernels_usable)
    )
    # installed, but a build that cannot run here: the same advice, as a reinstall
    broken = frozenset(c.backend for c in candidates if any(r.code in REINSTALL_CODES for r in c.reasons))
    hints = install_hints(facts, missing | broken, kernels_usable)
    return Decision(
        chosen=chosen,
        mode="forced" if request.forced else "auto",
        chosen_by=request.origin,
        dtype=dtype,
        candidates=tuple(candidates),
        install_hints=tuple(hints),
        loader_kernel=_loader_kernel(facts, chosen),
        model_facts=model_facts,
    )


def _loader_kernel(facts: EnvFacts, chosen: str | None) -> str | None:
    """The attention kernel a chosen model loader dispatches to (Unsloth's), else None."""
    spec = CATALOG.get(chosen or "")
    return spec.loader_kernel(facts) if spec is not None and spec.loader_kernel is not None else None


def assess_one(backend: str, facts: EnvFacts, dtype: str, model_facts: ModelFacts | None = None,
               training: bool = True, origin: str = "check") -> Candidate:
    """This backend, on these facts, in this dtype, for this model: its verdict as a forced request gets it (every
    reason when it cannot run, else how it runs: provider and `attn_implementation`)."""
    return choose(facts, Request(backend, dtype, training, origin=origin), model_facts).candidate(backend)


def _reordered(decision: Decision, candidates: Sequence[Candidate], chosen_by: str | None = None) -> Decision:
    """`decision` with `candidates` in this order: the first one not rejected is accepted, the others eligible."""
    chosen: str | None = None
    out = []
    for cand in candidates:
        if cand.verdict != "rejected":
            verdict: Verdict = "eligible" if chosen else "accepted"
            chosen = chosen or cand.backend
            cand = replace(cand, verdict=verdict)
        out.append(cand)
    kernel = decision.loader_kernel if chosen and CATALOG[chosen].is_loader else None
    return replace(decision, chosen=chosen, candidates=tuple(out), loader_kernel=kernel,
                   chosen_by=chosen_by or decision.chosen_by)


def reject(decision: Decision, reasons: Mapping[str, Reason]) -> Decision:
    """`decision` with the named backends rejected for the given reasons (e.g. a failed parity check on this
    machine), the choice moving on to the next backend in the same order."""
    return _reordered(decision, [
        replace(c, verdict="rejected", reasons=(*c.reasons, reasons[c.backend])) if c.backend in reasons else c
        for c in decision.candidates
    ])


def rank_by_times(decision: Decision, times: Mapping[str, float], rejected: Mapping[str, Reason],
                  notes: Mapping[str, str] | None = None) -> Decision:
    """`--policy measured`: the measured backends fastest first, each with its note; the backends in `rejected`
    (failed parity, failed to measure) rejected with their reason. Unsloth, a whole-model loader rather than an
    attention kernel, keeps its place at the front when it is eligible: its speed is not an attention time."""
    notes = notes or {}
    front = [c for c in decision.candidates if CATALOG[c.backend].is_loader and c.verdict != "rejected"]
    ranked = [Candidate(name, "eligible", note=notes.get(name)) for name in sorted(times, key=lambda n: times[n])
              if name not in rejected]
    known = {c.backend for c in (*front, *ranked)}
    dropped = [c for c in decision.candidates if c.verdict == "rejected" and c.backend not in rejected]
    dropped += [Candidate(name, "rejected", (reason,)) for name, reason in rejected.items()]
    dropped = [c for c in dropped if c.backend not in known]
    return _reordered(decision, [*dropped, *front, *ranked], chosen_by="measured")


@dataclass(frozen=True)
class RankDifference:
    """A rank that could not use some backend another rank could, with its reasons."""

    rank: int
    lacked: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "lacked": dict(self.lacked)}


def common_to_ranks(decision: Decision, per_rank: Sequence[Mapping[str, str | None]]
                    ) -> tuple[Decision, tuple[RankDifference, ...]]:
    """torchrun: every rank reports, per backend, None (runs here) or why not. The agreed decision keeps the
    order and accepts the first backend that runs on every rank; the others are rejected naming each rank's
    reason. Also returns, per rank, what it lacked that another rank had."""
    candidates = []
    for cand in decision.candidates:
        whys = [(rank, verdicts.get(cand.backend, "not reported")) for rank, verdicts in enumerate(per_rank)]
        failing = [(rank, why) for rank, why in whys if why is not None]
        if failing:
            reasons = tuple(Reason("not_on_every_rank", f"need {cand.backend} on every rank, have rank {rank}: {why}")
                            for rank, why in failing)
            candidates.append(Candidate(cand.backend, "rejected", reasons))
        else:
            candidates.append(Candidate(cand.backend, "eligible", note=cand.note))
    differing = []
    for rank, verdicts in enumerate(per_rank):
        lacked = {name: why for name, why in verdicts.items()
                  if why is not None and any(other.get(name, "") is None for other in per_rank)}
        if lacked:
            differing.append(RankDifference(rank, lacked))
    return _reordered(decision, candidates, chosen_by="agreed by every rank"), tuple(differing)


def _package_reasons(spec: Backend, facts: EnvFacts) -> list[Reason]:
    assert spec.distribution is not None
    dist = spec.distribution
    pkg = facts.package(dist)
    if pkg.version is None:
        return [Reason("not_installed", f"need {dist} installed, have none", f"pip install {dist}")]
    reasons: list[Reason] = []
    if spec.versions and not in_range(pkg.version, spec.versions):
        reasons.append(Reason("version_unsupported", f"need {dist} {spec.versions}, have {pkg.version}",
                              f"pip install '{dist}{spec.versions}'"))
    if pkg.importable is False:
        error = first_line(pkg.error, last=True) or "unknown error"
        if "undefined symbol" in error:
            reasons.append(Reason("abi_mismatch",
                                  f"need {dist} built for torch {facts.torch}, "
                                  f"have a build that fails to import: {error}",
                                  f"pip install --force-reinstall --no-deps {dist}"))
        else:
            reasons.append(Reason("not_importable", f"need {dist} to import, have an import error: {error}"))
    if spec.needs_kernels_check:
        reasons += _build_reasons(spec, facts, pkg)
    return reasons


REINSTALL_CODES = frozenset({"torch_mismatch", "abi_mismatch", "kernels_unavailable"})


def _build_reasons(spec: Backend, facts: EnvFacts, pkg: PackageFacts) -> list[Reason]:
    """A package with compiled kernels: they loaded, and were built for a torch this one can run them with."""
    dist, reasons = spec.distribution, []
    built_for = pkg.details.get("built_for_torch")
    runs = spec.runs_on_torch or (lambda _version, made, have: made.partition("+")[0] == have.partition("+")[0])
    mismatch = bool(built_for and facts.torch and pkg.version and not runs(pkg.version, built_for, facts.torch))
    fix = spec.install(facts) if spec.install else f"pip install --force-reinstall --no-deps {dist}"
    if mismatch:
        reasons.append(Reason("torch_mismatch", f"need {dist} built for torch {facts.torch}, have {dist} "
                              f"{pkg.version} built for torch {built_for}", fix))
    if pkg.details.get("cpp_library") is False and not mismatch:
        why = pkg.details.get("load_error")
        reasons.append(Reason("kernels_unavailable", f"need {dist}'s compiled CUDA kernels, have a build whose "
                              "kernels did not load" + (f" ({why})" if why else ""), fix))
    return reasons


def _kernels_reasons(facts: EnvFacts, title: str) -> list[Reason]:
    """Why the `kernels` package cannot load hub kernels (`title` names what it would load): not installed, not
    importable, or a version the installed transformers does not load hub kernels with."""
    pkg = facts.package("kernels")
    if pkg.version is None:
        return [Reason("kernels_missing", f"need kernels installed for {title}, have none", kernels_command(facts))]
    if pkg.importable is False:
        error = first_line(pkg.error, last=True) or "unknown error"
        return [Reason("kernels_not_importable", f"need kernels to import, have an import error: {error}",
                       f"pip install --force-reinstall {kernels_command(facts).removeprefix('pip install ')}")]
    if facts.hub.kernels_range and not in_range(pkg.version, facts.hub.kernels_range):
        transformers = facts.package("transformers").version or "installed"
        return [Reason("kernels_version_unsupported", f"need kernels{facts.hub.kernels_range} (what "
                       f"transformers {transformers} loads hub kernels with), have {pkg.version}",
                       kernels_command(facts))]
    return []


def _kernels_usable(facts: EnvFacts) -> bool:
    return not _kernels_reasons(facts, "hub kernels")


def _have_device(facts: EnvFacts) -> str:
    return _DEVICE_WORDS[facts.device.type] + (f" ({facts.device.name})" if facts.device.name else "")
