"""`load_model()`: the fallback chain with proof. Smoke run, load, confirm; the first backend that passes all
three wins, and the report says what happened to every candidate."""

from __future__ import annotations

import gc
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from attnpick import exaone, tiny
from attnpick.catalog import CATALOG
from attnpick.decision import Decision, Reason, Request, choose
from attnpick.errors import NoBackendError, UsageError
from attnpick.facts import EnvFacts, ModelFacts
from attnpick.model_info import model_facts, read_config
from attnpick.parity import known_failure
from attnpick.smoke import DEFAULT_TIMEOUT_S, SmokeResult, run_smoke, smoke_spec

logger = logging.getLogger(__name__)

Architecture = Literal["native", "llama_mapping", "remote_code"]
Outcome = Literal["loaded", "rejected", "smoke_failed", "load_failed", "confirm_failed"]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


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
class Confirmation:
    """Which attention function actually ran during one tiny forward of the loaded model."""

    attn_implementation: str | None
    calls: dict[str, int]
    layers: int
    ok: bool | None
    note: str = ""
    forwards: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"attn_implementation": self.attn_implementation, "calls": dict(self.calls),
                "forwards": dict(self.forwards), "layers": self.layers, "ok": self.ok, "note": self.note}


@dataclass(frozen=True)
class LoadReport:
    model: str
    folder: str
    source: str
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
    unsloth_kernel: str | None = None
    transformers_patched: bool | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "folder": self.folder,
            "source": self.source,
            "chosen": self.chosen,
            "unsloth_kernel": self.unsloth_kernel,
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
            "decision": self.decision.to_dict(),
        }


def resolve_model(name: str, trust_remote_code: bool = False) -> tuple[Path, str]:
    """(folder, source) for `tiny-exaone`, a local folder, or a hub id already in (or reachable by) the
    local hub cache. `HF_HUB_OFFLINE=1` is respected."""
    if name == tiny.NAME:
        return tiny.ensure(), "tiny"
    if name in tiny.RANDOM_MODELS:
        return tiny.ensure_random(name), "random"
    path = Path(name).expanduser()
    if path.is_dir():
        return path, "local"
    if path.exists():
        raise UsageError(f"Model {name!r} is a file, not a folder. Pass the folder that holds config.json.")
    if HUB_ID.match(name) and not name.startswith("."):
        from huggingface_hub import snapshot_download

        patterns = HUB_FILES + (["*.py"] if trust_remote_code else [])
        try:
            return Path(snapshot_download(name, allow_patterns=patterns)), "hub"
        except Exception as exc:  # noqa: BLE001 - offline, unknown repo, network: one message
            raise UsageError(
                f"Model {name!r} is neither a local folder nor in the local hub cache ({type(exc).__name__}). "
                "Download it first (huggingface-cli download) or pass a local folder."
            ) from None
    raise UsageError(f"Model {name!r} does not exist. Pass a local folder, a hub id (org/name) or tiny-exaone.")


def architecture(config: dict[str, Any], trust_remote_code: bool, force_llama_mapping: bool = False,
                 where: str = "model") -> Architecture:
    """How to build the model class: transformers' own class, attnpick's EXAONE -> Llama mapping, or the
    repository's code (only with trust_remote_code=True, and only when no native path exists)."""
    from transformers import __version__ as tf_version
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = config.get("model_type")
    if force_llama_mapping:
        if not exaone.is_exaone(config):
            raise UsageError(f"{where}: the Llama mapping is for EXAONE 3.x (model_type 'exaone'), "
                             f"not {model_type!r}. Drop --exaone-as-llama.")
        return "llama_mapping"
    if model_type in CONFIG_MAPPING_NAMES:
        return "native"
    if exaone.is_exaone(config):
        return "llama_mapping"
    if isinstance(config.get("auto_map"), dict):
        if trust_remote_code:
            return "remote_code"
        raise UsageError(f"{where}: model_type {model_type!r} needs the repository's own Python code, which "
                         "attnpick runs only when asked. If you trust it, pass --trust-remote-code.")
    raise UsageError(f"{where}: model_type {model_type!r} is unknown to transformers {tf_version}. "
                     "Upgrade transformers (pip install -U transformers).")


@dataclass(frozen=True)
class Prepared:
    """A model resolved to a folder, with the architecture path and attention facts decided."""

    name: str
    folder: Path
    source: str
    architecture: Architecture
    info: ModelFacts

    @property
    def load_folder(self) -> Path:
        """The folder transformers loads: the converted Llama copy for the EXAONE mapping."""
        return exaone.converted_folder(self.folder) if self.architecture == "llama_mapping" else self.folder


