"""Confirmation: which attention function really ran. One tiny padded forward of the loaded model, with every
attention layer's forward hooked and transformers' `AttentionInterface` entry for the model's implementation
wrapped in a counter."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from attnpick.catalog import CATALOG


@dataclass(frozen=True)
class Confirmation:
    """Which attention function actually ran during one tiny forward of the loaded model."""

    attn_implementation: str | None
    calls: dict[str, int]
    layers: int
    ok: bool | None
    note: str = ""
    forwards: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"attn_implementation": self.attn_implementation, "calls": dict(self.calls),
                "forwards": dict(self.forwards), "layers": self.layers, "ok": self.ok, "note": self.note}


@contextmanager
def _counting(impl: str, eager: Callable[..., Any] | None, calls: dict[str, int]) -> Iterator[None]:
    """Route `impl` through a counter in transformers' AttentionInterface for the duration of the block."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface  # heavy, model loaded

    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    target = local if impl in local else AttentionInterface._global_mapping
    missing = object()
    saved = target.get(impl, missing)
    original = eager if saved is missing else saved
    if original is None:
        yield
        return
    name = f"{original.__module__}.{original.__qualname__}"

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] = calls.get(name, 0) + 1
        return original(*args, **kwargs)

    target[impl] = counted
    try:
        yield
    finally:
        if saved is missing:
            del target[impl]
        else:
            target[impl] = saved


def confirm(model: Any, tokenizer: Any, backend: str, implementation: str | None = None,
            remote_code: bool = False) -> Confirmation:
    """One tiny padded forward, counting the attention layers that ran and the attention function each
    called through transformers' AttentionInterface. Unsloth replaces the layers' forward with its own, so
    for it the layer count is the proof and `forwards` names Unsloth's function."""
    import torch  # heavy: only once a model is loaded

    impl = getattr(model.config, "_attn_implementation", None)
    layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    hf_name = implementation or CATALOG[backend].hf_name
    attn_modules = [m for m in model.modules() if type(m).__name__.endswith("Attention")]
    eager = getattr(sys.modules.get(type(attn_modules[0]).__module__), "eager_attention_forward", None) \
        if attn_modules else None
    calls: dict[str, int] = {}
    forwards: dict[str, int] = {}
    hooks = []
    for module in attn_modules:
        fn = type(module).forward
        name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"

        def hook(*_: Any, name: str = name) -> None:
            forwards[name] = forwards.get(name, 0) + 1

        hooks.append(module.register_forward_hook(hook))
    ids = tokenizer(["attention check", "a"], return_tensors="pt", padding=True)
    ids = {k: v.to(device_of(model)) for k, v in ids.items()}
    try:
        with _counting(impl or "", eager, calls), torch.no_grad():
            model(**ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    ran, total = sum(forwards.values()), sum(calls.values())
    if backend == "unsloth":
        ok = ran == layers if layers else ran > 0
        return Confirmation(impl, calls, layers, ok, "" if ok else f"{ran} attention layers ran of {layers}",
                            forwards)
    if impl != hf_name:
        return Confirmation(impl, calls, layers, False, f"the model runs {impl!r}, not {hf_name!r}", forwards)
    if total == 0:
        if remote_code:
            return Confirmation(impl, calls, layers, None, "remote code does not dispatch through transformers' "
                                "AttentionInterface: unconfirmed", forwards)
        return Confirmation(impl, calls, layers, False, "no attention function was called", forwards)
    ok = total == layers if layers else True
    return Confirmation(impl, calls, layers, ok, "" if ok else f"{total} attention calls for {layers} layers",
                        forwards)




def device_of(model: Any) -> Any:
    """The device of a model's first parameter."""
    return next(model.parameters()).device
