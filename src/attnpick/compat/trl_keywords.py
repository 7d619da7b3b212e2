"""TRL as Unsloth's notebooks call it: the keywords only Unsloth's patch of TRL accepts, translated to TRL's own.

Installed when `attnpick.FastLanguageModel` (or any of Unsloth's names) is imported, as Unsloth patches TRL on its
import; `import attnpick` alone changes nothing. The patch wraps the `__init__` of TRL's `SFTTrainer`, `DPOTrainer`,
`KTOTrainer` and `ORPOTrainer` and of their configs once (idempotent, marked), and a call that uses none of these
keywords reaches TRL unchanged:

- `XTrainer(tokenizer=tok)`: `processing_class=tok`;
- `SFTTrainer(dataset_text_field=, max_seq_length=, packing=, dataset_num_proc=, dataset_kwargs=)`, and for every
  trainer any keyword its `__init__` does not take but its config has (`DPOTrainer(beta=, max_length=)`): the same
  fields of the config (`max_seq_length` is `max_length`); a field the config was given another value for is an
  error naming both values;
- `XTrainer(args=TrainingArguments(...))`: the trainer's config with the same values;
- `XConfig(max_seq_length=N)`: `max_length=N`; `warmup_ratio=r` (removed in transformers 5): `warmup_steps=r`,
  which transformers 5 reads as a ratio when below 1 (also in `TrainingArguments`); keywords TRL 1.x removed with no
  counterpart (`max_prompt_length` where the config has none: TRL truncates prompt and completion together to
  `max_length`) are dropped with the warning saying so;
- `XConfig()` without `bf16`/`fp16` where this machine has no bfloat16 GPU: the machine's precision (on a CPU:
  neither), where TRL would default to bf16 and refuse; the trainer then follows the model it is given (a model
  attnpick loaded carries its dtype and device in `attnpick_report`), so nothing is carried from one load to the next;
- `XConfig(fp16=True)` on a CPU (the notebooks' `fp16=not is_bfloat16_supported()`): `fp16=False`, since a CPU has
  no fp16 mixed precision;
- `from trl import ORPOConfig, ORPOTrainer`: TRL 1.x moved them to `trl.experimental.orpo`; they are set on `trl`
  where it lacks them (the one change to TRL's namespace).

With `dataset_text_field=` given to `SFTTrainer` (Unsloth's spelling), the trainer trains on that text column even
where the dataset also holds its `conversations` or `messages` (TRL would prefer those and render them again).
One warning lists what was translated. Text already rendered with a chat template (`dataset_text_field`) that
ends in the end-of-turn token and a newline keeps its one end-of-turn token: TRL would append a second
(`[|endofturn|]\\n[|endofturn|]` with EXAONE's template), so the trailing whitespace after it is dropped first.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import warnings
from typing import Any

from attnpick.compat.precision import has_gpu, machine_precision, mixed_precision
from attnpick.errors import UsageError
from attnpick.training.sources import mapped

logger = logging.getLogger(__name__)

MARK = "_attnpick_unsloth_keywords"
DEFAULTED = "_attnpick_default_precision"  # set on a config whose bf16 / fp16 nobody gave
TRAINER_TO_CONFIG = ("dataset_text_field", "max_seq_length", "packing", "dataset_num_proc", "dataset_kwargs")
CONFIG_RENAMES = {"max_seq_length": "max_length"}
# Keywords of TRL 0.x configs that TRL 1.16 removed without a counterpart: dropped (where the config lacks them) with
# what TRL does instead.
REMOVED = {
    "max_prompt_length": "TRL 1.16 truncates prompt and completion together to max_length",
    "max_completion_length": "TRL 1.16 truncates prompt and completion together to max_length",
}
# (trainer, config, module): the trainers Unsloth's notebooks call. ORPO moved to trl.experimental in TRL 1.x.
TRAINERS = (("SFTTrainer", "SFTConfig", "trl"), ("DPOTrainer", "DPOConfig", "trl"), ("KTOTrainer", "KTOConfig", "trl"),
            ("ORPOTrainer", "ORPOConfig", "trl.experimental.orpo"))


def install() -> bool:
    """Wrap TRL's trainers and configs once; False when TRL (or its SFT trainer) cannot be imported here."""
    try:
        import trl

        trl.SFTTrainer, trl.SFTConfig  # noqa: B018 - TRL's lazy module imports them here, or fails
    except Exception as exc:  # noqa: BLE001 - no TRL, or one that cannot import here: nothing to translate for
        logger.debug("TRL keywords not installed: %s", exc)
        return False
    import importlib

    from transformers import TrainingArguments

    if not getattr(TrainingArguments.__init__, MARK, False):
        TrainingArguments.__init__ = _config_init(TrainingArguments.__init__, precision=False)
    for trainer_name, config_name, module_name in TRAINERS:
        try:
            with warnings.catch_warnings():  # TRL warns on any import of trl.experimental: the user imported nothing
                warnings.simplefilter("ignore")
                module = importlib.import_module(module_name)
            trainer_class, config_class = getattr(module, trainer_name), getattr(module, config_name)
        except Exception as exc:  # noqa: BLE001 - a TRL without this trainer: the others still translate
            logger.debug("%s not patched: %s", trainer_name, exc)
            continue
        if module_name != "trl" and not hasattr(trl, trainer_name):
            setattr(trl, trainer_name, trainer_class)
            setattr(trl, config_name, config_class)
        wrap_config(config_class)
        if not getattr(trainer_class.__init__, MARK, False):
            trainer_class.__init__ = _trainer_init(trainer_class.__init__, config_class, trainer_class)
    return True


