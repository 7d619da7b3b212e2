"""Smoke runs: prove a backend on this device in a child process, with a timeout, cached by fingerprint.

A smoke run exercises only the backend's attention (a one-layer Llama with the model's heads, kv heads and
head_dim, forward and backward on a left- and right-padded batch), not the user's whole model. A crash
(segfault, abort, CUDA fault), a hang past the timeout, or an exception becomes a `Reason`; the caller
survives and moves on. Results that finished (pass or fail) are cached per machine facts, package versions,
backend, shapes and dtype; timeouts are not cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from attnpick.decide.decision import Candidate, Reason, assess_one
from attnpick.decide.facts import EnvFacts, ModelFacts
from attnpick.model.resolve import torch_device
from attnpick.util import cache
from attnpick.util.subproc import SMOKE_TIMEOUT_S, run_child

CHILD_MODULE = "attnpick.load._smoke_child"
SMOKE_VERSION = 2


@dataclass(frozen=True)
class SmokeResult:
    backend: str
    ok: bool
    seconds: float
    cached: bool = False
    reason: Reason | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend, "ok": self.ok, "seconds": self.seconds, "cached": self.cached}
        if self.reason:
            out["reason"] = self.reason.to_dict()
        return out


def smoke_job(candidate: Candidate, facts: EnvFacts, model_facts: ModelFacts | None, dtype: str, seq: int = 32,
              training: bool = True) -> dict[str, Any]:
    """The child's job: backend, the exact attn_implementation (a hub kernel repo for the hub provider, with its
    pinned version), device, dtype and the model's attention shapes (GQA as the model has it)."""
    heads, kv_heads, head_dim = (model_facts or ModelFacts()).attention_shape
    kernel = candidate.kernel
    return {
        "backend": candidate.backend,
        "attn_implementation": candidate.implementation,
        "kernel": [kernel.repo, kernel.version] if kernel else None,
        "device": torch_device(facts),
        "dtype": dtype,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "seq": seq,
        "training": training,
    }


def _valid(value: Any) -> bool:
    reason = value.get("reason")
    return (isinstance(value.get("ok"), bool) and isinstance(value.get("seconds"), (int, float))
            and (reason is None or (isinstance(reason, dict) and {"code", "message"} <= set(reason))))


def run_smoke(job: dict[str, Any], facts: EnvFacts, timeout_s: float = SMOKE_TIMEOUT_S,
              use_cache: bool = True) -> SmokeResult:
    """Run one smoke job in a child process (or answer from the cache)."""
    key = {"facts": facts.to_dict(), "job": job, "version": SMOKE_VERSION, "child": CHILD_MODULE}
    path, hit = cache.cached("smoke", key, _valid)
    if use_cache and hit is not None:
        reason = Reason(**hit["reason"]) if hit.get("reason") else None
        return SmokeResult(job["backend"], hit["ok"], hit["seconds"], cached=True, reason=reason)

    start = time.monotonic()
    result, timed_out = _in_child(job, timeout_s)
    if not timed_out:
        cache.store(path, key, {"ok": result.ok, "seconds": result.seconds,
                                "reason": result.reason.to_dict() if result.reason else None})
    return SmokeResult(job["backend"], result.ok, round(time.monotonic() - start, 3), reason=result.reason)


def _in_child(job: dict[str, Any], timeout_s: float) -> tuple[SmokeResult, bool]:
    backend = job["backend"]
    child = run_child(CHILD_MODULE, job, timeout_s)
    if child.timed_out:
        reason = Reason("smoke_timeout", f"need the smoke run to finish within {timeout_s:g}s, have a hang "
                        f"({backend} on {job['device']}, {job['dtype']})", "--smoke-timeout SECONDS")
        return SmokeResult(backend, False, timeout_s, reason=reason), True
    record = child.record
    if record is not None and record.get("ok"):
        return SmokeResult(backend, True, record.get("seconds", 0.0)), False
    if record is not None:
        reason = Reason("smoke_failed", f"need a working forward+backward on {job['device']} "
                        f"({job['dtype']}), have: {record.get('error')}")
        return SmokeResult(backend, False, 0.0, reason=reason), False
    tail = f": {child.stderr_tail}" if child.stderr_tail else ""
    reason = Reason("smoke_crashed", f"need the smoke run to survive, have a child that {child.describe_exit()}{tail}")
    return SmokeResult(backend, False, 0.0, reason=reason), False


@dataclass(frozen=True)
class Runnability:
    """Whether a backend runs here: its candidate (forced, in the dtype) and, when it does not, at which stage
    ("ineligible": the decision's requirements; "smoke": the smoke run) and why."""

    candidate: Candidate
    stage: str | None = None
    reasons: tuple[Reason, ...] = ()

    @property
    def ok(self) -> bool:
        return self.stage is None


def runnability(backend: str, facts: EnvFacts, model_facts: ModelFacts | None, dtype: str,
                timeout_s: float = SMOKE_TIMEOUT_S) -> Runnability:
    """Is `backend` eligible here (forced, in `dtype`) and does it pass its smoke run?"""
    cand = assess_one(backend, facts, dtype, model_facts)
    if cand.reasons:
        return Runnability(cand, "ineligible", cand.reasons)
    smoke = run_smoke(smoke_job(cand, facts, model_facts, dtype), facts, timeout_s=timeout_s)
    if smoke.ok:
        return Runnability(cand)
    return Runnability(cand, "smoke", (smoke.reason or Reason("smoke_failed", "need a passing smoke run, have a "
                                                              "failed one"),))
