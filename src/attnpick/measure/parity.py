"""`verify()`: does a backend give the reference's numbers on the user's own model? (parity)

The reference is the registry's reference backend (eager attention) in float32. Every model is built the way the
chain builds it (`attnpick.load.chain.instantiate`) and gets its LoRA the one way attnpick attaches it
(`attnpick.load.lora.attach`). Every backend runs the same fixed batch (one left-padded, one right-padded and one
full row; GQA as the model has it) and is compared, within `measure/tolerances.py`'s bounds, on logits at non-
padding positions, the loss, and the gradients of every trainable parameter (LoRA parameters when a LoRA is
attached). Padding positions are excluded: their values are undefined by contract (FlashAttention's unpadded kernels
return zeros there, SDPA and eager return attention over the padding), and nothing downstream reads them because the
loss masks them out.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

from attnpick.backends.registry import BACKEND_NAMES, CATALOG, REFERENCE, is_loader
from attnpick.decide.decision import Candidate, Decision, Reason, Request, assess_one, choose
from attnpick.decide.facts import EnvFacts
from attnpick.decide.probe import collect_facts
from attnpick.errors import UsageError, first_line
from attnpick.load.chain import LoadOptions, instantiate
from attnpick.load.lora import attach
from attnpick.load.smoke import runnability
from attnpick.measure.tolerances import TOLERANCES
from attnpick.measure.verdicts import record_parity
from attnpick.model import tiny
from attnpick.model.options import ModelOptions
from attnpick.model.resolve import Prepared, as_prepared
from attnpick.util.options import option
from attnpick.util.subproc import SMOKE_TIMEOUT_S

TEXTS = (
    "어텐션은 질의와 키의 내적으로 가중치를 만들고, 그 가중치로 값을 더합니다.",
    "FlashAttention computes the same result faster.",
    "서울은 대한민국의 수도입니다.",
)


@dataclass(frozen=True)
class Measure:
    max_abs: float
    mean_abs: float
    relative: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.relative <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs": self.max_abs, "mean_abs": self.mean_abs, "relative": self.relative,
                "tolerance": self.tolerance, "ok": self.ok}


@dataclass(frozen=True)
class BackendParity:
    backend: str
    dtype: str
    measures: dict[str, Measure] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(m.ok for m in self.measures.values())

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "dtype": self.dtype, "ok": self.ok, "error": self.error,
                "measures": {k: m.to_dict() for k, m in self.measures.items()}}

    def reason(self) -> Reason:
        """Why this backend is out, when it failed: the measures beyond tolerance, or the error."""
        worst = ", ".join(f"{k} {m.relative:.1e} > {m.tolerance:.0e}" for k, m in self.measures.items() if not m.ok)
        return Reason("parity_failed", f"need parity with {REFERENCE} float32, have {worst or self.error}",
                      "attnpick verify")


@dataclass(frozen=True)
class VerifyReport:
    model: str
    dtype: str
    reference: str
    lora: bool
    results: tuple[BackendParity, ...]
    skipped: dict[str, Reason]
    facts: EnvFacts

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dtype": self.dtype, "reference": self.reference, "lora": self.lora,
                "ok": self.ok, "padding_positions": "excluded",
                "tolerances": {k: vars(v) for k, v in TOLERANCES.items()},
                "results": [r.to_dict() for r in self.results],
                "skipped": {name: reason.to_dict() for name, reason in self.skipped.items()},
                "facts": self.facts.to_dict()}


def fixed_batch(tokenizer: Any, device: Any) -> dict[str, Any]:
    """Row 0 left-padded, row 1 right-padded, row 2 full; labels are -100 at padding and at each row's first
    token."""
    import torch

    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    width = max(len(r) for r in rows) + 3  # every short row gets at least 3 padding positions
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((3, width), pad, dtype=torch.long)
    mask = torch.zeros((3, width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        start = width - n if i == 0 else 0
        if i == 2:
            n, row = width, (row * (width // max(1, len(row)) + 1))[:width]
        ids[i, start:start + n] = torch.tensor(row[:n])
        mask[i, start:start + n] = 1
    labels = ids.masked_fill(mask == 0, -100)
    # A causal LM's loss predicts token t from position t-1. A left-padded row's first real token would be
    # predicted from a padding position, whose logits are undefined by contract: its label is ignored.
    first = mask.argmax(dim=1)
    labels[torch.arange(3), first] = -100
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def _run(prepared: Prepared, cand: Candidate, dtype: str, facts: EnvFacts,
         lora: bool) -> tuple[Any, Any, dict[str, Any]]:
    import torch  # heavy: only when a model runs

    options = LoadOptions(load_in_4bit=False)
    model, tokenizer, _ = instantiate(cand, prepared, dtype, facts, options)
    model.eval()  # no dropout; gradients still flow
    if lora:
        model = attach(model, cand.backend, r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", seed=0,
                       init_lora_weights="gaussian")
    device = next(model.parameters()).device
    batch = fixed_batch(tokenizer, device)
    out = model(**batch, use_cache=False)
    out.loss.backward()
    keep = batch["attention_mask"].bool()
    logits = out.logits.detach().float()[keep].cpu()
    grads = {n: p.grad.detach().float().cpu() for n, p in model.named_parameters() if p.grad is not None}
    loss = out.loss.detach().float().cpu()
    del model, out
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return logits, loss, grads


def _measure(got: Any, ref: Any, tolerance: float) -> Measure:
    diff = (got - ref).abs()
    scale = max(float(ref.abs().max()), 1e-12)
    return Measure(float(diff.max()), float(diff.mean()), float(diff.max()) / scale, tolerance)


def compare(backend: str, dtype: str, reference: tuple[Any, Any, dict[str, Any]],
            got: tuple[Any, Any, dict[str, Any]]) -> BackendParity:
    import torch

    tol = TOLERANCES[dtype]
    ref_logits, ref_loss, ref_grads = reference
    logits, loss, grads = got
    if set(grads) != set(ref_grads):
        return BackendParity(backend, dtype, error="trainable parameters differ from the reference's")
    flat_ref = torch.cat([ref_grads[n].flatten() for n in sorted(ref_grads)])
    flat = torch.cat([grads[n].flatten() for n in sorted(grads)])
    return BackendParity(backend, dtype, {
        "logits": _measure(logits, ref_logits, tol.logits),
        "loss": _measure(loss.reshape(1), ref_loss.reshape(1), tol.loss),
        "grads": _measure(flat, flat_ref, tol.grads),
    })


def verify(model: str | Prepared = tiny.NAME, backends: list[str] | None = None, dtype: str | None = None,
           lora: bool = False, facts: EnvFacts | None = None, smoke_timeout: float = SMOKE_TIMEOUT_S,
           decision: Decision | None = None) -> VerifyReport:
    """Compare every backend that passes its smoke run with eager float32 on a fixed padded batch.

    Args:
        model: a name as for `load_model`, or a model prepared already (`attnpick.model.resolve.prepare`, with its
            trust_remote_code and Llama-mapping flags).
        backends: names to check; default: every backend the decision accepts here, pinned SDPA kernels too.
        dtype: the dtype the backends run in (default: the device's best); the reference is always float32.
        lora: attach the same LoRA (seeded) to every model and compare LoRA gradients only.
        decision: the caller's decision; its dtype is the backends' dtype.

    Returns:
        A `VerifyReport`; `ok` is False when any backend failed parity.
    """
    prepared = as_prepared(model)
    facts = facts or collect_facts()
    model_facts = prepared.model_facts
    decision = decision or choose(facts, Request.from_names(None, dtype), model_facts)
    to_check, skipped = _checkable(backends, facts, prepared, decision.dtype, smoke_timeout)
    reference = _run(prepared, assess_one(REFERENCE, facts, "float32", model_facts), "float32", facts, lora)
    results = []
    for cand in to_check:
        try:
            result = compare(cand.backend, decision.dtype, reference, _run(prepared, cand, decision.dtype, facts, lora))
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run the batch fails parity
            result = BackendParity(cand.backend, decision.dtype, error=f"{type(exc).__name__}: {first_line(exc)}")
        if cand.backend in CATALOG:
            record_parity(facts, model_facts, result.to_dict())
        results.append(result)
    return VerifyReport(prepared.name, decision.dtype, f"{REFERENCE} float32", lora, tuple(results), skipped, facts)


def _checkable(backends: list[str] | None, facts: EnvFacts, prepared: Prepared, dtype: str,
               smoke_timeout: float) -> tuple[list[Candidate], dict[str, Reason]]:
    """The candidates to compare (eligible and through their smoke run; a plugin as it is), and why the others are
    not: a model loader patches the model classes (its parity goes through its own loader); an explicitly named
    backend that cannot run here."""
    names = backends or [n for n in BACKEND_NAMES if not is_loader(n)]
    to_check: list[Candidate] = []
    skipped: dict[str, Reason] = {}
    for name in names:
        if is_loader(name):
            skipped[name] = Reason("not_comparable", f"need an attention function to compare, have {name}, a model "
                                   "loader that patches the model classes; its parity is checked through its loader")
        elif name not in CATALOG:  # an implementation registered in transformers by the caller
            to_check.append(Candidate(name, "eligible", attn_implementation=name))
        else:
            runs = runnability(name, facts, prepared.model_facts, dtype, smoke_timeout)
            if runs.ok:
                to_check.append(runs.candidate)
            elif runs.stage == "smoke" or backends:  # ineligible defaults are simply not checked
                skipped[name] = runs.reasons[0]
    return to_check, skipped


@dataclass
class VerifyConfig(ModelOptions):
    """Every option of `attnpick verify`, with its help line; `validate()` refuses bad input, `run()` verifies."""

    backend: list[str] = option([], "backends to check (default: every one that runs here)", kind="backends")
    dtype: str | None = option(None, "dtype of the backends (the reference is float32)", kind="dtype")
    lora: bool = option(False, "attach a LoRA and compare LoRA gradients", action="store_true")

    def backends(self) -> list[str] | None:
        return backend_names(self.backend)

    def validate(self) -> None:
        self.validate_model()
        self.backends()
        Request.from_names(None, self.dtype)

    def run(self) -> VerifyReport:
        self.validate()
        dtype = Request.from_names(None, self.dtype).dtype
        return verify(self.prepare(), backends=self.backends(), dtype=dtype, lora=self.lora)


def backend_names(given: list[str] | str | None) -> list[str] | None:
    """`--backend a,b --backend c` -> [a, b, c] (None: every backend that runs here); each a backend attnpick knows or
    an implementation registered in transformers' AttentionInterface in this process (a plugin)."""
    if isinstance(given, str):
        given = [given]
    names = [n.strip() for text in given or [] for n in text.split(",") if n.strip()]
    if not names:
        return None
    unknown = [n for n in names if n not in BACKEND_NAMES and not _registered_in_transformers(n)]
    if unknown:
        raise UsageError(f"Unknown backend {unknown[0]!r}. Choose from: {', '.join(BACKEND_NAMES)}.")
    return names


def _registered_in_transformers(name: str) -> bool:
    """A name some code in this process registered in transformers' AttentionInterface (a plugin)."""
    import sys

    module = sys.modules.get("transformers.modeling_utils")
    return module is not None and name in module.AttentionInterface()