def PatchDPOTrainer() -> None:  # noqa: N802 - Unsloth's name
    """Unsloth's `PatchDPOTrainer()`: TRL's DPO, ORPO and KTO trainers take the notebooks' keywords from here on
    (installed already when attnpick's Unsloth names were imported; calling it again changes nothing)."""
    install()


def wrap_config(config_class: type) -> type:
    """`config_class.__init__` takes Unsloth's keywords (a dataclass subclass of a TRL config gets its own __init__,
    so it is wrapped too)."""
    if not getattr(config_class.__init__, MARK, False):
        config_class.__init__ = _config_init(config_class.__init__)
    return config_class


def config_keywords(kwargs: dict[str, Any], config_class: type | None = None,
                    precision: bool = True) -> tuple[dict[str, Any], list[str]]:
    """Config keywords in TRL's spelling, and what was translated."""
    out, notes = dict(kwargs), []
    fields = _fields(config_class)
    for old, new in CONFIG_RENAMES.items():
        if old in out and (not fields or old not in fields):
            value = out.pop(old)
            if new not in out:
                out[new] = value
                notes.append(f"{old}= as {new}=")
    if "warmup_ratio" in out and (not fields or "warmup_ratio" not in fields):
        ratio, steps = out.pop("warmup_ratio"), out.get("warmup_steps") or 0
        if steps:
            notes.append(f"warmup_ratio={ratio} dropped: warmup_steps={steps} was given too and wins, as in "
                         "transformers 4")
        else:
            out["warmup_steps"] = ratio
            notes.append(f"warmup_ratio={ratio} as warmup_steps={ratio} (transformers 5 reads a value below 1 as a "
                         "ratio)")
    for old, why in REMOVED.items():
        if old in out and fields and old not in fields:
            notes.append(f"{old}={out.pop(old)} dropped: {why}")
    if not precision:
        return out, notes
    if "bf16" not in out and "fp16" not in out:
        machine = machine_precision()
        if not machine["bf16"]:  # TRL's default is bf16, which this machine cannot take
            out.update(machine)
            notes.append(f"bf16={machine['bf16']}, fp16={machine['fp16']} (this machine has no bfloat16 GPU)")
    elif out.get("fp16") and not has_gpu():
        out["fp16"] = False
        notes.append("fp16=False (a CPU has no fp16 mixed precision)")
    return out, notes


def _fields(config_class: type | None) -> set[str]:
    return {f.name for f in dataclasses.fields(config_class)} if config_class is not None and \
        dataclasses.is_dataclass(config_class) else set()


