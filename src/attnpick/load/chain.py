"""The proven fallback chain: `load_with(decision, prepared, facts, options)` tries the decision's runnable
candidates in order; each one is smoke-run, loaded and confirmed (`_attempt`), and the first that passes all
three wins. The `LoadReport` says what happened to every candidate.

A failure at any step becomes that candidate's reason and the next one runs. A load error that every backend
hits the same way is the model's, not the backends': it is raised once, as a usage error naming the model.
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from attnpick.backends.registry import CATALOG, ensure_registered, is_loader, patched_in_process
from attnpick.decide.decision import Candidate, Decision, RankDifference, Reason
from attnpick.decide.facts import EnvFacts
from attnpick.errors import NoBackendError, UsageError, first_line
from attnpick.load.confirm import (
    Confirmation,
    cached_confirmation,
    confirm,
    confirm_key,
    device_of,
    slow_kernel_note,
)
from attnpick.load.quantization import NF4, keep_trainable, nf4_config
from attnpick.load.smoke import SmokeResult, run_smoke, smoke_job
from attnpick.model.resolve import DEFAULT_MAX_SEQ_LENGTH, Architecture, Prepared, device_map, torch_device
from attnpick.util.clock import phase
from attnpick.util.subproc import SMOKE_TIMEOUT_S

Outcome = Literal["loaded", "rejected", "smoke_failed", "load_failed", "confirm_failed"]


@dataclass(frozen=True)
class LoadOptions:
    """How to load, whatever the backend."""

    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    load_in_4bit: bool = False
    smoke_timeout: float = SMOKE_TIMEOUT_S
    use_cache: bool = True


@dataclass(frozen=True)
class Attempt:
    backend: str
    outcome: Outcome
    reasons: tuple[Reason, ...] = ()
    seconds: float = 0.0
    smoke: SmokeResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "outcome": self.outcome,
            "reasons": [r.to_dict() for r in self.reasons],
            "seconds": round(self.seconds, 3),
            "smoke": self.smoke.to_dict() if self.smoke else None,
        }


@dataclass(frozen=True)
class LoadReport:
    """What `load_model` did: the candidates tried, the one loaded, and the proof that it ran."""

    model: str
    folder: str
    found_in: str
    chosen: str
    architecture: Architecture
    model_class: str
    transformers: str
    quantization: str | None
    dtype: str
    device: str
    max_seq_length: int
    attempts: tuple[Attempt, ...]
    decision: Decision
    confirmation: Confirmation | None
    loader_kernel: str | None = None  # the attention kernel a model loader (Unsloth) dispatched to
    transformers_patched: bool | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    ranks_that_differed: tuple[RankDifference, ...] = ()
    source_folder: str = ""  # the model's own folder (`folder` is the Llama copy when EXAONE is mapped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "folder": self.folder,
            "source_folder": self.source_folder,
            "found_in": self.found_in,
            "chosen": self.chosen,
            "loader_kernel": self.loader_kernel,
            "unsloth_kernel": self.loader_kernel,  # the older key, kept as an alias
            "architecture": self.architecture,
            "model_class": self.model_class,
            "transformers": self.transformers,
            "quantization": self.quantization,
            "dtype": self.dtype,
            "device": self.device,
            "max_seq_length": self.max_seq_length,
            "attempts": [a.to_dict() for a in self.attempts],
            "confirmation": self.confirmation.to_dict() if self.confirmation else None,
            "transformers_patched": self.transformers_patched,
            "notes": list(self.notes),
            "ranks_that_differed": [d.to_dict() for d in self.ranks_that_differed],
            "decision": self.decision.to_dict(),
        }


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    loader_kernel: str | None
    confirmation: Confirmation


def load_with(decision: Decision, prepared: Prepared, facts: EnvFacts,
              options: LoadOptions) -> tuple[Any, Any, LoadReport]:
    """Load `prepared` with the first of `decision`'s runnable candidates that passes its smoke run, loads and
    is confirmed; `NoBackendError` with every attempt when none does."""
    if decision.mode == "forced":
        decision.require()
    attempts: list[Attempt] = []
    loaded: _Loaded | None = None
    for cand in decision.candidates:
        if cand.verdict == "rejected":
            attempts.append(Attempt(cand.backend, "rejected", cand.reasons))
            continue
        attempt, loaded = _attempt(cand, decision.dtype, prepared, facts, options)
        attempts.append(attempt)
        if loaded is not None:
            break
        _raise_if_the_model_is_at_fault(attempts, prepared)
    if loaded is None:
        lines = [f"{a.backend}: {a.outcome} (" + "; ".join(r.message for r in a.reasons) + ")" for a in attempts]
        raise NoBackendError(f"No backend could load {prepared.name} here: " + " | ".join(lines), decision=decision)
    from transformers import __version__ as transformers_version  # loaded by now; only its version

    report = LoadReport(
        model=prepared.name, folder=str(prepared.load_folder), source_folder=str(prepared.folder),
        found_in=prepared.found_in, chosen=attempts[-1].backend,
        architecture=prepared.architecture, model_class=type(loaded.model).__name__,
        transformers=transformers_version, quantization=NF4 if options.load_in_4bit else None,
        dtype=decision.dtype, device=str(device_of(loaded.model)), max_seq_length=options.max_seq_length,
        attempts=tuple(attempts), decision=decision, confirmation=loaded.confirmation,
        loader_kernel=loaded.loader_kernel, transformers_patched=_patched(attempts),
        notes=_notes(prepared, transformers_version) + tuple(
            note for note in (slow_kernel_note(facts, decision, loaded.confirmation),) if note),
    )
    return loaded.model, loaded.tokenizer, report


def _attempt(cand: Candidate, dtype: str, prepared: Prepared, facts: EnvFacts,
             options: LoadOptions) -> tuple[Attempt, _Loaded | None]:
    """One candidate: smoke run, load, confirm."""
    backend, start = cand.backend, time.monotonic()
    with phase("smoke run"):
        smoke = run_smoke(smoke_job(cand, facts, prepared.model_facts, dtype), facts,
                          timeout_s=options.smoke_timeout, use_cache=options.use_cache)
    if not smoke.ok:
        assert smoke.reason is not None
        return Attempt(backend, "smoke_failed", (smoke.reason,), time.monotonic() - start, smoke), None
    try:
        with phase("load weights"):
            model, tokenizer, kernel = instantiate(cand, prepared, dtype, facts, options)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers has the final word; its message is the reason
        message = first_line(exc) or type(exc).__name__
        reason = Reason("load_failed", f"need the model to load with {backend}, have {type(exc).__name__}: {message}")
        _free()
        return Attempt(backend, "load_failed", (reason,), time.monotonic() - start, smoke), None
    key = confirm_key(facts, str(prepared.load_folder), backend, cand.implementation, dtype, options.load_in_4bit,
                      model, options.use_cache)
    with phase("confirm kernel"):
        confirmation = cached_confirmation(key, lambda: confirm(model, tokenizer, backend, cand.implementation,
                                                                remote_code=prepared.architecture == "remote_code"))
    if confirmation.ok is False:
        reason = Reason("confirm_failed", f"need {backend}'s attention to run, have: {confirmation.note}")
        del model, tokenizer
        _free()
        return Attempt(backend, "confirm_failed", (reason,), time.monotonic() - start, smoke), None
    loaded = _Loaded(model, tokenizer, kernel, confirmation)
    return Attempt(backend, "loaded", (), time.monotonic() - start, smoke), loaded


def _raise_if_the_model_is_at_fault(attempts: list[Attempt], prepared: Prepared) -> None:
    """Two backends failing to load with the same error: the checkpoint is at fault, not the backends. (Running
    out of memory is the machine's limit, not the model's fault: that stays a per-backend reason.)"""
    failed = [a.reasons[0].message.split(", have ", 1)[-1] for a in attempts if a.outcome == "load_failed"]
    if len(failed) < 2 or failed[-1] != failed[-2] or "out of memory" in failed[-1].lower():
        return
    raise UsageError(f"Model {prepared.name!r} fails to load the same way with every backend tried "
                     f"({first_line(failed[-1])}): the model folder {prepared.folder} is at fault, not the attention "
                     "backend. Re-download it or fix its files.")


def instantiate(cand: Candidate, prepared: Prepared, dtype: str, facts: EnvFacts,
                options: LoadOptions) -> tuple[Any, Any, str | None]:
    """(model, tokenizer, a loader's own kernel or None): the model built with the candidate's attention, or by the
    candidate itself when it is a model loader (Unsloth). A name outside the registry is an attention implementation
    some code registered in transformers (a plugin), passed as it is."""
    spec = CATALOG.get(cand.backend)
    loader = spec.load if spec is not None else None
    if loader is not None:
        model, tokenizer, kernel = loader(prepared.load_folder, options.max_seq_length, dtype, options.load_in_4bit)
        if options.load_in_4bit:
            keep_trainable(model)
        return model, tokenizer, kernel
    import torch  # heavy: only when a model is really loaded
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ensure_registered(cand.backend)
    torch_dtype = getattr(torch, dtype)
    remote_code = prepared.architecture == "remote_code"  # prepared so only when trust_remote_code was given
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "attn_implementation": cand.implementation,
                              "trust_remote_code": remote_code}
    folder = str(prepared.load_folder)
    if prepared.random_weights:
        if options.load_in_4bit:
            raise UsageError(f"{prepared.name} has random weights for timing; 4-bit needs a real checkpoint.")
        from transformers import AutoConfig

        torch.manual_seed(0)
        with torch.device(torch_device(facts)):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), **kwargs)
    else:
        if options.load_in_4bit:
            kwargs["quantization_config"] = nf4_config(torch_dtype)
        model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True,
                                                           device_map=device_map(facts), **kwargs)
        bad = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if any(bad.values()):
            raise ValueError(f"checkpoint does not fit {type(model).__name__}: " +
                             ", ".join(f"{k} {v[:5]}" for k, v in bad.items() if v))
        if options.load_in_4bit:
            keep_trainable(model)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=remote_code)
    tokenizer.model_max_length = options.max_seq_length
    return model, tokenizer, None


def _patched(attempts: list[Attempt]) -> bool | None:
    """Whether transformers is patched in this process, once a patching loader (Unsloth) was tried here or imported
    by the user; None when none came near this process."""
    tried = any(is_loader(a.backend) and a.outcome in ("loaded", "load_failed", "confirm_failed") for a in attempts)
    patched = patched_in_process()
    if patched is None and tried:
        return False
    return patched


def _notes(prepared: Prepared, transformers_version: str) -> tuple[str, ...]:
    model_type = prepared.model_facts.model_type
    return ({
        "native": f"transformers {transformers_version} has a native class for model_type {model_type!r}; no "
                  "repository code ran.",
        "llama_mapping": f"EXAONE loaded as Llama through attnpick's mapping (transformers {transformers_version}); "
                         "no repository code ran.",
        "remote_code": "the repository's own code ran (trust_remote_code=True).",
    }[prepared.architecture],)


def _free() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
