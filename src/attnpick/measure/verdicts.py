"""Verdicts recorded on this machine: the parity results of `attnpick verify`, by machine facts, backend,
dtype and attention shape. The loader's auto choice skips a backend that failed here (`reject` in
attnpick.decide.decision does the skipping; this module only remembers and recalls).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from attnpick.decide.decision import Reason
from attnpick.decide.facts import EnvFacts, ModelFacts
from attnpick.util import cache

KIND = "parity"


def _key(facts: EnvFacts, backend: str, dtype: str, model_facts: ModelFacts) -> dict[str, Any]:
    return {"facts": facts.to_dict(), "backend": backend, "dtype": dtype,
            "shape": list(model_facts.attention_shape)}


def _valid(value: Any) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("ok"), bool):
        return False
    measures = value.get("measures", {})
    return isinstance(measures, dict) and all(
        isinstance(m, dict) and all(isinstance(m.get(k), (int, float)) for k in ("relative", "tolerance"))
        for m in measures.values())


def record_parity(facts: EnvFacts, model_facts: ModelFacts, result: dict[str, Any]) -> None:
    """Remember one backend's parity result (`BackendParity.to_dict()`)."""
    key = _key(facts, result["backend"], result["dtype"], model_facts)
    path, _ = cache.cached(KIND, key)
    cache.store(path, key, result)


def parity_failures(facts: EnvFacts, backends: Iterable[str], dtype: str,
                    model_facts: ModelFacts) -> dict[str, Reason]:
    """For each of `backends` that failed `attnpick verify` on this machine, dtype and shape: the reason."""
    failures: dict[str, Reason] = {}
    for backend in backends:
        _, hit = cache.cached(KIND, _key(facts, backend, dtype, model_facts), _valid)
        if hit is None or hit["ok"]:
            continue
        worst = ", ".join(f"{name} {m['relative']:.1e} > {m['tolerance']:.0e}"
                          for name, m in hit.get("measures", {}).items()
                          if not m.get("ok", True)) or str(hit.get("error"))
        failures[backend] = Reason("parity_failed", f"need parity with eager float32, have a failed 'attnpick verify' "
                                   f"on this machine ({worst})", "attnpick verify")
    return failures
