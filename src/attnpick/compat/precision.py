"""Mixed precision as Unsloth's notebooks ask for it: `is_bfloat16_supported()` (Unsloth's name, and its alias
`is_bf16_supported`), and the Trainer's `bf16` / `fp16` flags that follow a loaded model's dtype and device."""

from __future__ import annotations


def has_gpu() -> bool:
    """Whether torch sees a CUDA (or ROCm) GPU here."""
    import torch  # heavy: asked for only when a run is being set up

    return bool(torch.cuda.is_available())


def is_bfloat16_supported() -> bool:
    """Whether this machine's GPU computes bfloat16 natively (Ampere or newer, or ROCm); False on a CPU, as in
    Unsloth's notebooks, which pass `bf16=is_bfloat16_supported(), fp16=not is_bfloat16_supported()` (on a CPU,
    attnpick's TRL keywords turn that fp16 off again: there is no fp16 mixed precision on a CPU).

    `torch.cuda.is_bf16_supported()` counts emulation by default: it says True on a T4 (sm75), where bfloat16 runs
    emulated and slowly; Unsloth's own answer there is False (compute capability 8 or more), and so is this one."""
    import torch

    return has_gpu() and bool(torch.cuda.is_bf16_supported(including_emulation=False))


def is_bf16_supported() -> bool:
    """Unsloth's other name for `is_bfloat16_supported`."""
    return is_bfloat16_supported()


def mixed_precision(dtype: str | None, device: str | None) -> dict[str, bool]:
    """The Trainer's precision flags for a model in `dtype` on `device` (what `from_pretrained` loaded): bf16 for a
    bfloat16 model on a GPU, fp16 for a float16 one, neither on a CPU or for float32."""
    on_gpu = bool(device) and not str(device).startswith("cpu")
    return {"bf16": on_gpu and dtype == "bfloat16", "fp16": on_gpu and dtype == "float16"}


def machine_precision() -> dict[str, bool]:
    """The Trainer's precision flags for this machine when no model was loaded yet: bf16 on a bfloat16 GPU, fp16 on an
    older GPU, neither on a CPU."""
    bf16 = is_bfloat16_supported()
    return {"bf16": bf16, "fp16": has_gpu() and not bf16}