def prepare(model_name: str, trust_remote_code: bool = False, force_llama_mapping: bool = False) -> Prepared:
    """Resolve a model name, read its config.json and decide how to build it; reads no weights, runs no code."""
    folder, source = resolve_model(model_name, trust_remote_code)
    config = read_config(folder)
    arch = architecture(config, trust_remote_code, force_llama_mapping, where=model_name)
    return Prepared(model_name, folder, source, arch, model_facts(config, source=str(folder)))


def torch_dtype_name(dtype: Any) -> str | None:
    """Accept None, a torch.dtype or a name ("bf16", "bfloat16", "torch.float16")."""
    if dtype is None:
        return None
    text = str(dtype).removeprefix("torch.")
    return {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}.get(
        text, text)


def load_model(
    model_name: str = tiny.NAME,
    max_seq_length: int = 2048,
    dtype: Any = None,
    load_in_4bit: bool = False,
    trust_remote_code: bool = False,
    backend: str = "auto",
    *,
    facts: EnvFacts | None = None,
    smoke_timeout: float = DEFAULT_TIMEOUT_S,
    use_cache: bool = True,
    force_llama_mapping: bool = False,
    decision: Decision | None = None,
    policy: str = "auto",
) -> tuple[Any, Any, LoadReport]:
    """Load a causal LM with the fastest attention backend that is proven to work here.

    Parameters mirror Unsloth's `FastLanguageModel.from_pretrained`, plus `backend`.

    Args:
        model_name: `tiny-exaone`, a local folder laid out like the hub, or a hub id in the local cache.
        max_seq_length: longest sequence the model will see (set on the tokenizer; Unsloth uses it too).
        dtype: None for the device's best (bf16 on Ampere+, fp16 on older GPUs, fp32 on CPU), or a dtype.
        load_in_4bit: bitsandbytes NF4 quantization (QLoRA). Needs bitsandbytes; never silently skipped.
        trust_remote_code: allow the repository's own code, only when no native class exists.
        backend: "auto" or one backend name (see `attnpick.catalog.BACKEND_NAMES`).
        facts: facts of this machine (probed when None).
        smoke_timeout: seconds one smoke run may take.
        use_cache: reuse cached smoke results for the same machine, packages, shapes and dtype.
        force_llama_mapping: load EXAONE through attnpick's Llama mapping even where transformers has a
            native class.
        decision: a decision made beforehand (e.g. agreed by every rank of a distributed job); its
            accepted and eligible candidates are tried in order.
        policy: "auto" (the guide's order) or "measured" (the fastest backend that passed parity at
            `max_seq_length`, measured here once and cached).

    Returns:
        (model, tokenizer, LoadReport)

    Example:
        >>> from attnpick import load_model
        >>> model, tokenizer, report = load_model("tiny-exaone", max_seq_length=256)
        >>> report.chosen
        'sdpa'
    """
    from attnpick.probe import disabled_backends

    if policy not in ("auto", "measured"):
        raise UsageError(f"Unknown policy {policy!r}. Choose auto or measured.")
    request = Request.from_names(backend, torch_dtype_name(dtype), disabled=disabled_backends())
    prepared = prepare(model_name, trust_remote_code, force_llama_mapping)
    source, arch, info = prepared.source, prepared.architecture, prepared.info
    if facts is None:
        from attnpick.probe import collect_facts

        facts = collect_facts()
    if load_in_4bit:
        _require_bitsandbytes(facts)
    if decision is None:
        decision = choose(facts, request, info)
        if policy == "measured" and not request.forced:
            from attnpick.bench import measured_decision

            decision = measured_decision(facts, decision, model_name, max_seq_length)
    if decision.source == "forced":
        decision.require()
    load_folder = prepared.load_folder

    attempts: list[Attempt] = []
    patched: bool | None = None
    for cand in decision.candidates:
        if cand.verdict == "rejected":
            attempts.append(Attempt(cand.backend, "rejected", cand.reasons))
            continue
        failed = known_failure(facts, cand.backend, decision.dtype, info) if decision.source == "auto" else None
        if failed is not None:
            worst = ", ".join(f"{k} {m['relative']:.1e} > {m['tolerance']:.0e}"
                              for k, m in failed.get("measures", {}).items() if not m["ok"]) or failed.get("error")
            reason = Reason("parity_failed", f"need parity with eager float32, have a failed 'attnpick verify' "
                            f"on this machine ({worst})", "attnpick verify")
            attempts.append(Attempt(cand.backend, "rejected", (reason,)))
            continue
        start = time.monotonic()
        spec = smoke_spec(cand.backend, facts, info, decision.dtype)
        smoke = run_smoke(spec, facts, timeout_s=smoke_timeout, use_cache=use_cache)
        if not smoke.ok:
            assert smoke.reason is not None
            attempts.append(Attempt(cand.backend, "smoke_failed", (smoke.reason,), time.monotonic() - start, smoke))
            continue
        try:
            model, tokenizer, unsloth_kernel = _load(cand.backend, load_folder, arch, decision.dtype, facts,
                                                     load_in_4bit, max_seq_length, trust_remote_code)
        except Exception as exc:  # noqa: BLE001 - transformers has the final word; its message is the reason
            message = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__
            reason = Reason("load_failed", f"need the model to load with {cand.backend}, have "
                            f"{type(exc).__name__}: {message}")
            attempts.append(Attempt(cand.backend, "load_failed", (reason,), time.monotonic() - start, smoke))
            if cand.backend == "unsloth":
                from attnpick.backends.unsloth import transformers_patched

                patched = transformers_patched()
            _free()
            continue
        confirmation = confirm(model, tokenizer, cand.backend, arch)
        if confirmation.ok is False:
            reason = Reason("confirm_failed", f"need {cand.backend}'s attention to run, have: {confirmation.note}")
            attempts.append(Attempt(cand.backend, "confirm_failed", (reason,), time.monotonic() - start, smoke))
            del model, tokenizer
            _free()
            continue
        attempts.append(Attempt(cand.backend, "loaded", (), time.monotonic() - start, smoke))
        if patched is None and "unsloth" in sys.modules:
            from attnpick.backends.unsloth import transformers_patched

            patched = transformers_patched()
        report = LoadReport(
            model=model_name, folder=str(load_folder), source=source, chosen=cand.backend, architecture=arch,
            model_class=type(model).__name__, transformers=_transformers_version(),
            quantization="bitsandbytes-nf4" if load_in_4bit else None, dtype=decision.dtype,
            device=str(_device_of(model)), max_seq_length=max_seq_length, attempts=tuple(attempts),
            decision=decision, confirmation=confirmation, unsloth_kernel=unsloth_kernel,
            transformers_patched=patched, notes=_notes(arch, info),
        )
        return model, tokenizer, report

    lines = [f"{a.backend}: {a.outcome} (" + "; ".join(r.message for r in a.reasons) + ")" for a in attempts]
    raise NoBackendError(f"No backend could load {model_name} here: " + " | ".join(lines), decision=decision)


