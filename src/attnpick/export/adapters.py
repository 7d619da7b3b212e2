"""Saved LoRA adapters: a folder with `adapter_config.json` (what `model.save_pretrained("lora_model")` writes)
names its base model; `FastLanguageModel.from_pretrained("lora_model")` loads that base through the proven chain
and attaches the adapter, as Unsloth's notebooks expect. A run folder of `attnpick train` holds one in
`adapter/`, with how it was trained (4-bit or not) in `train_report.json`; `attnpick export` and `attnpick chat`
take either, through `load_trained`."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from attnpick.errors import UsageError
from attnpick.model.config import check_adapter_files

ADAPTER_CONFIG = "adapter_config.json"
RUN_REPORT = "train_report.json"  # what marks a finished run folder of `attnpick train`
RUN_MARKER = "attnpick-run.json"  # written first into every run folder: who runs it, since when


def adapter_base(name: str) -> str | None:
    """The base model a saved adapter folder names, or None when `name` is not an adapter folder."""
    folder = Path(name).expanduser()
    if not (folder / ADAPTER_CONFIG).is_file() or (folder / "config.json").is_file():
        return None
    try:
        doc = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{folder / ADAPTER_CONFIG}: not a readable adapter config ({exc}). Save the adapter again "
                         "with model.save_pretrained(folder).") from None
    base = doc.get("base_model_name_or_path") if isinstance(doc, dict) else None
    if not isinstance(base, str) or not base:
        raise UsageError(f"{folder / ADAPTER_CONFIG} names no base model (base_model_name_or_path). Load the base "
                         "model, then attach the adapter with peft's PeftModel.from_pretrained(model, folder).")
    return base


def record_base(peft_model: Any, name: str) -> None:
    """Make the adapter's saved config name the model as the user asked for it (`tiny-exaone`, a hub id, a folder),
    not the folder transformers read it from (a cache or the converted Llama copy)."""
    for config in getattr(peft_model, "peft_config", {}).values():
        config.base_model_name_or_path = name


def attach(model: Any, folder: str, trainable: bool = True) -> Any:
    """The saved adapter in `folder` on `model` (the base), trainable as after `get_peft_model`."""
    from peft import PeftModel  # heavy: a model is loaded by now

    return PeftModel.from_pretrained(model, str(Path(folder).expanduser()), is_trainable=trainable)


def saved_tokenizer(folder: str, max_seq_length: int) -> Any | None:
    """The tokenizer saved beside the adapter (it carries the chat template a notebook set), or None."""
    path = Path(folder).expanduser()
    if not (path / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    tokenizer.model_max_length = max_seq_length
    return tokenizer


@dataclass(frozen=True)
class Trained:
    """What a name points at: the model to load, the adapter to attach (None: a plain model) and whether the
    adapter was trained on the 4-bit model (None: not recorded)."""

    base: str
    adapter: str | None = None
    four_bit: bool | None = None


def locate(name: str, need_adapter: bool = False) -> Trained:
    """A run folder, an adapter folder or (unless `need_adapter`) a model name, as `Trained`; the adapter's files
    checked (`check_adapter_files`) before anything loads. A run that did not finish is named as one, with
    `--resume`."""
    found = _located(name, need_adapter)
    if found.adapter is not None:
        check_adapter_files(found.adapter)
    return found


def _unfinished(folder: Path, name: str) -> UsageError | None:
    """The error for a run folder of `attnpick train` whose training did not finish (its marker, or checkpoints in a
    folder that is neither a model nor an adapter), or None."""
    if (folder / RUN_REPORT).is_file():
        return None
    bare = not (folder / "config.json").is_file() and not (folder / ADAPTER_CONFIG).is_file()
    if not ((folder / RUN_MARKER).is_file() or (bare and any(folder.glob("checkpoint-*")))):
        return None
    steps = sorted((p.name for p in folder.glob("checkpoint-*")),
                   key=lambda n: int(n.rsplit("-", 1)[1]) if n.rsplit("-", 1)[1].isdigit() else -1)
    last = f" (its last checkpoint: {steps[-1]})" if steps else ""
    return UsageError(f"{name} is a run of attnpick train that did not finish (or is still running){last}. Finish "
                      f"it with 'attnpick train --output {name} --resume' and the options it started with, then use "
                      "it.")


def _located(name: str, need_adapter: bool) -> Trained:
    folder = Path(name).expanduser()
    unfinished = _unfinished(folder, name) if folder.is_dir() else None
    if unfinished is not None:
        raise unfinished
    if (folder / RUN_REPORT).is_file():
        adapter = folder / "adapter"
        if not (adapter / ADAPTER_CONFIG).is_file():
            raise UsageError(f"{name} is a run folder without an adapter: its training did not finish. Continue it "
                             f"with 'attnpick train --output {name} --resume'.")
        try:
            report = json.loads((folder / RUN_REPORT).read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{folder / RUN_REPORT} cannot be read ({exc}).") from None
        four_bit = bool(report.get("quantization")) if isinstance(report, dict) else None
        return Trained(adapter_base(str(adapter)) or "", str(adapter), four_bit)
    base = adapter_base(name)
    if base is not None:
        return Trained(base, name)
    if need_adapter:
        raise UsageError(f"{name} is neither a run folder of 'attnpick train' ({RUN_REPORT} and adapter/) nor an "
                         f"adapter folder ({ADAPTER_CONFIG}). Give the folder 'attnpick train --output' wrote.")
    return Trained(name)


def load_trained(name: str, max_seq_length: int, load_in_4bit: bool | None = None, trainable: bool = True,
                 need_adapter: bool = False, **load_options: Any) -> tuple[Any, Any, Any]:
    """(model, tokenizer, LoadReport) for a run folder, an adapter folder or a model: the base through the proven
    chain (4-bit as the adapter was trained, unless `load_in_4bit` says), the adapter attached, the tokenizer saved
    beside it (with its chat template) preferred."""
    from attnpick.loading import load_model  # heavy: loads transformers

    found = locate(name, need_adapter)
    four_bit = load_in_4bit if load_in_4bit is not None else found.four_bit is not False  # unrecorded: 4-bit
    model, tokenizer, report = load_model(found.base, max_seq_length=max_seq_length, load_in_4bit=four_bit,
                                          **load_options)
    if found.adapter is None:
        return model, tokenizer, report
    model = attach(model, found.adapter, trainable=trainable)
    tokenizer = saved_tokenizer(found.adapter, max_seq_length) or tokenizer
    report = replace(report, notes=(*report.notes, f"LoRA adapter {found.adapter} attached to {found.base}"))
    return model, tokenizer, report
