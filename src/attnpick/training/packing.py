"""Padding-free packing, checked before it is used: `packing_check` runs a few sequences packed (through the
training collator, as the Trainer calls the model) and one by one, and packing is on only when every sequence
gets the logits it gets alone. A cache left on or a mask that lets packed samples see each other fails it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnpick.decide.facts import EnvFacts
from attnpick.errors import UsageError
from attnpick.load.lora import base_model
from attnpick.measure.tolerances import TOLERANCES
from attnpick.util import cache

CHECK_VERSION = 1  # part of the cache key: bump when `packing_check` changes what it proves
KIND = "packing"


@dataclass(frozen=True)
class PackingVerdict:
    enabled: bool
    requested: str
    checked: bool
    max_abs_diff: float | None
    tolerance: float | None
    reason: str
    cached: bool = False  # the check's verdict came from the cache (same machine, packages, model files, path)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def packing_check(model: Any, examples: list[Any], collator: Any, dtype: str, extra: dict[str, Any] | None = None,
                  count: int = 4, max_tokens: int = 64) -> tuple[bool, float, float]:
    """Run `count` sequences (the longest of the first few, cut to `max_tokens`: a leak across samples shows at
    any length, and a CPU's forward costs by the token) packed (through the training collator, as the Trainer calls
    the model) and one by one; (equal within the dtype's tolerance, max |difference| of logits, tolerance)."""
    import torch  # heavy: a model is loaded by now

    picked = sorted(examples[:count * 4], key=lambda e: len(e.input_ids))[-count:]
    features = [{"input_ids": e.input_ids[:max_tokens], "labels": e.labels[:max_tokens]} for e in picked]
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


def packed_path(model: Any, backend: str) -> tuple[Any, str]:
    """(the packed batches' collator, the attention implementation they run with). A backend that names a packed
    implementation (sdpa: `sdpa_packed`, each packed sequence attended alone, no square over the whole packed row)
    switches the model to it when its class can switch; every other backend keeps its own implementation and takes
    the boundaries it reads (position ids; the varlen kernels' FlashAttention kwargs)."""
    from transformers import DataCollatorWithFlattening

    from attnpick.backends.registry import CATALOG

    target = base_model(model)
    spec = CATALOG.get(backend)
    packed = spec.packed() if spec is not None and spec.packed is not None else None
    if packed and hasattr(target, "set_attn_implementation"):
        target.set_attn_implementation(packed)
    attention = getattr(target.config, "_attn_implementation", "?")
    return DataCollatorWithFlattening(return_position_ids=True,
                                      return_flash_attn_kwargs=attention == packed), attention


def unpacked(model: Any, attention: str) -> None:
    """Back to `attention`, the model's implementation before `packed_path`, when packing is not used after all."""
    target = base_model(model)
    if getattr(target.config, "_attn_implementation", attention) != attention:
        target.set_attn_implementation(attention)


def check_key(facts: EnvFacts, folder: str | Path, attention: str, dtype: str, quantization: str | None,
              lora: dict[str, Any], use_cache: bool = True) -> dict[str, Any] | None:
    """What a packing check's verdict depends on: this machine and its package versions (the facts), the model's
    files, the attention implementation, the dtype, the quantization and the LoRA; None (no cache) when
    `use_cache` is False."""
    if not use_cache:
        return None
    return {"facts": facts.to_dict(), "model_files": cache.files_key(folder), "folder": str(folder),
            "attention": attention, "dtype": dtype, "quantization": quantization, "lora": lora,
            "version": CHECK_VERSION}


def _valid(value: Any) -> bool:
    return isinstance(value["ok"], bool) and all(isinstance(value[k], (int, float)) for k in ("diff", "tolerance"))


def cached_check(key: dict[str, Any] | None, check: Callable[[], tuple[bool, float, float]]
                 ) -> tuple[bool, float, float, bool]:
    """`check()`'s (ok, diff, tolerance) and False, or the cached ones for the same `key` and True; a passed check
    is stored, a failed one runs again next time."""
    fields = ("ok", "diff", "tolerance")
    (ok, diff, tolerance), hit = cache.passed_or_run(
        KIND, key, check, passed=lambda verdict: bool(verdict[0]),
        encode=lambda verdict: dict(zip(fields, verdict, strict=True)),
        decode=lambda stored: tuple(stored[f] for f in fields), valid=_valid)
    return ok, diff, tolerance, hit


def decide_packing(requested: str, ok: bool | None, diff: float | None, tol: float | None,
                   backend: str, cached: bool = False) -> PackingVerdict:
    if requested == "off":
        return PackingVerdict(False, requested, False, None, None, "packing off (--packing off)")
    if ok:
        when = "; checked on an earlier run, cached" if cached else ""
        return PackingVerdict(True, requested, True, diff, tol, f"packed sequences give the logits they get alone "
                              f"with {backend} (max diff {diff:.2e}{when})", cached)
    why = (f"packed sequences do not give the logits they get alone with {backend} "
           f"(max diff {diff:.2e} > {tol:.2e}): packing would leak attention across samples")
    if requested == "on":
        raise UsageError(f"--packing on: {why}. Use --packing auto or off.")
    return PackingVerdict(False, requested, True, diff, tol, why)
