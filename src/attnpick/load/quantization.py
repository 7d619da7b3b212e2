"""bitsandbytes 4-bit: the NF4 config attnpick loads with, the check that bitsandbytes is there, and keeping
4-bit weights trainable on CPUs with AVX512-BF16.

bitsandbytes >= 0.49 repacks a `Linear4bit`'s weight into a CPU inference layout the first time the layer runs
in eval mode without gradients on a CPU with AVX512-BF16 (`_convert_weight_packed_for_cpu`). That layout's
kernel (`gemv_4bit`) has no autograd formula: a later training forward silently passes no gradient through the
layer, so every LoRA weight before it stays untrained. attnpick's own confirmation forward runs in eval mode,
so without `keep_trainable` a 4-bit model loaded on such a CPU would train only its last layers.
"""

from __future__ import annotations

from typing import Any

from attnpick.decide.facts import EnvFacts
from attnpick.errors import UsageError

NF4 = "bitsandbytes-nf4"


def require_bitsandbytes(facts: EnvFacts) -> None:
    """`UsageError` naming the fix when 4-bit is asked for and bitsandbytes is missing or broken."""
    pkg = facts.package("bitsandbytes")
    if pkg.version is None:
        raise UsageError("4-bit loading needs bitsandbytes, which is not installed: pip install bitsandbytes "
                         "(or drop --4bit / pass --no-4bit). attnpick never falls back to full precision silently.")
    if pkg.importable is False:
        raise UsageError(f"4-bit loading needs bitsandbytes, which fails to import ({pkg.error}). Reinstall it: "
                         "pip install -U bitsandbytes.")


def nf4_config(compute_dtype: Any) -> Any:
    """NF4 with double quantization, computing in `compute_dtype` (a torch.dtype)."""
    from transformers import BitsAndBytesConfig  # heavy: only when a 4-bit model is loaded

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def keep_trainable(model: Any) -> int:
    """Keep every bitsandbytes `Linear4bit` of `model` in the layout that has gradients: turn off the CPU
    inference repacking and undo it where it already happened. Returns how many layers were undone."""
    import sys

    if "bitsandbytes" not in sys.modules:
        return 0
    from bitsandbytes import functional
    from bitsandbytes.nn import Linear4bit

    inverse = getattr(functional, "_convert_weight_packed_for_cpu_inverse", None)
    undone = 0
    for module in model.modules():
        if not isinstance(module, Linear4bit):
            continue
        module.support_avx512bf16_for_cpu = False
        state = getattr(module.weight, "quant_state", None)
        if inverse is not None and state is not None and getattr(state, "packing_format_for_cpu", False):
            module.weight.data, module.weight.quant_state = inverse(module.weight.data, state)
            undone += 1
    return undone
