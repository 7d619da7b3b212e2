"""Smoke runs: prove a backend on this device in a child process, with a timeout, cached by fingerprint.

A crash (segfault, abort, CUDA fault), a hang past the timeout, or an exception becomes a `Reason`; the
caller survives and moves on. Results that finished (pass or fail) are cached per machine facts, package
versions, backend, shapes and dtype; timeouts are not cached.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from attnpick import cache
from attnpick._smoke_child import MARKER
from attnpick.decision import Reason
from attnpick.facts import EnvFacts, ModelFacts
from attnpick.subproc import run_child

CHILD_MODULE = "attnpick._smoke_child"
DEFAULT_TIMEOUT_S = 300.0
SMOKE_VERSION = 1
_TORCH_DEVICE = {"cuda": "cuda", "rocm": "cuda", "xpu": "xpu", "mps": "mps", "cpu": "cpu"}


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


def smoke_spec(backend: str, facts: EnvFacts, model: ModelFacts | None, dtype: str, seq: int = 32,
               training: bool = True) -> dict[str, Any]:
    """The child's job: backend, device, dtype and the model's attention shapes (GQA as the model has it)."""
    heads = (model.num_attention_heads if model else None) or 8
    return {
        "backend": backend,
        "device": _TORCH_DEVICE[facts.device.type],
        "dtype": dtype,
        "heads": heads,
        "kv_heads": (model.num_key_value_heads if model else None) or heads,
        "head_dim": (model.head_dim if model else None) or 64,
        "seq": seq,
        "training": training,
    }


def run_smoke(spec: dict[str, Any], facts: EnvFacts, timeout_s: float = DEFAULT_TIMEOUT_S,
              use_cache: bool = True) -> SmokeResult:
    """Run one smoke test in a child process (or answer from the cache)."""
    key = {"facts": facts.to_dict(), "spec": spec, "version": SMOKE_VERSION, "child": CHILD_MODULE}
    path, hit = cache.cached("smoke", key)
    if use_cache and isinstance(hit, dict):
        reason = Reason(**hit["reason"]) if hit.get("reason") else None
        return SmokeResult(spec["backend"], hit["ok"], hit["seconds"], cached=True, reason=reason)

    start = time.monotonic()
    result, timed_out = _child(spec, timeout_s)
    if not timed_out:
        with contextlib.suppress(OSError):
            cache.store(path, key, {"ok": result.ok, "seconds": result.seconds,
                                    "reason": result.reason.to_dict() if result.reason else None})
    return SmokeResult(spec["backend"], result.ok, round(time.monotonic() - start, 3), reason=result.reason)


def _child(spec: dict[str, Any], timeout_s: float) -> tuple[SmokeResult, bool]:
    backend = spec["backend"]
    child = run_child(CHILD_MODULE, spec, MARKER, timeout_s)
    if child.timed_out:
        reason = Reason("smoke_timeout", f"need the smoke run to finish within {timeout_s:.0f}s, have a hang "
                        f"({backend} on {spec['device']}, {spec['dtype']})")
        return SmokeResult(backend, False, timeout_s, reason=reason), True
    record = child.record
    if record is not None and record["ok"]:
        return SmokeResult(backend, True, record.get("seconds", 0.0)), False
    if record is not None:
        reason = Reason("smoke_failed", f"need a working forward+backward on {spec['device']} "
                        f"({spec['dtype']}), have: {record['error']}")
        return SmokeResult(backend, False, 0.0, reason=reason), False
    tail = f": {child.stderr_tail}" if child.stderr_tail else ""
    reason = Reason("smoke_crashed", f"need the smoke run to survive, have a child that {child.describe_exit()}{tail}")
    return SmokeResult(backend, False, 0.0, reason=reason), False



def why_not_runnable(backend: str, facts: EnvFacts, model: ModelFacts | None, dtype: str,
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[str, str] | None:
    """None when `backend` is eligible here (forced, in `dtype`) and passes its smoke run; else
    ("ineligible" | "smoke", the reason)."""
    from attnpick.decision import Request, choose

    cand = choose(facts, Request(backend, dtype, source="check"), model).candidate(backend)
    if cand.reasons:
        return "ineligible", "; ".join(r.message for r in cand.reasons)
    smoke = run_smoke(smoke_spec(backend, facts, model, dtype), facts, timeout_s=timeout_s)
    if smoke.ok:
        return None
    return "smoke", smoke.reason.message if smoke.reason else "smoke run failed"
