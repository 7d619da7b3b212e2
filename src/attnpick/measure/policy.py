"""`--policy measured`: order the eligible backends by their measured attention forward+backward time at the
model's shapes and the user's sequence length, among those that pass parity; measured once per machine,
shape, dtype, length and batch, then cached. The measuring is `attnpick.measure.bench`'s, the reordering is the
pure `attnpick.decide.decision.rank_by_times`.
"""

from __future__ import annotations

from typing import Any

from attnpick.backends.registry import PINNED_SDPA, is_loader
from attnpick.decide.decision import Decision, Reason, assess_one, rank_by_times
from attnpick.decide.facts import EnvFacts
from attnpick.measure.bench import bench, fmt_seconds
from attnpick.model.resolve import Prepared
from attnpick.util import cache


def _valid(value: Any) -> bool:
    return (isinstance(value.get("times"), dict) and all(isinstance(t, (int, float)) for t in value["times"].values())
            and isinstance(value.get("excluded"), dict)
            and all(isinstance(r, dict) and {"code", "message"} <= set(r) for r in value["excluded"].values()))


def measured_decision(facts: EnvFacts, decision: Decision, prepared: Prepared, seq: int, batch: int = 1,
                      use_cache: bool = True) -> Decision:
    """`decision`'s eligible candidates, and the pinned SDPA kernels eligible here, ranked by measured speed;
    the ones failing parity or the measurement rejected with their reason."""
    model_facts = prepared.model_facts
    key = {"facts": facts.to_dict(), "dtype": decision.dtype, "seq": seq, "batch": batch,
           "model": list(model_facts.attention_shape)}
    path, hit = cache.cached("measured", key, _valid)
    if not use_cache or hit is None:
        candidates = [name for name in decision.runnable if not is_loader(name)]
        candidates += [name for name in PINNED_SDPA
                       if not assess_one(name, facts, decision.dtype, model_facts, origin="measured").reasons]
        report = bench(prepared, seq_lens=(seq,), batch=batch, mode="kernel", backends=candidates,
                       dtype=decision.dtype, facts=facts, decision=decision)
        times = {r.backend: r.metrics["forward_backward"]["median_s"] for r in report.rows if r.ok}
        failed = {r.backend: Reason("not_measured", f"need a measured run, have: {r.error}")
                  for r in report.rows if not r.ok}
        excluded = {**failed, **report.excluded}
        hit = {"times": times, "excluded": {name: reason.to_dict() for name, reason in excluded.items()}}
        cache.store(path, key, hit)
    times = hit["times"]
    rejected = {name: Reason(**reason) for name, reason in hit["excluded"].items()}
    notes = {name: f"attention fwd+bwd {fmt_seconds(t)} at {seq} tokens" for name, t in times.items()}
    return rank_by_times(decision, times, rejected, notes)