def _require_bitsandbytes(facts: EnvFacts) -> None:
    pkg = facts.package("bitsandbytes")
    if pkg.version is None:
        raise UsageError("load_in_4bit needs bitsandbytes, which is not installed: pip install bitsandbytes "
                         "(or drop --4bit). attnpick never falls back to full precision silently.")
    if pkg.importable is False:
        raise UsageError(f"load_in_4bit needs bitsandbytes, which fails to import ({pkg.error}). Reinstall it: "
                         "pip install -U bitsandbytes.")


def _load(backend: str, folder: Path, arch: Architecture, dtype: str, facts: EnvFacts, load_in_4bit: bool,
          max_seq_length: int, trust_remote_code: bool) -> tuple[Any, Any, str | None]:
    if backend == "unsloth":
        from attnpick.backends.unsloth import load_unsloth

        return load_unsloth(folder, max_seq_length, dtype, load_in_4bit, facts)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from attnpick.backends import ensure_registered

    ensure_registered(backend)
    torch_dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "attn_implementation": CATALOG[backend].hf_name,
                              "trust_remote_code": trust_remote_code and arch == "remote_code"}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype)
    device = _torch_device(facts)
    if (folder / tiny.RANDOM_MARKER).is_file():
        return _random_model(folder, kwargs, device, load_in_4bit, max_seq_length)
    if device != "cpu":
        kwargs["device_map"] = {"": device}
    model, info = AutoModelForCausalLM.from_pretrained(str(folder), output_loading_info=True, **kwargs)
    bad = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(bad.values()):
        raise ValueError(f"checkpoint does not fit {type(model).__name__}: " +
                         ", ".join(f"{k} {v[:5]}" for k, v in bad.items() if v))
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=kwargs["trust_remote_code"])
    tokenizer.model_max_length = max_seq_length
    return model, tokenizer, None


