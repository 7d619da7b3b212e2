"""A LoRA merged into its base, saved so that plain transformers loads it without attnpick.

`merged_16bit`: every 4-bit (NF4) weight dequantized (bitsandbytes' own `dequantize_4bit`), each LoRA's delta
(peft's `get_delta_weight`) added in float32, the result in 16 bits (the checkpoint's own dtype when it is 16-bit,
else float16). So the merged model computes what the adapter model computed, up to 16-bit rounding. Written in
the original model's config and weight names: an EXAONE model loaded through attnpick's Llama mapping (or as Llama
by transformers 5.24) is written back under EXAONE's names with its own config.json, with its tokenizer and chat
template. `merged_4bit` (Unsloth's `merged_4bit_forced` too): the same merge, then every weight that was 4-bit
quantized again as it was loaded, in the bitsandbytes format transformers loads (for serving or DPO on little
memory; the merged LoRA delta is rounded to 4 bits with the rest, so it loses some of what training added:
merged_16bit keeps it). `lora`: the adapter alone (peft's `save_pretrained`) and the tokenizer. The folder appears
whole or not at all.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnpick.errors import UsageError
from attnpick.load.lora import base_model
from attnpick.model import exaone
from attnpick.model.config import read_config
from attnpick.util import files

SAVE_METHODS = ("merged_16bit", "merged_4bit", "lora")
SIDE_FILES = ("generation_config.json",)
Progress = Callable[[str, int, int], None]  # (what, done, total): a progress bar's update


def check_output(out: str | Path) -> Path:
    path = Path(out).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{path} exists and is not an empty folder; pick a new folder for the merged model.")
    return path


def save_merged(model: Any, tokenizer: Any, out: str | Path, save_method: str = "merged_16bit",
                source_folder: str | None = None, progress: Progress | None = None) -> Path:
    """Write `model` (a peft LoRA model, 4-bit base or not) to `out` by `save_method`; returns the folder."""
    save_method = "merged_4bit" if save_method == "merged_4bit_forced" else save_method  # Unsloth's two names
    if save_method not in SAVE_METHODS:
        raise UsageError(f"Unknown save_method {save_method!r}. Choose one of: {', '.join(SAVE_METHODS)}.")
    path = check_output(out)
    if save_method == "merged_4bit":
        warnings.warn("save_method='merged_4bit' rounds the merged LoRA to 4 bits with the base: some of what training "
                      "added is lost. For more training or an accurate copy use save_method='merged_16bit'.",
                      UserWarning, stacklevel=3)
    with files.disk_full_as_error(path.parent, f"the model folder {path}"), \
            files.publish_folder(path, replace=path.is_dir()) as staged:  # replace: only an empty folder is there
        if save_method == "lora":
            model.save_pretrained(str(staged))
        else:
            _write_merged(model, staged, source_folder, four_bit=save_method == "merged_4bit", progress=progress)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(staged))
    return path


def _write_merged(model: Any, staged: Path, source_folder: str | None, four_bit: bool = False,
                  progress: Progress | None = None) -> None:
    from huggingface_hub import save_torch_state_dict

    base = base_model(model)
    original, source = original_config(model, source_folder)
    dtype = _dtype(original)
    state = merged_state_dict(model, dtype, progress)
    quantization = _requantize(base, state) if four_bit else None
    if exaone.is_exaone(original):
        state = {exaone.exaone_key(name): tensor for name, tensor in state.items()}
    if original.get("tie_word_embeddings", getattr(base.config, "tie_word_embeddings", False)):
        state.pop("lm_head.weight", None)  # tied to the embeddings, as the checkpoint had it
    save_torch_state_dict(state, str(staged), max_shard_size="5GB", safe_serialization=True)
    config = {k: v for k, v in original.items() if k != "quantization_config"}
    config["torch_dtype"] = config["dtype"] = dtype
    if quantization:
        config["quantization_config"] = quantization
    files.write_text(staged / "config.json", json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    for name in SIDE_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, staged / name)


def _requantize(base: Any, state: dict[str, Any]) -> dict[str, Any]:
    """merged_4bit: every weight that was 4-bit in the loaded model, merged, quantized again the same way
    (bitsandbytes' `quantize_4bit`: its quant type, block size and nested statistics) and stored as transformers
    stores a bitsandbytes checkpoint (the packed weight and its `QuantState.as_dict(packed=True)` entries), with the
    loaded model's `quantization_config`. The merged LoRA delta is then rounded to 4 bits with the rest."""
    import bitsandbytes.functional as bnbf

    states = {}
    for name, module in base.named_modules():
        layer = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        weight = getattr(layer, "weight", None)
        if weight is not None and _is_4bit(weight) and f"{name}.weight" in state:
            states.setdefault(name, weight.quant_state)
    if not states:
        raise UsageError("save_method='merged_4bit' needs a model loaded in 4-bit (load_in_4bit=True); this one is "
                         "not. Use save_method='merged_16bit'.")
    for name, qs in states.items():
        packed, new_state = bnbf.quantize_4bit(state[f"{name}.weight"].to(qs.dtype), blocksize=qs.blocksize,
                                               compress_statistics=qs.nested, quant_type=qs.quant_type)
        state[f"{name}.weight"] = packed
        state.update({f"{name}.weight.{key}": value for key, value in new_state.as_dict(packed=True).items()})
    config = getattr(base.config, "quantization_config", None)
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    return {**config, "quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False}


def original_config(model: Any, source_folder: str | None = None) -> tuple[dict[str, Any], Path]:
    """The config.json the model was loaded from (EXAONE's own, where attnpick loaded it as Llama) and its
    folder; the loaded config where no folder is known."""
    base = base_model(model)
    source = Path(source_folder) if source_folder else Path(getattr(base.config, "_name_or_path", "") or ".")
    return (read_config(source) if (source / "config.json").is_file() else base.config.to_dict()), source


def _dtype(config: dict[str, Any]) -> str:
    declared = config.get("torch_dtype") or config.get("dtype")
    return declared if declared in ("bfloat16", "float16") else "float16"


def merged_state_dict(model: Any, dtype: str = "float16", progress: Progress | None = None) -> dict[str, Any]:
    """The base model's weights under its own names with every active LoRA merged in and every 4-bit weight
    dequantized, in `dtype`."""
    import torch

    with torch.no_grad():  # a LoRA's delta carries its factors' autograd history otherwise
        return _merged(model, getattr(torch, dtype), progress or (lambda *_: None))


def _merged(model: Any, target: Any, progress: Progress) -> dict[str, Any]:
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    base = base_model(model)
    modules = list(base.named_modules())
    out: dict[str, Any] = {}
    skip: set[str] = set()
    for done, (name, module) in enumerate(modules, 1):
        progress("merging", done, len(modules))
        if any(name == s or name.startswith(s + ".") for s in skip):
            continue
        if isinstance(module, LoraLayer):
            layer = module.get_base_layer()
            weight = _dense(layer).float()
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    weight = weight + module.get_delta_weight(adapter).float().to(weight.device)
            out[f"{name}.weight"] = weight.to(target).contiguous()
            if getattr(layer, "bias", None) is not None:
                out[f"{name}.bias"] = layer.bias.detach().to(target)
            skip.add(name)
            continue
        if isinstance(module, ModulesToSaveWrapper):  # a module trained whole (modules_to_save): its trained copy
            trained = module.modules_to_save[module.active_adapters[0]]
            for pname, param in trained.named_parameters():
                out[f"{name}.{pname}"] = param.detach().to(target).contiguous()
            skip.add(name)
            continue
        for pname, param in module.named_parameters(recurse=False):
            tensor = _dense(module) if pname == "weight" and _is_4bit(param) else param.detach()
            out[f"{name}.{pname}" if name else pname] = tensor.to(target if tensor.is_floating_point() else
                                                                  tensor.dtype).contiguous()
    return {k: v.cpu() for k, v in out.items()}


def _is_4bit(param: Any) -> bool:
    return type(param).__name__ == "Params4bit"


def _dense(layer: Any) -> Any:
    """A linear layer's weight as a plain tensor, dequantized when it is a bitsandbytes 4-bit one."""
    weight = layer.weight
    if _is_4bit(weight):
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(weight.data, weight.quant_state)
    return weight.detach()
