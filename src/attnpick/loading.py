"""`load_model()`: the front door. Validate the request, prepare the model, probe the machine, decide (the
guide's order or `--policy measured`; under torchrun, agreed by every rank), then hand the decision to the proven
chain (`attnpick.load.chain`). It sits above `measure/` (the measured policy times backends) and below what trains,
exports and chats. `DoctorConfig` and `PlanConfig` decide without loading: on this machine, or on one a facts file
describes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from attnpick import settings
from attnpick.backends.registry import BACKEND_NAMES, check_hub_facts
from attnpick.decide.decision import Decision, Request, choose, reject
from attnpick.decide.facts import EnvFacts
from attnpick.decide.probe import collect_facts
from attnpick.errors import UsageError
from attnpick.load import distributed
from attnpick.load.chain import LoadOptions, LoadReport, load_with
from attnpick.load.quantization import require_bitsandbytes
from attnpick.measure.policy import measured_decision
from attnpick.measure.verdicts import parity_failures
from attnpick.model import tiny
from attnpick.model.config import read_model_facts
from attnpick.model.options import ModelOptions, check_max_seq_length
from attnpick.model.resolve import DEFAULT_MAX_SEQ_LENGTH, Prepared, dtype_name, prepare
from attnpick.settings import BACKEND_ENV, disabled_backends
from attnpick.settings import backend as backend_from_env
from attnpick.util.clock import phase
from attnpick.util.options import option
from attnpick.util.subproc import SMOKE_TIMEOUT_S, check_timeout

POLICIES = ("auto", "measured")

__all__ = ["DoctorConfig", "LoadConfig", "LoadReport", "PlanConfig", "decide", "load_model", "request_for"]


def request_for(backend: str | list[str] | None, dtype: Any = None, training: bool = True,
                origin: str = "backend=") -> Request:
    """The request: the backend asked for (`origin` names where: an argument or a flag), else $ATTNPICK_BACKEND,
    else auto; the dtype by name or torch.dtype; the backends switched off on this process."""
    asked = [backend] if isinstance(backend, str) else list(backend or [])
    asked = [name for name in asked if name != "auto"]
    off = disabled_backends()
    if asked:
        return Request.from_names(asked, dtype_name(dtype), training, origin=origin, disabled=off)
    from_env = backend_from_env()
    if from_env:
        return Request.from_names(from_env, dtype_name(dtype), training, origin=BACKEND_ENV, disabled=off)
    return Request.from_names(None, dtype_name(dtype), training, disabled=off)


def decide(facts: EnvFacts, request: Request, prepared: Prepared, policy: str = "auto",
           seq: int = 256, use_cache: bool = True) -> Decision:
    """The decision the loader follows: a forced backend as asked; `auto` in the guide's order without the
    backends that failed parity here; `measured` ordered by measured speed at `seq` tokens."""
    decision = choose(facts, request, prepared.model_facts)
    if request.forced:
        return decision
    if policy == "measured":
        return measured_decision(facts, decision, prepared, seq, use_cache=use_cache)
    return reject(decision, parity_failures(facts, decision.runnable, decision.dtype, prepared.model_facts))


def check_load_options(max_seq_length: Any, policy: str, smoke_timeout: Any) -> None:
    """Refuse bad options before any work: one message naming the option."""
    check_policy(policy)
    check_max_seq_length(max_seq_length, "max_seq_length (--max-seq-length)")
    check_timeout(smoke_timeout, "smoke_timeout (--smoke-timeout)")


def check_policy(policy: Any) -> None:
    if policy not in POLICIES:
        raise UsageError(f"Unknown policy {policy!r}. Choose auto or measured.")


@dataclass
class LoadConfig(ModelOptions):
    """Every option of `attnpick load`, with its help line; `validate()` holds the checks, `load()` loads."""

    backend: str | None = option("auto", "auto (default) or one backend name; env ATTNPICK_BACKEND", kind="backend")
    dtype: str | None = option(None, "compute dtype", kind="dtype")
    load_in_4bit: bool = option(False, "bitsandbytes NF4 (QLoRA)", flag="--4bit", action="store_true")
    max_seq_length: int = option(DEFAULT_MAX_SEQ_LENGTH, "longest sequence the model will see", metavar="N")
    smoke_timeout: float = option(SMOKE_TIMEOUT_S, "seconds one smoke run may take", metavar="S", type=float)
    fresh: bool = option(False, "ignore cached import checks and smoke results", action="store_true")
    policy: str = option("auto", "auto: the guide's order; measured: the fastest backend that passed parity here",
                         choices=POLICIES)

    def validate(self) -> None:
        """Every value checked before any work; `UsageError` naming the option."""
        self.validate_model()
        check_load_options(self.max_seq_length, self.policy, self.smoke_timeout)
        request_for(self.backend, self.dtype)

    def load(self, facts: EnvFacts | None = None) -> tuple[Any, Any, LoadReport]:
        """`load_model` with these options."""
        self.validate()
        return load_model(self.prepare(), max_seq_length=self.max_seq_length, dtype=self.dtype,
                          load_in_4bit=self.load_in_4bit, backend=self.backend, facts=facts,
                          smoke_timeout=self.smoke_timeout, use_cache=not self.fresh, policy=self.policy)


@dataclass
class DecisionOptions(ModelOptions):
    """What a decision without a load is asked (`doctor`, `plan`): the backend, the dtype and whether training is
    planned, for a model whose config.json gives the attention shapes."""

    backend: str | None = option("auto", "auto (default) or one backend name; env ATTNPICK_BACKEND", kind="backend")
    dtype: str | None = option(None, "compute dtype", kind="dtype")
    inference: bool = option(False, "no training planned (no backward pass needed)", action="store_true")

    def request(self) -> Request:
        return request_for(self.backend, self.dtype, not self.inference, origin="--backend")


@dataclass
class DoctorConfig(DecisionOptions):
    """Every option of `attnpick doctor`: this machine's facts and the decision, for a model's attention shapes
    (only its config.json is read) or none."""

    model: str | None = option(None, "a model whose config.json gives the attention shapes (default: none; "
                               f"{tiny.NAME}'s for --policy measured)", positional=True)
    fresh: bool = option(False, "ignore cached import checks", action="store_true")
    policy: str = option("auto", "measured: rank eligible backends by measured speed (the model's shapes, default "
                         f"{tiny.NAME}, at --seq-len) among those that pass parity", choices=POLICIES)
    seq_len: int = option(256, "sequence length for --policy measured", metavar="N")

    def validate(self) -> None:
        if self.model is not None:
            self.validate_model()
        check_policy(self.policy)
        check_max_seq_length(self.seq_len, "--seq-len")
        self.request()

    def run(self) -> tuple[EnvFacts, Decision]:
        """(this machine's facts, the decision)."""
        self.validate()
        facts = collect_facts(fresh=self.fresh)
        if self.policy == "measured":
            prepared = self.prepare() if self.model else prepare(tiny.NAME)
            return facts, decide(facts, self.request(), prepared, self.policy, self.seq_len, use_cache=not self.fresh)
        model_facts = read_model_facts(self.model) if self.model else None
        return facts, choose(facts, self.request(), model_facts)


@dataclass
class PlanConfig(DecisionOptions):
    """Every option of `attnpick plan`: the decision on the machine a facts file (`doctor --json`) describes."""

    model: str | None = option(None, "a model whose config.json gives the attention shapes (default: none)",
                               positional=True)
    env: str = option("", "facts JSON (doctor --json output or its 'facts'); '-' reads standard input",
                      metavar="FILE", required=True)

    def validate(self) -> None:
        if self.model is not None:
            self.validate_model()
        if not self.env:
            raise UsageError("attnpick plan needs --env FILE: a facts file written by 'attnpick doctor --json'.")
        self.request()

    def run(self, document: Any) -> tuple[EnvFacts, Decision]:
        """(the described machine's facts, the decision), from the facts file's parsed `document`."""
        self.validate()
        facts = EnvFacts.from_dict(document, where=self.env)
        check_hub_facts(facts, self.env)
        return facts, choose(facts, self.request(), read_model_facts(self.model) if self.model else None)


def load_model(
    model_name: str | Prepared = tiny.NAME,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    dtype: Any = None,
    load_in_4bit: bool = False,
    trust_remote_code: bool = False,
    backend: str | None = "auto",
    *,
    token: str | None = None,
    revision: str | None = None,
    facts: EnvFacts | None = None,
    smoke_timeout: float = SMOKE_TIMEOUT_S,
    use_cache: bool = True,
    force_llama_mapping: bool = False,
    decision: Decision | None = None,
    policy: str = "auto",
) -> tuple[Any, Any, LoadReport]:
    """Load a causal LM with the fastest attention backend that is proven to work here.

    Parameters mirror Unsloth's `FastLanguageModel.from_pretrained`, plus `backend`.

    Args:
        model_name: `tiny-exaone`, a local folder laid out like the hub, or a hub id in the local cache; or a model
            prepared already (`ModelOptions.prepare()`, `attnpick.model.resolve.prepare`), with its own flags.
        max_seq_length: longest sequence the model will see (set on the tokenizer; Unsloth uses it too).
        dtype: None for the device's best (bf16 on Ampere+, fp16 on older GPUs, fp32 on CPU), or a dtype.
        load_in_4bit: bitsandbytes NF4 quantization (QLoRA). Needs bitsandbytes; never silently skipped.
        trust_remote_code: allow the repository's own code, only when no native class exists.
        backend: "auto" (or None) or one backend name (see `attnpick.backends.registry.BACKEND_NAMES`); when auto,
            $ATTNPICK_BACKEND applies if set.
        token, revision: for a hub id not yet in the local cache (passed to huggingface_hub).
        facts: facts of this machine (probed when None).
        smoke_timeout: seconds one smoke run may take.
        use_cache: reuse cached smoke results for the same machine, packages, shapes and dtype.
        force_llama_mapping: load EXAONE through attnpick's Llama mapping even where transformers has a
            native class.
        decision: a decision made beforehand; its runnable candidates are tried in order. Otherwise, under
            torchrun / accelerate launch (WORLD_SIZE > 1), every rank agrees on the first backend that runs on
            all of them.
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
    settings.check_environment(BACKEND_NAMES)
    check_load_options(max_seq_length, policy, smoke_timeout)
    request = request_for(backend, dtype)
    prepared = model_name if isinstance(model_name, Prepared) else \
        prepare(model_name, trust_remote_code, force_llama_mapping, token=token, revision=revision)
    facts = facts or collect_facts()
    if load_in_4bit:
        require_bitsandbytes(facts)
    differing: tuple[Any, ...] = ()
    if decision is None:
        with phase("decide"):
            decision = decide(facts, request, prepared, policy, max_seq_length, use_cache)
        if distributed.rank_and_world()[1] > 1 and not request.forced:
            distributed.init_process_group()
            decision, differing = distributed.agree_on_backend(facts, decision, prepared.model_facts)
    options = LoadOptions(max_seq_length, load_in_4bit, smoke_timeout, use_cache)
    model, tokenizer, report = load_with(decision, prepared, facts, options)
    return model, tokenizer, replace(report, ranks_that_differed=differing)