def trainer_keywords(kwargs: dict[str, Any], config_class: type,
                     trainer_class: type | None = None) -> tuple[dict[str, Any], list[str]]:
    """Trainer keywords in TRL's spelling (config fields moved into `args`), and what was translated. A field the
    given `args` already holds another value for is a `UsageError` naming both."""
    out, notes = dict(kwargs), []
    trainer = trainer_class.__name__ if trainer_class is not None else "SFTTrainer"
    if "tokenizer" in out:
        tokenizer = out.pop("tokenizer")
        out.setdefault("processing_class", tokenizer)
        notes.append(f"{trainer}(tokenizer=) as processing_class=")
    accepted = set(inspect.signature(trainer_class.__init__).parameters) if trainer_class is not None else set()
    fields = _fields(config_class)
    movable = set(TRAINER_TO_CONFIG) | ({n for n in out if n not in accepted and (n in fields or n in CONFIG_RENAMES
                                                                                   or n in REMOVED)}
                                        if trainer_class is not None else set())
    moved = {name: out.pop(name) for name in list(out) if name in movable}
    args = out.get("args")
    if args is not None and not isinstance(args, config_class):
        out["args"] = args = _as_config(args, config_class)
        notes.append(f"args={type(kwargs['args']).__name__}(...) as {config_class.__name__}(...)")
    if moved:
        if args is None:
            out["args"] = args = config_class(output_dir="trainer_output")
        kept = []
        defaults = {f.name: f.default for f in dataclasses.fields(config_class)} if fields else {}
        for name, value in moved.items():
            field = CONFIG_RENAMES.get(name, name)
            if name in REMOVED and field not in fields:
                notes.append(f"{name}={value} dropped: {REMOVED[name]}")
                continue
            have = getattr(args, field, None)
            if field in defaults and have != defaults[field] and have != value and \
                    kwargs.get("args") is not None:
                raise UsageError(f"{trainer}({name}={value!r}) and args.{field}={have!r} disagree: give it once "
                                 f"(args={config_class.__name__}({field}=...) is TRL's place for it).")
            setattr(args, field, value)
            kept.append(name)
        if kept:
            notes.append(f"{trainer}(" + ", ".join(f"{n}=" for n in kept) + f") as {config_class.__name__} fields")
    return out, notes


def _config_init(original: Any, precision: bool = True) -> Any:
    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        defaulted = "bf16" not in kwargs and "fp16" not in kwargs
        kwargs, notes = config_keywords(kwargs, type(self), precision)
        _warn([f"{type(self).__name__}: {note}" for note in notes])
        original(self, *args, **kwargs)
        if precision:
            setattr(self, DEFAULTED, defaulted)

    setattr(init, MARK, True)
    return init


def _trainer_init(original: Any, config_class: type, trainer_class: type) -> Any:
    sft = trainer_class.__name__ == "SFTTrainer"

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        text_field = "dataset_text_field" in kwargs
        kwargs, notes = trainer_keywords(kwargs, config_class, trainer_class)
        if sft and text_field:
            notes += _text_only(kwargs)
        notes += _model_precision(kwargs)
        _warn(notes)
        if sft:
            _one_end_of_turn(kwargs)
        original(self, *args, **kwargs)
        _full_modules_in_base_dtype(getattr(self, "model", None))

    setattr(init, MARK, True)
    return init


def _full_modules_in_base_dtype(model: Any) -> None:
    """TRL 1.16 casts every trainable parameter of a quantized model to bfloat16 (QLoRA's adapters, as the paper
    advises). The full copies of the embedding and LM head that `modules_to_save` trains (continued pretraining) are
    put back in the dtype of the module they copy: a bfloat16 head meets float32 hidden states at generation and
    fails, and Unsloth too trains them in the model's precision."""
    if model is None or not hasattr(model, "named_modules"):
        return
    for _, module in model.named_modules():
        copies, original = getattr(module, "modules_to_save", None), getattr(module, "original_module", None)
        if copies is None or original is None:
            continue
        dtype = next((p.dtype for p in original.parameters() if p.is_floating_point()), None)
        for param in copies.parameters():
            if dtype is not None and param.is_floating_point() and param.dtype != dtype:
                param.data = param.data.to(dtype)


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
