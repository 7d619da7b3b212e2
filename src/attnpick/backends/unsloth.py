"""Unsloth as a backend: import it only when it is the backend being loaded, load through
`FastLanguageModel.from_pretrained`, report which attention kernel it uses and whether it patched
transformers.

Unsloth patches transformers, peft and trl on import and asks to be imported before them; attnpick's
probe and smoke run import it only in child processes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnpick.backends.base import GPU_TYPES, Backend, InstallHint

if TYPE_CHECKING:
    from attnpick.decide.facts import EnvFacts

NAME = "unsloth"

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


def loader_kernel(facts: EnvFacts) -> str:
    """The attention Unsloth itself dispatches to on `facts` (its `models/_utils.py`): flash-attn on sm80+ (or ROCm),
    else xformers, else SDPA."""
    device = facts.device
    cap = device.capability_tuple
    if facts.usable("flash-attn") and (device.type == "rocm" or (device.type == "cuda" and cap and cap >= (8, 0))):
        return "flash_attention_2"
    if device.type == "cuda" and facts.usable("xformers"):
        return "xformers"
    return "sdpa"


def api() -> Any:
    """Unsloth's own `FastLanguageModel` (imported already: Unsloth loaded the model)."""
    from unsloth import FastLanguageModel

    return FastLanguageModel


def _install_hints(facts: EnvFacts, missing: frozenset[str]) -> tuple[InstallHint, ...]:
    if NAME not in missing:
        return ()
    return (InstallHint(NAME, "pip install unsloth", "Unsloth pins its own transformers/trl range; use a separate venv "
                        "if that clashes.", order=0),)


def _note(facts: EnvFacts) -> str | None:
    if facts.device.type == "cpu":
        return "Unsloth's CPU mode: stock transformers + PEFT with sdpa, no Unsloth kernels"
    return None


BACKEND = Backend(
    name=NAME,
    title="Unsloth",
    hf_name=None,
    kind="loader",
    distribution="unsloth",
    modules={"unsloth": "unsloth"},
    import_alone=True,
    devices=GPU_TYPES,
    min_capability=(7, 0),
    bf16_min_capability=(8, 0),
    cpu_mode_forced_only=True,
    load=load_unsloth,
    note=_note,
    loader_kernel=loader_kernel,
    patched=transformers_patched,
    install_hints=_install_hints,
    api=api,
)
