"""TRL as Unsloth's notebooks call it: the keywords only Unsloth's patch of TRL accepts, translated to TRL's own.

Installed when `attnpick.FastLanguageModel` is imported (as Unsloth patches TRL on its import); `import attnpick`
alone changes nothing. The patch wraps `trl.SFTTrainer.__init__` and `trl.SFTConfig.__init__` once (idempotent,
marked), and a call that uses none of these keywords reaches TRL unchanged:

- `SFTTrainer(tokenizer=tok)`: `processing_class=tok`;
- `SFTTrainer(dataset_text_field=, max_seq_length=, packing=, dataset_num_proc=, dataset_kwargs=)`: the same fields
  of the `SFTConfig` (`max_seq_length` is `max_length`);
- `SFTTrainer(args=TrainingArguments(...))`: an `SFTConfig` with the same values;
- `SFTConfig(max_seq_length=N)`: `max_length=N`;
- `SFTConfig()` without `bf16`/`fp16` where this machine has no bfloat16 GPU: the machine's precision (on a CPU:
  neither), where TRL would default to bf16 and refuse; the `SFTTrainer` then follows the model it is given (a
  model attnpick loaded carries its dtype and device in `attnpick_report`), so nothing is carried from one load to
  the next;
- `SFTConfig(fp16=True)` on a CPU (the notebooks' `fp16=not is_bfloat16_supported()`): `fp16=False`, since a
  CPU has no fp16 mixed precision.

With `dataset_text_field=` given to `SFTTrainer` (Unsloth's spelling), the trainer trains on that text column even
where the dataset also holds its `conversations` or `messages` (TRL would prefer those and render them again).
One warning lists what was translated. Text already rendered with a chat template (`dataset_text_field`) that
ends in the end-of-turn token and a newline keeps its one end-of-turn token: TRL would append a second
(`[|endofturn|]\\n[|endofturn|]` with EXAONE's template), so the trailing whitespace after it is dropped first.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import warnings
from typing import Any

from attnpick.compat.precision import has_gpu, machine_precision, mixed_precision
from attnpick.training.sources import mapped

logger = logging.getLogger(__name__)

MARK = "_attnpick_unsloth_keywords"
DEFAULTED = "_attnpick_default_precision"  # set on an SFTConfig whose bf16 / fp16 nobody gave
TRAINER_TO_CONFIG = ("dataset_text_field", "max_seq_length", "packing", "dataset_num_proc", "dataset_kwargs")
CONFIG_RENAMES = {"max_seq_length": "max_length"}
def install() -> bool:
    """Wrap TRL's SFTTrainer and SFTConfig once; False when TRL (or its trainer) cannot be imported here."""
    try:
        import trl

        trainer_class, config_class = trl.SFTTrainer, trl.SFTConfig
    except Exception as exc:  # noqa: BLE001 - no TRL, or one that cannot import here: nothing to translate for
        logger.debug("TRL keywords not installed: %s", exc)
        return False
    if not getattr(config_class.__init__, MARK, False):
        config_class.__init__ = _config_init(config_class.__init__)
    if not getattr(trainer_class.__init__, MARK, False):
        trainer_class.__init__ = _trainer_init(trainer_class.__init__, config_class)
    return True


