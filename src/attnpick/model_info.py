"""Read what the decision needs from a model folder's config.json, without its weights or its code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attnpick.errors import UsageError
from attnpick.facts import ModelFacts

# Model types whose attention adds learned sink logits (transformers' gpt_oss).
SINK_MODEL_TYPES = frozenset({"gpt_oss"})


def read_config(folder: str | Path) -> dict[str, Any]:
    """The parsed config.json of a local model folder; `UsageError` naming the problem otherwise."""
    path = Path(folder)
    if not path.exists():
        raise UsageError(f"Model folder {str(path)!r} does not exist. Pass a folder that holds config.json.")
    config_path = path / "config.json" if path.is_dir() else path
    if not config_path.is_file():
        raise UsageError(f"{str(path)!r} has no config.json. Pass a model folder laid out like the hub.")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{config_path}: not valid JSON ({exc}). Re-download or fix the file.") from None
    if not isinstance(config, dict):
        raise UsageError(f"{config_path}: expected a JSON object. Re-download or fix the file.")
    return config


def model_facts(config: dict[str, Any], source: str | None = None) -> ModelFacts:
    """Attention shapes and features from a config dict (nested `text_config` of multimodal models too)."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    heads = _int(text, "num_attention_heads", "n_head", "num_heads")
    hidden = _int(text, "hidden_size", "n_embd", "d_model")
    head_dim = _int(text, "head_dim")
    if head_dim is None and heads and hidden:
        head_dim = hidden // heads
    kv_heads = _int(text, "num_key_value_heads", "num_kv_heads") or heads
    softcap = text.get("attn_logit_softcapping")
    model_type = config.get("model_type")
    return ModelFacts(
        model_type=model_type,
        head_dim=head_dim,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        sliding_window=_int(text, "sliding_window") if text.get("use_sliding_window", True) else None,
        softcapping=float(softcap) if isinstance(softcap, (int, float)) and softcap else None,
        has_sinks=model_type in SINK_MODEL_TYPES,
        remote_code=isinstance(config.get("auto_map"), dict),
        source=source,
    )


def read_model_facts(folder: str | Path) -> ModelFacts:
    return model_facts(read_config(folder), source=str(folder))


def _int(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
