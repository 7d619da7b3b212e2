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


# The unquantized model's weights may take at most this share of the free memory for a CPU to train it: the rest
# holds activations, the LoRA's optimizer state and the data.
CPU_WEIGHT_SHARE = 0.5
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def choose_4bit(asked: bool | None, device_type: str, parameters: int | None, free_bytes: int | None,
                dtype: str) -> tuple[bool, str | None]:
    """Whether `attnpick train` loads the model in 4-bit, and the line saying why when attnpick chose.

    Asked (`--4bit` / `--no-4bit`): as asked. On a GPU: 4-bit, the guide's QLoRA (its memory saving is what lets
    a 2-3B model train on one card). On a CPU: the unquantized model in `dtype` when its weights fit in half the
    free memory (or their size is unknown), since on a CPU NF4 saves memory but no time: every 4-bit layer
    dequantizes its weight at every forward and backward; 4-bit when they do not fit.
    """
    if asked is not None:
        return asked, None
    if device_type != "cpu":
        return True, None
    size = parameters * _BYTES.get(dtype, 4) if parameters else None
    if size is not None and free_bytes is not None and size > CPU_WEIGHT_SHARE * free_bytes:
        return True, (f"CPU: training in 4-bit (NF4): the {dtype} weights ({_gb(size)}) need more than half of the "
                      f"{_gb(free_bytes)} free; pass --no-4bit to train unquantized anyway.")
    fits = f"its {dtype} weights ({_gb(size)}) fit in the {_gb(free_bytes)} free" if size and free_bytes else \
        f"it trains in {dtype}"
    return False, (f"CPU: training the unquantized model, not 4-bit: 4-bit (NF4) saves GPU memory and, on a CPU, "
                   f"costs time (each weight dequantized at every step); {fits}. Pass --4bit to train in 4-bit.")


def _gb(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 2**30:.1f} GB" if n >= 2**30 / 10 else f"{max(1, round(n / 2**20))} MB"


def parameter_count(folder: Any) -> int | None:
    """The number of weights in a model folder's safetensors files, read from their headers (no tensor is loaded);
    None when there are none or a header does not read."""
    from pathlib import Path

    from safetensors import safe_open

    total = 0
    shards = sorted(Path(folder).glob("*.safetensors"))
    try:
        for shard in shards:
            with safe_open(str(shard), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    count = 1
                    for dim in handle.get_slice(key).get_shape():
                        count *= dim
                    total += count
    except Exception:  # noqa: BLE001 - a corrupt shard is reported by the load itself; here the size is unknown
        return None
    return total or None


def free_memory() -> int | None:
    """Bytes of memory free for a new process (psutil's 'available'); None when psutil is missing."""
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)
