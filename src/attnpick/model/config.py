"""Read what the decision needs from a model folder's config.json, without its weights or its code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attnpick.decide.facts import ModelFacts
from attnpick.errors import UsageError, first_line
from attnpick.util import files

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
        config = json.loads(files.read_text(config_path))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise UsageError(f"{config_path}: not valid JSON ({first_line(exc)}). Re-download or fix the file.") from None
    if not isinstance(config, dict):
        raise UsageError(f"{config_path}: expected a JSON object. Re-download or fix the file.")
    return config


def model_facts(config: dict[str, Any], folder: str | None = None) -> ModelFacts:
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
        folder=folder,
    )


def read_model_facts(folder: str | Path) -> ModelFacts:
    return model_facts(read_config(folder), folder=str(folder))


def _int(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


WEIGHT_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model", "vocab.txt")


def safetensors_shapes(path: Path, fix: str = "Re-download the model's weights.") -> dict[str, list[int]]:
    """The tensor names and shapes in a safetensors file's header; `UsageError` naming the file (and `fix`) when it
    is empty, its header unreadable or the file shorter than the header says (a truncated download or save)."""
    from safetensors import safe_open  # reads the header through a memory map, never the tensors

    try:
        if path.stat().st_size == 0:
            raise UsageError(f"{path} is empty (0 bytes). {fix}")
        with safe_open(str(path), framework="numpy") as handle:
            return {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError: the file is unusable either way
        raise UsageError(f"{path}: not a readable safetensors file ({first_line(exc)}). {fix}") from None


def safetensors_keys(path: Path) -> set[str]:
    """The tensor names in a safetensors file's header (see `safetensors_shapes`)."""
    return set(safetensors_shapes(path))


ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLED_ADAPTER = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")


def check_adapter_files(folder: str | Path) -> None:
    """Refuse a saved LoRA adapter that cannot load as it says, naming the file: no weights, weights that are a
    pickle (never loaded: unpickling can run code), an empty or truncated safetensors file, or LoRA matrices whose
    rank is not the `r` of adapter_config.json. Reads the header only."""
    folder = Path(folder)
    fix = f"Save the adapter again with model.save_pretrained({str(folder)!r})."
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        pickled = next((folder / n for n in PICKLED_ADAPTER if (folder / n).is_file()), None)
        if pickled is not None:
            raise UsageError(f"{pickled}: the adapter's weights are a pickle, which attnpick never loads (unpickling "
                             f"can run code). Save the adapter again as {ADAPTER_WEIGHTS}: "
                             f"model.save_pretrained({str(folder)!r}).")
        raise UsageError(f"{folder} has no {ADAPTER_WEIGHTS}. {fix}")
    shapes = safetensors_shapes(weights, fix)
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return  # the config's own check names that
    r = config.get("r") if isinstance(config, dict) else None
    if not isinstance(r, int) or isinstance(r, bool) or (config.get("rank_pattern") or {}):
        return  # per-module ranks: peft's own check
    for name, shape in shapes.items():
        got = shape[0] if ".lora_A." in name else shape[-1] if ".lora_B." in name else None
        if got is not None and len(shape) >= 2 and got != r:
            raise UsageError(f"{weights}: {name} has rank {got}, but {folder / 'adapter_config.json'} says r={r}. "
                             f"The two files come from different adapters. {fix}")


def check_model_files(folder: str | Path) -> None:
    """Refuse a model folder that cannot load, naming the file and the fix: weights missing, a safetensors
    header unreadable or truncated, an index naming shards or tensors that are not there, or no tokenizer."""
    folder = Path(folder)
    index_path = folder / WEIGHT_INDEX
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8")).get("weight_map")
        except (ValueError, UnicodeDecodeError, AttributeError):
            weight_map = None
        if not isinstance(weight_map, dict) or not weight_map:
            raise UsageError(f"{index_path}: not a valid weight index (no 'weight_map'). Re-download the model.")
        for shard in sorted(set(weight_map.values())):
            shard_path = folder / str(shard)
            if not shard_path.is_file():
                raise UsageError(f"{index_path} names {shard}, which is missing. Re-download the model's weights.")
            wanted = {name for name, file in weight_map.items() if file == shard}
            missing = sorted(wanted - safetensors_keys(shard_path))
            if missing:
                raise UsageError(f"{shard_path} lacks tensors its index lists ({missing[:3]}). Re-download it.")
    else:
        shards = sorted(folder.glob("*.safetensors"))
        if not shards and not any(folder.glob("pytorch_model*.bin")):
            raise UsageError(f"Model folder {folder} has no weights (*.safetensors). Download the whole model "
                             "repository, not only its config.")
        for shard in shards:
            safetensors_keys(shard)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UsageError(f"Model folder {folder} has no tokenizer ({', '.join(TOKENIZER_FILES[:2])}). Download the "
                         "tokenizer files with the model.")


def check_context(folder: Path, tokens: int, name: str, option: str = "--max-seq-length") -> None:
    """`tokens` within the model's context (`max_position_embeddings` in its config.json, where it gives one)."""
    config = read_config(folder)
    limit = config.get("max_position_embeddings") or config.get("n_positions")
    if isinstance(limit, int) and not isinstance(limit, bool) and tokens > limit:
        raise UsageError(f"{option} {tokens} is above {name}'s context of {limit} tokens (max_position_embeddings). "
                         f"Give at most {limit}.")
