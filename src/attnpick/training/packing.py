"""Padding-free packing, checked before it is used: `packing_check` runs a few sequences packed (through the
training collator, as the Trainer calls the model) and one by one, and packing is on only when every sequence
gets the logits it gets alone. A cache left on or a mask that lets packed samples see each other fails it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attnpick.errors import UsageError
from attnpick.measure.tolerances import TOLERANCES


@dataclass(frozen=True)
class PackingVerdict:
    enabled: bool
    requested: str
    checked: bool
    max_abs_diff: float | None
    tolerance: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def packing_check(model: Any, examples: list[Any], collator: Any, dtype: str, extra: dict[str, Any] | None = None,
                  count: int = 4) -> tuple[bool, float, float]:
    """Run `count` sequences packed (through the training collator, as the Trainer calls the model) and one by
    one; (equal within the dtype's tolerance, max |difference| of logits, tolerance)."""
    import torch  # heavy: a model is loaded by now

    picked = sorted(examples[:count * 4], key=lambda e: len(e.input_ids))[-count:]
    features = [{"input_ids": e.input_ids, "labels": e.labels} for e in picked]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in collator(features).items()}
            batch.pop("labels", None)
            batch.update(extra or {})
            packed = model(**batch).logits[0].float()
            separate = [model(input_ids=torch.tensor([f["input_ids"]], device=device),
                              use_cache=False).logits[0].float() for f in features]
    finally:
        model.train(was_training)
    diff, start = 0.0, 0
    scale = max(float(s.abs().max()) for s in separate)
    for alone in separate:
        n = alone.shape[0]
        diff = max(diff, float((packed[start:start + n] - alone).abs().max()))
        start += n
    tolerance = TOLERANCES[dtype].logits * scale
    return diff <= tolerance, diff, tolerance


def decide_packing(requested: str, ok: bool | None, diff: float | None, tol: float | None,
                   backend: str) -> PackingVerdict:
    if requested == "off":
        return PackingVerdict(False, requested, False, None, None, "packing off (--packing off)")
    if ok:
        return PackingVerdict(True, requested, True, diff, tol,
                              f"packed sequences give the logits they get alone with {backend} (max diff {diff:.2e})")
    why = (f"packed sequences do not give the logits they get alone with {backend} "
           f"(max diff {diff:.2e} > {tol:.2e}): packing would leak attention across samples")
    if requested == "on":
        raise UsageError(f"--packing on: {why}. Use --packing auto or off.")
    return PackingVerdict(False, requested, True, diff, tol, why)