def config_keywords(kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """SFTConfig keywords in TRL's spelling, and what was translated."""
    out, notes = dict(kwargs), []
    for old, new in CONFIG_RENAMES.items():
        if old in out:
            value = out.pop(old)
            if new not in out:
                out[new] = value
                notes.append(f"SFTConfig({old}=) as {new}=")
    if "bf16" not in out and "fp16" not in out:
        precision = machine_precision()
        if not precision["bf16"]:  # TRL's default is bf16, which this machine cannot take
            out.update(precision)
            notes.append(f"bf16={precision['bf16']}, fp16={precision['fp16']} (this machine has no bfloat16 GPU)")
    elif out.get("fp16") and not has_gpu():
        out["fp16"] = False
        notes.append("fp16=False (a CPU has no fp16 mixed precision)")
    return out, notes


def trainer_keywords(kwargs: dict[str, Any], config_class: type) -> tuple[dict[str, Any], list[str]]:
    """SFTTrainer keywords in TRL's spelling (the config fields moved into `args`), and what was translated."""
    out, notes = dict(kwargs), []
    if "tokenizer" in out:
        tokenizer = out.pop("tokenizer")
        out.setdefault("processing_class", tokenizer)
        notes.append("SFTTrainer(tokenizer=) as processing_class=")
    moved = {name: out.pop(name) for name in TRAINER_TO_CONFIG if name in out}
    args = out.get("args")
    if args is not None and not isinstance(args, config_class):
        out["args"] = args = _as_config(args, config_class)
        notes.append(f"args={type(kwargs['args']).__name__}(...) as SFTConfig(...)")
    if moved:
        if args is None:
            out["args"] = args = config_class(output_dir="trainer_output")
        for name, value in moved.items():
            setattr(args, CONFIG_RENAMES.get(name, name), value)
        notes.append("SFTTrainer(" + ", ".join(f"{n}=" for n in moved) + ") as SFTConfig fields")
    return out, notes


def _config_init(original: Any) -> Any:
    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        defaulted = "bf16" not in kwargs and "fp16" not in kwargs
        kwargs, notes = config_keywords(kwargs)
        _warn(notes)
        original(self, *args, **kwargs)
        setattr(self, DEFAULTED, defaulted)

    setattr(init, MARK, True)
    return init


def _trainer_init(original: Any, config_class: type) -> Any:
    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        text_field = "dataset_text_field" in kwargs
        kwargs, notes = trainer_keywords(kwargs, config_class)
        if text_field:
            notes += _text_only(kwargs)
        notes += _model_precision(kwargs)
        _warn(notes)
        _one_end_of_turn(kwargs)
        original(self, *args, **kwargs)

    setattr(init, MARK, True)
    return init


def _as_config(args: Any, config_class: type) -> Any:
    """A transformers TrainingArguments as an SFTConfig with the same values (SFTConfig extends it)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init and hasattr(args, f.name)}
    known = {f.name for f in dataclasses.fields(config_class)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TrainingArguments' own deprecation notes were shown when it was built
        return config_class(**{k: v for k, v in values.items() if k in known})


CONVERSATIONAL = ("messages", "conversations", "prompt", "completion")


def _text_only(kwargs: dict[str, Any]) -> list[str]:
    """`SFTTrainer(dataset_text_field="text")` in Unsloth's spelling trains on that text: the dataset's conversation
    columns (which TRL would prefer and render again with the template) are left out of the trainer's copy."""
    field = getattr(kwargs.get("args"), "dataset_text_field", None)
    notes = []
    for name in ("train_dataset", "eval_dataset"):
        dataset = kwargs.get(name)
        columns = list(getattr(dataset, "column_names", None) or [])
        extra = [c for c in CONVERSATIONAL if c in columns]
        if field in columns and extra and hasattr(dataset, "remove_columns"):
            kwargs[name] = dataset.remove_columns(extra)
            notes.append(f"{name} trains on {field!r}, not its {', '.join(extra)} column")
    return notes


def _one_end_of_turn(kwargs: dict[str, Any]) -> None:
    """Rendered text that ends in the end-of-turn token plus whitespace loses the whitespace, so that TRL (which
    appends the eos token to text not ending in it) does not add a second one."""
    args, tokenizer = kwargs.get("args"), kwargs.get("processing_class")
    eos = getattr(getattr(tokenizer, "tokenizer", tokenizer), "eos_token", None)
    field = getattr(args, "dataset_text_field", None) or "text"
    if not eos:
        return

    def trimmed(text: Any) -> Any:
        if isinstance(text, str) and text != text.rstrip() and text.rstrip().endswith(eos):
            return text.rstrip()
        return text

    for name in ("train_dataset", "eval_dataset"):
        dataset = kwargs.get(name)
        if dataset is None or field not in (getattr(dataset, "column_names", None) or []):
            continue
        sample = next(iter(dataset))[field]
        if trimmed(sample) is not sample:
            kwargs[name] = mapped(dataset, lambda row: {field: trimmed(row[field])}, "one end-of-turn token")
    func = kwargs.get("formatting_func")
    if func is not None and not getattr(func, MARK, False):
        @functools.wraps(func)
        def formatting(example: Any) -> Any:
            out = func(example)
            return [trimmed(t) for t in out] if isinstance(out, list) else trimmed(out)

        setattr(formatting, MARK, True)
        kwargs["formatting_func"] = formatting


def _warn(notes: list[str]) -> None:
    if notes:
        warnings.warn("attnpick translated Unsloth's TRL keywords: " + "; ".join(notes) + ".", UserWarning,
                      stacklevel=3)


def _model_precision(kwargs: dict[str, Any]) -> list[str]:
    """An SFTConfig whose bf16 / fp16 nobody gave follows the model the trainer trains: its dtype and device as
    attnpick loaded it (a float16 model gets fp16, a float32 one neither, a model on a CPU neither)."""
    args, report = kwargs.get("args"), getattr(kwargs.get("model"), "attnpick_report", None)
    if args is None or report is None or not getattr(args, DEFAULTED, False):
        return []
    wanted = mixed_precision(report.dtype, report.device)
    if (bool(args.bf16), bool(args.fp16)) == (wanted["bf16"], wanted["fp16"]):
        return []
    args.bf16, args.fp16 = wanted["bf16"], wanted["fp16"]
    return [f"bf16={wanted['bf16']}, fp16={wanted['fp16']} (the model is {report.dtype} on {report.device})"]
