"""An `xformers` attention implementation for transformers models.

transformers has no built-in "xformers" attn_implementation (the guide's case 3 raises ValueError).
`register_xformers()` adds one to `AttentionInterface` **and** `AttentionMaskInterface`; without the mask
registration transformers hands the attention function `attention_mask=None` and a padded batch silently
attends to its padding.

Layout: transformers gives query `[B, Hq, S, D]` and key/value un-repeated `[B, Hkv, Skv, D]`. xformers'
`memory_efficient_attention` takes `[B, S, H, D]` (BMHK), and GQA as 5-D `[B, S, G, H, D]` (BMGHK, G kv groups of H
query heads each) with key/value expanded (stride 0, no copy). In xformers 0.0.35 BMGHK is forward-only: no backward
operator supports it (`SUPPORTS_BMGHK = False` on flash, cutlass and flash3's `BwOp`), and when the inputs need
gradients the backward operator is chosen during the forward, so a training forward fails at once. Hence:
- inputs that need gradients (training): BMHK, key/value repeated to the query heads for GQA (a copy);
- no gradients (evaluation, generation): BMGHK for GQA, key/value expanded, never copied; BMHK otherwise.
The output goes back as `[B, S, Hq, D]`.

Masks: the mask function is transformers' `sdpa_mask` (boolean, True = attend), except that it never
returns None when query and key lengths differ, so a missing mask always means plain causal attention,
aligned bottom-right when the lengths differ (decoding with a cache). Boolean masks become an additive
bias in a buffer whose last dimension is padded to a multiple of 8, as xformers' kernels require.

dtype: float32 inputs go to the kernel in the model's half dtype by transformers' FlashAttention rule
(`base.kernel_inputs`; under QLoRA they arrive in float32), so xformers can use its flash operators.

Builds: a wheel runs only on the torch it was built for, except that from 0.0.34 xformers is built on PyTorch's
stable ABI and one build serves every later torch (its CHANGELOG; 0.0.35's wheel records torch 2.10.0+cu128 in
`cpp_lib.json` and requires torch>=2.10).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attnpick.backends.base import Backend, InstallHint, kernel_inputs, refuse_softcap_and_sinks
from attnpick.util.versions import at_least, release

if TYPE_CHECKING:
    from attnpick.decide.facts import EnvFacts

NAME = "xformers"

# The torch release each xformers release's wheels were built for (xformers' CHANGELOG). Before 0.0.34 a wheel
# imports only on that torch ("undefined symbol" otherwise); from 0.0.34 (PyTorch's stable ABI) on every later one.
BUILT_FOR_TORCH: dict[str, str] = {
    "0.0.28.post1": "2.4.1",
    "0.0.28.post3": "2.5.1",
    "0.0.29.post3": "2.6.0",
    "0.0.30": "2.7.0",
    "0.0.31.post1": "2.7.1",
    "0.0.32.post2": "2.8.0",
    "0.0.33.post1": "2.9.0",
    "0.0.33.post2": "2.9.1",
    "0.0.35": "2.10.0",
}
STABLE_ABI_FROM = "0.0.34"
STABLE_ABI_RELEASE = "0.0.35"  # the release recommended for torch >= 2.10
# CUDA flavours the PyTorch index carries xformers builds for (xformers' README: cu126, cu128, cu130).
INDEX_CUDA = ("12.6", "12.8", "13.0")

# What the kernel is asked to do: ("none", None), ("causal", None) meaning bottom-right aligned, or
# ("bias", tensor [B, Hq, Sq, Skv] for BMHK inputs, [B, G, H, Sq, Skv] for BMGHK).
BiasSpec = tuple[str, Any]


def _xformers_kernel(query: Any, key: Any, value: Any, bias: BiasSpec, p: float, scale: float | None) -> Any:
    """The real kernel: `xformers.ops.memory_efficient_attention` on BMHK or BMGHK tensors."""
    from xformers.ops import memory_efficient_attention
    from xformers.ops.fmha.attn_bias import LowerTriangularFromBottomRightMask  # not exported by xformers.ops

    kind, tensor = bias
    attn_bias = {"none": None, "causal": LowerTriangularFromBottomRightMask(), "bias": tensor}[kind]
    return memory_efficient_attention(query, key, value, attn_bias=attn_bias, p=p, scale=scale)


# Tests on machines without CUDA substitute a reference here.
KERNEL = _xformers_kernel


def _aligned_bias(mask: Any, dtype: Any, groups: int, per_group: int, five_d: bool) -> Any:
    import torch

    batch, _, q_len, kv_len = mask.shape
    padded = -(-kv_len // 8) * 8
    if mask.dtype == torch.bool:
        values = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        values.masked_fill_(~mask, torch.finfo(dtype).min)
    else:
        values = mask.to(dtype)
    heads = values.shape[1]
    storage = torch.zeros(batch, heads, q_len, padded, dtype=dtype, device=mask.device)
    storage[..., :kv_len] = values
    bias = storage[..., :kv_len]
    if not five_d:
        return bias.expand(batch, groups * per_group, q_len, kv_len)
    if heads == 1:
        return bias.unsqueeze(1).expand(batch, groups, per_group, q_len, kv_len)
    return bias.view(batch, groups, per_group, q_len, kv_len)


def xformers_attention_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-function signature, computed by xformers."""
    refuse_softcap_and_sinks(NAME, kwargs)
    import torch

    query, key, value = kernel_inputs(query, key, value, module)
    batch, q_heads, q_len, head_dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    per_group = q_heads // kv_heads
    grads = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    five_d = per_group > 1 and not grads  # BMGHK has no backward operator in xformers 0.0.35
    if five_d:
        q = query.transpose(1, 2).reshape(batch, q_len, kv_heads, per_group, head_dim)
        k = key.transpose(1, 2).unsqueeze(3).expand(batch, kv_len, kv_heads, per_group, head_dim)
        v = value.transpose(1, 2).unsqueeze(3).expand(batch, kv_len, kv_heads, per_group, value.shape[-1])
    else:
        q = query.transpose(1, 2)
        k = key.repeat_interleave(per_group, dim=1).transpose(1, 2) if per_group > 1 else key.transpose(1, 2)
        v = value.repeat_interleave(per_group, dim=1).transpose(1, 2) if per_group > 1 else value.transpose(1, 2)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is not None:
        bias: BiasSpec = ("bias", _aligned_bias(attention_mask, query.dtype, kv_heads, per_group, five_d))
    elif causal and q_len > 1:
        bias = ("causal", None)
    else:
        bias = ("none", None)
    out = KERNEL(q, k, v, bias, dropout if module is None or module.training else 0.0, scaling)
    return out.reshape(batch, q_len, q_heads, out.shape[-1]), None


