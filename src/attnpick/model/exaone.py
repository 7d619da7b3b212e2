"""EXAONE 3.x is a Llama under other names: translate its config and weight names, with no repository code.

transformers >= 5.24 does this itself on load (model_type `exaone` -> `LlamaForCausalLM`, see its
`conversion_mapping.py`, entry `exaone`). Older releases, 5.17 among them (Unsloth 2026.10's pin), have no
EXAONE class, so attnpick writes a converted copy: a Llama config.json, the same tensors under Llama names,
and the tokenizer files. Every backend, Unsloth's Llama path included, then applies.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from attnpick.errors import UsageError
from attnpick.model.config import read_config
from attnpick.util import cache, files

# Same order and patterns as transformers 5.24 conversion_mapping.py["exaone"].
WEIGHT_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^transformer\.wte\.", "model.embed_tokens."),
    (r"^transformer\.h\.", "model.layers."),
    (r"^transformer\.ln_f\.", "model.norm."),
    (r"\.attn\.attention\.", ".self_attn."),
    (r"\.self_attn\.out_proj\.", ".self_attn.o_proj."),
    (r"\.ln_1\.", ".input_layernorm."),
    (r"\.ln_2\.", ".post_attention_layernorm."),
    (r"\.mlp\.c_fc_0\.", ".mlp.gate_proj."),
    (r"\.mlp\.c_fc_1\.", ".mlp.up_proj."),
    (r"\.mlp\.c_proj\.", ".mlp.down_proj."),
)
_COMPILED = tuple((re.compile(src), dst) for src, dst in WEIGHT_RENAMES)

# ExaoneConfig.attribute_map in transformers 5.24.
CONFIG_RENAMES = {
    "num_layers": "num_hidden_layers",
    "layer_norm_epsilon": "rms_norm_eps",
    "activation_function": "hidden_act",
}
# Keys of the remote EXAONE config that Llama has no use for.
CONFIG_DROPS = ("auto_map", "embed_dropout", "architectures", "model_type", "transformers_version")

# Files copied unchanged into the converted folder.
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
              "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")

FORMAT_VERSION = 1
DONE = "attnpick-converted.json"  # written last: a folder without it is an unfinished conversion


def is_exaone(config: dict[str, Any]) -> bool:
    return config.get("model_type") == "exaone"


def llama_config(config: dict[str, Any]) -> dict[str, Any]:
    """The Llama config.json equivalent to an EXAONE 3.x one."""
    out = {CONFIG_RENAMES.get(k, k): v for k, v in config.items() if k not in CONFIG_DROPS}
    out["model_type"] = "llama"
    out["architectures"] = ["LlamaForCausalLM"]
    out.setdefault("attention_bias", False)
    out.setdefault("mlp_bias", False)
    if "head_dim" not in out and out.get("hidden_size") and out.get("num_attention_heads"):
        out["head_dim"] = out["hidden_size"] // out["num_attention_heads"]
    return out


def llama_key(name: str) -> str:
    for pattern, replacement in _COMPILED:
        name = pattern.sub(replacement, name)
    return name


# The same renames backwards (last first), for writing a model loaded as Llama back under EXAONE's names.
_BACK = tuple((re.compile(("^" if src.startswith("^") else "") + re.escape(dst)), src.lstrip("^").replace("\\.", "."))
              for src, dst in reversed(WEIGHT_RENAMES))


def exaone_key(name: str) -> str:
    """A Llama weight name as EXAONE 3.x's checkpoint names it (the inverse of `llama_key`)."""
    for pattern, replacement in _BACK:
        name = pattern.sub(replacement, name)
    return name


def expected_llama_keys(config: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(keys a LlamaForCausalLM of this config has, keys it may lack in a checkpoint: tied lm_head)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**{k: v for k, v in config.items() if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    keys = set(model.state_dict())
    optional = {"lm_head.weight"} if cfg.tie_word_embeddings else set()
    return keys, optional


def convert(src: Path, dst: Path) -> Path:
    """Write the Llama-named copy of the EXAONE checkpoint in `src` to `dst`, atomically.

    Raises `UsageError` when a weight is missing or unexpected after renaming: a checkpoint that is not
    EXAONE 3.x, or a corrupt one.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    config = read_config(src)
    new_config = llama_config(config)
    shards = sorted(src.glob("*.safetensors"))
    if not shards:
        raise UsageError(f"{src}: no *.safetensors weights found. Re-download the model folder.")
    renamed: dict[str, str] = {}
    for shard in shards:
        with safe_open(str(shard), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                renamed[key] = llama_key(key)
    expected, optional = expected_llama_keys(new_config)
    got = set(renamed.values())
    missing = sorted(expected - got - optional)
    unexpected = sorted(got - expected)
    if missing or unexpected:
        raise UsageError(
            f"{src}: the EXAONE -> Llama mapping does not fit this checkpoint (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}). Is it an EXAONE 3.x model?"
        )

    with files.publish_folder(dst, replace=True) as staging:
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(shards):
            name = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            with safe_open(str(shard), framework="pt") as handle:
                tensors = {renamed[k]: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
                metadata = handle.metadata() or {}
            save_file(tensors, str(staging / name), metadata={**metadata, "format": "pt"})
            weight_map.update(dict.fromkeys(tensors, name))
        if len(shards) > 1:
            index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
            files.write_json(staging / "model.safetensors.index.json", index, indent=1)
        files.write_json(staging / "config.json", new_config, indent=1)
        for side in SIDE_FILES:
            if (src / side).is_file():
                shutil.copy2(src / side, staging / side)
        files.write_json(staging / DONE, {"from": str(src), "format": FORMAT_VERSION, "mapping": "exaone->llama"})
    return dst


def converted_folder(src: Path) -> Path:
    """The cached Llama copy of `src`, converted on first use. Keyed by the source's files and sizes."""
    stats = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in src.iterdir() if p.is_file())
    key = {"src": str(src.resolve()), "files": stats, "format": FORMAT_VERSION}
    dst = cache.cache_dir() / "converted" / cache.fingerprint(key)
    if (dst / DONE).is_file():
        return dst
    return convert(src, dst)
