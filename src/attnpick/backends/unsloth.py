"""Unsloth as a backend: import it only when it is the backend being loaded, load through
`FastLanguageModel.from_pretrained`, report which attention kernel it uses and whether it patched
transformers.

Unsloth patches transformers, peft and trl on import and asks to be imported before them; attnpick's
probe and smoke run import it only in child processes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Functions Unsloth replaces on import or on load; any of them living outside transformers means patched.
_PATCH_POINTS = (
    ("transformers.trainer", "Trainer", "training_step"),
    ("transformers.trainer", "Trainer", "_inner_training_loop"),
    ("transformers.models.llama.modeling_llama", "LlamaAttention", "forward"),
    ("transformers.models.llama.modeling_llama", "LlamaModel", "forward"),
    ("transformers.models.llama.modeling_llama", "LlamaForCausalLM", "forward"),
)


def transformers_patched() -> bool:
    """Whether transformers' classes in this process carry functions from outside transformers."""
    import importlib

    for module_name, cls_name, attr in _PATCH_POINTS:
        try:
            fn = getattr(getattr(importlib.import_module(module_name), cls_name), attr)
        except (ImportError, AttributeError):
            continue
        if not str(getattr(fn, "__module__", "") or "").startswith("transformers"):
            return True
    return False


def unsloth_kernel_in_process() -> str:
    """The attention kernel the imported Unsloth dispatches to."""
    utils = sys.modules.get("unsloth.models._utils")
    import torch

    if not torch.cuda.is_available():
        return "sdpa"
    if utils is not None and getattr(utils, "HAS_FLASH_ATTENTION", False):
        return "flash_attention_2"
    if utils is not None and getattr(utils, "HAS_XFORMERS", "xformers" in sys.modules):
        return "xformers"
    return "sdpa"


def load_unsloth(folder: Path, max_seq_length: int, dtype: str, load_in_4bit: bool) -> tuple[Any, Any, str]:
    """`FastLanguageModel.from_pretrained` on a local folder (EXAONE arrives already mapped to Llama)."""
    import unsloth  # noqa: F401 - before torch and transformers, as Unsloth asks
    import torch
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(folder), max_seq_length=max_seq_length, dtype=getattr(torch, dtype),
        load_in_4bit=load_in_4bit, local_files_only=True, trust_remote_code=False,
    )
    return model, tokenizer, unsloth_kernel_in_process()