def _random_model(folder: Path, kwargs: dict[str, Any], device: str, load_in_4bit: bool,
                  max_seq_length: int) -> tuple[Any, Any, None]:
    """A model with real shapes and seeded random weights, for timing only."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if load_in_4bit:
        raise UsageError(f"{folder.name} has random weights for timing; 4-bit needs a real checkpoint.")
    config = AutoConfig.from_pretrained(str(folder))
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=kwargs["dtype"],
                                                 attn_implementation=kwargs["attn_implementation"])
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    tokenizer.model_max_length = max_seq_length
    return model, tokenizer, None


@contextmanager
def _counting(impl: str, eager: Callable[..., Any] | None, calls: dict[str, int]) -> Iterator[None]:
    """Route `impl` through a counter in transformers' AttentionInterface for the duration of the block."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    target = local if impl in local else AttentionInterface._global_mapping
    missing = object()
    saved = target.get(impl, missing)
    original = eager if saved is missing else saved
    if original is None:
        yield
        return
    name = f"{original.__module__}.{original.__qualname__}"

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] = calls.get(name, 0) + 1
        return original(*args, **kwargs)

    target[impl] = counted
    try:
        yield
    finally:
        if saved is missing:
            del target[impl]
        else:
            target[impl] = saved


def confirm(model: Any, tokenizer: Any, backend: str, arch: Architecture = "native") -> Confirmation:
    """One tiny padded forward, counting the attention layers that ran and the attention function each
    called through transformers' AttentionInterface. Unsloth replaces the layers' forward with its own, so
    for it the layer count is the proof and `forwards` names Unsloth's function."""
    import torch

    impl = getattr(model.config, "_attn_implementation", None)
    layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    hf_name = CATALOG[backend].hf_name
    attn_modules = [m for m in model.modules() if type(m).__name__.endswith("Attention")]
    eager = getattr(sys.modules.get(type(attn_modules[0]).__module__), "eager_attention_forward", None) \
        if attn_modules else None
    calls: dict[str, int] = {}
    forwards: dict[str, int] = {}
    hooks = []
    for module in attn_modules:
        fn = type(module).forward
        name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"

        def hook(*_: Any, name: str = name) -> None:
            forwards[name] = forwards.get(name, 0) + 1

        hooks.append(module.register_forward_hook(hook))
    ids = tokenizer(["attention check", "a"], return_tensors="pt", padding=True)
    ids = {k: v.to(_device_of(model)) for k, v in ids.items()}
    try:
        with _counting(impl or "", eager, calls), torch.no_grad():
            model(**ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    ran, total = sum(forwards.values()), sum(calls.values())
    if backend == "unsloth":
        ok = ran == layers if layers else ran > 0
        return Confirmation(impl, calls, layers, ok, "" if ok else f"{ran} attention layers ran of {layers}",
                            forwards)
    if impl != hf_name:
        return Confirmation(impl, calls, layers, False, f"the model runs {impl!r}, not {hf_name!r}", forwards)
    if total == 0:
        if arch == "remote_code":
            return Confirmation(impl, calls, layers, None, "remote code does not dispatch through transformers' "
                                "AttentionInterface: unconfirmed", forwards)
        return Confirmation(impl, calls, layers, False, "no attention function was called", forwards)
    ok = total == layers if layers else True
    return Confirmation(impl, calls, layers, ok, "" if ok else f"{total} attention calls for {layers} layers",
                        forwards)


def _notes(arch: Architecture, info: ModelFacts) -> tuple[str, ...]:
    from transformers import __version__ as tf_version

    notes = {
        "native": f"transformers {tf_version} has a native class for model_type {info.model_type!r}; no "
                  "repository code ran.",
        "llama_mapping": f"EXAONE loaded as Llama through attnpick's mapping (transformers {tf_version}); no "
                         "repository code ran.",
        "remote_code": "the repository's own code ran (trust_remote_code=True).",
    }
    return (notes[arch],)


def _torch_device(facts: EnvFacts) -> str:
    return {"cuda": "cuda:0", "rocm": "cuda:0", "xpu": "xpu:0", "mps": "mps"}.get(facts.device.type, "cpu")


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def _transformers_version() -> str:
    from transformers import __version__

    return __version__


def _free() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
