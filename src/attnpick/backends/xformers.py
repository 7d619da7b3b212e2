"""An `xformers` attention implementation for transformers models.

transformers has no built-in "xformers" attn_implementation (the guide's case 3 raises ValueError).
`register_xformers()` adds one to `AttentionInterface` **and** `AttentionMaskInterface`; without the mask
registration transformers hands the attention function `attention_mask=None` and a padded batch silently
attends to its padding.

Layout: transformers gives query `[B, Hq, S, D]` and key/value un-repeated `[B, Hkv, Skv, D]`; xformers'
`memory_efficient_attention` takes GQA as 5-D `[B, S, G, H, D]` (G kv groups of H query heads each), so
key/value are expanded (stride 0), never copied. The output goes back as `[B, S, Hq, D]`.

Masks: the mask function is transformers' `sdpa_mask` (boolean, True = attend), except that it never
returns None when query and key lengths differ, so a missing mask always means plain causal attention,
aligned bottom-right when the lengths differ (decoding with a cache). Boolean masks become an additive
bias in a buffer whose last dimension is padded to a multiple of 8, as xformers' kernels require.
"""

from __future__ import annotations

from typing import Any

from attnpick.backends.base import Backend, refuse_softcap_and_sinks

NAME = "xformers"

# xformers wheels are built against one torch release each (xformers release notes); installing another
# pairing gives "undefined symbol" at import. Torch releases not listed use the PyTorch index, which
# carries the xformers build made for each CUDA flavour of torch.
XFORMERS_FOR_TORCH: dict[str, str] = {
    "2.4.1": "0.0.28.post1",
    "2.5.1": "0.0.28.post3",
    "2.6.0": "0.0.29.post3",
    "2.7.0": "0.0.30",
    "2.7.1": "0.0.31.post1",
    "2.8.0": "0.0.32.post2",
}

# What the kernel is asked to do: ("none", None), ("causal", None) meaning bottom-right aligned, or
# ("bias", tensor [B, G, H, Sq, Skv]).
BiasSpec = tuple[str, Any]


def _xformers_kernel(query: Any, key: Any, value: Any, bias: BiasSpec, p: float, scale: float | None) -> Any:
    """The real kernel: `xformers.ops.memory_efficient_attention` on 5-D BMGHK tensors."""
    from xformers.ops import LowerTriangularFromBottomRightMask, memory_efficient_attention

    kind, tensor = bias
    attn_bias = {"none": None, "causal": LowerTriangularFromBottomRightMask(), "bias": tensor}[kind]
    return memory_efficient_attention(query, key, value, attn_bias=attn_bias, p=p, scale=scale)


# Tests on machines without CUDA substitute a reference here.
KERNEL = _xformers_kernel


def _aligned_bias(mask: Any, dtype: Any, groups: int, per_group: int) -> Any:
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
    batch, q_heads, q_len, head_dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    per_group = q_heads // kv_heads
    q = query.transpose(1, 2).reshape(batch, q_len, kv_heads, per_group, head_dim)
    k = key.transpose(1, 2).unsqueeze(3).expand(batch, kv_len, kv_heads, per_group, head_dim)
    v = value.transpose(1, 2).unsqueeze(3).expand(batch, kv_len, kv_heads, per_group, value.shape[-1])
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is not None:
        bias: BiasSpec = ("bias", _aligned_bias(attention_mask, query.dtype, kv_heads, per_group))
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


def install_command(torch_version: str | None, cuda: str | None) -> str:
    """The pip command that installs the xformers build matching this torch, without replacing torch."""
    base, _, _ = (torch_version or "").partition("+")
    if base in XFORMERS_FOR_TORCH:
        return f"pip install --no-deps xformers=={XFORMERS_FOR_TORCH[base]}"
    if cuda:
        tag = "cu" + cuda.replace(".", "")
        return f"pip install --no-deps xformers --index-url https://download.pytorch.org/whl/{tag}"
    return "pip install --no-deps xformers"


def probe_details() -> dict[str, Any]:
    """Run after `import xformers.ops` in the import-check child: whether the compiled kernels are there and which
    torch they were built for (a build for another torch fails at the first call, not at import)."""
    import xformers

    details: dict[str, Any] = {}
    has_cpp = getattr(xformers, "_has_cpp_library", None)
    if isinstance(has_cpp, bool):
        details["cpp_library"] = has_cpp
    try:
        from xformers import _cpp_lib

        meta = getattr(_cpp_lib, "_build_metadata", None)
        torch_version = getattr(meta, "torch_version", None)
        if torch_version:
            details["built_for_torch"] = str(torch_version)
    except Exception:  # noqa: BLE001 - build metadata is optional across xformers releases
        pass
    return details


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
    register=register_xformers,
    probe_details=probe_details,
)
