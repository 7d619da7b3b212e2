"""Saved LoRA adapters: a folder with `adapter_config.json` (what `model.save_pretrained("lora_model")` writes)
names its base model; `FastLanguageModel.from_pretrained("lora_model")` loads that base through the proven chain
and attaches the adapter, as Unsloth's notebooks expect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attnpick.errors import UsageError

ADAPTER_CONFIG = "adapter_config.json"


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