def xformers_mask(*args: Any, **kwargs: Any) -> Any:
    """transformers' `sdpa_mask`, but materialized whenever query and key lengths differ (q > 1), so that a
    None mask always means bottom-right causal attention."""
    from transformers.masking_utils import sdpa_mask

    mask = sdpa_mask(*args, **kwargs)
    if mask is not None or args:
        return mask
    q_len = kwargs.get("q_length")
    if q_len is None and kwargs.get("cache_position") is not None:
        q_len = kwargs["cache_position"].shape[0]
    if q_len is not None and q_len > 1 and q_len != kwargs.get("kv_length"):
        return sdpa_mask(**{**kwargs, "allow_is_causal_skip": False})
    return mask


def register_xformers() -> None:
    """Make `attn_implementation="xformers"` valid for every transformers model in this process.

    Imports transformers but not xformers (that happens at the first attention call), so it is safe
    on machines without CUDA; the decision keeps xformers off them.

    Example:
        >>> import attnpick
        >>> attnpick.register_xformers()
        >>> model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="xformers")
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, xformers_attention_forward)
    AttentionMaskInterface.register(NAME, xformers_mask)


def release_for(torch_version: str | None) -> str | None:
    """The xformers release whose wheels run on this torch: the one built for it, else (torch >= 2.10) the stable-ABI
    release; None for a torch no release was built for."""
    base = release(torch_version)
    if base is None:
        return None
    for name, built_for in BUILT_FOR_TORCH.items():
        if release(built_for) == base:
            return name
    return STABLE_ABI_RELEASE if at_least(torch_version, BUILT_FOR_TORCH[STABLE_ABI_RELEASE]) else None


def runs_on(xformers_version: str, built_for: str, torch_version: str) -> bool:
    """Whether an xformers build made for torch `built_for` runs on `torch_version`: the same release before 0.0.34,
    that release or any later one from 0.0.34 (PyTorch's stable ABI)."""
    have, made = release(torch_version), release(built_for)
    if have is None or made is None:
        return True  # nothing to compare: the smoke run decides
    return have >= made if at_least(xformers_version, STABLE_ABI_FROM) else have == made


def install_command(torch_version: str | None, cuda: str | None) -> str:
    """The pip command that installs an xformers build this torch accepts, without replacing torch: the release made
    for it (the stable-ABI release for torch >= 2.10), from the PyTorch index of its CUDA flavour where that index
    carries xformers."""
    pinned = release_for(torch_version)
    pin = f"xformers=={pinned}" if pinned else "xformers"
    local = (torch_version or "").partition("+")[2]  # torch's own CUDA flavour: "cu130"
    tag = local if local.startswith("cu") else "cu" + cuda.replace(".", "") if cuda else ""
    if tag in {"cu" + c.replace(".", "") for c in INDEX_CUDA}:
        return f"pip install --no-deps {pin} --index-url https://download.pytorch.org/whl/{tag}"
    return f"pip install --no-deps {pin}"


def probe_details() -> dict[str, Any]:
    """Run after `import xformers.ops` in the import-check child: whether the compiled kernels loaded (and why not),
    and which torch and CUDA they were built for, read from the wheel's own `cpp_lib.json` (it says so even when the
    kernels did not load on this torch)."""
    import json
    from pathlib import Path

    import xformers

    details: dict[str, Any] = {}
    has_cpp = getattr(xformers, "_has_cpp_library", None)
    if isinstance(has_cpp, bool):
        details["cpp_library"] = has_cpp
    try:
        from xformers import _cpp_lib

        error = getattr(_cpp_lib, "_cpp_library_load_exception", None)
        if error is not None:
            details["load_error"] = str(error).strip().splitlines()[0][:300]
    except ImportError:
        pass
    try:
        build = json.loads((Path(xformers.__file__).parent / "cpp_lib.json").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return details
    if build.get("torch"):
        details["built_for_torch"] = str(build["torch"])
    if isinstance(build.get("cuda"), int):
        details["built_for_cuda"] = f"{build['cuda'] // 100}.{build['cuda'] % 100}"
    return details


def _install_hints(facts: EnvFacts, missing: frozenset[str]) -> tuple[InstallHint, ...]:
    """The guide's Windows advice (prebuilt wheels, no compiler), and on Linux the GPUs FlashAttention-2 does not
    run on (below compute capability 8.0)."""
    cap = facts.device.capability_tuple
    if NAME not in missing or facts.device.type != "cuda":
        return ()
    command = install_command(facts.torch, facts.cuda)
    if facts.package("xformers").version is not None:  # installed, built for another torch: replace it
        command = command.replace("pip install", "pip install --force-reinstall", 1)
    if facts.os == "windows":
        return (InstallHint(NAME, command, "Windows: xFormers has prebuilt wheels; --no-deps keeps your torch.",
                            order=1),)
    if cap is not None and cap < (8, 0):
        return (InstallHint(NAME, command, "FlashAttention-2 needs compute capability 8.0; xFormers runs on this GPU.",
                            order=4),)
    return ()


BACKEND = Backend(
    name=NAME,
    title="xFormers",
    hf_name=NAME,
    distribution="xformers",
    modules={"xformers": "xformers.ops"},
    devices=frozenset({"cuda"}),
    bf16_min_capability=(8, 0),
    softcapping=False,
    sinks=False,
    needs_kernels_check=True,
    runs_on_torch=runs_on,
    install=lambda facts: install_command(facts.torch, facts.cuda),
    install_hints=_install_hints,
    register=register_xformers,
    probe_details=probe_details,
)
