"""Confirmation: which attention function, and which kernel, really ran. One tiny padded forward of the loaded
model, with every attention layer's forward hooked, transformers' `AttentionInterface` entry for the model's
implementation wrapped in a counter, and each attention call profiled: the torch profiler names the op that ran
(`aten::_scaled_dot_product_flash_attention_for_cpu`, `..._attention_math`, `..._efficient_attention`,
`..._cudnn_attention`, `torch_attn::_varlen_attn`, flash-attn's and xFormers' own ops), on CPU as on GPU. SDPA
picks its kernel at run time, so this is the only way to know: a GQA model with a padding mask on a torch build
without flash SDPA (Windows) silently runs the math kernel."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from attnpick.backends.registry import CATALOG, GPU_TYPES, is_loader, patched_in_process
from attnpick.decide.decision import Decision
from attnpick.decide.facts import EnvFacts
from attnpick.util import cache

# Ops that are an attention kernel (the outermost one a call ran is recorded); eager has none: its matmul + softmax.
_KERNEL_OP = re.compile(r"scaled_dot_product_(?!attention$)|_attention_forward|varlen_attn|flash_attn|flash_fwd|"
                        r"xformers|efficient_attention")
EAGER_KERNEL = "aten::softmax (eager matmul + softmax)"
KERNEL_WORDS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash kernel for CPU",
    "aten::_scaled_dot_product_flash_attention": "flash kernel",
    "aten::_scaled_dot_product_efficient_attention": "memory-efficient kernel",
    "aten::_scaled_dot_product_cudnn_attention": "cuDNN kernel",
    "aten::_scaled_dot_product_attention_math": "math kernel",
    "aten::_scaled_dot_product_fused_attention_overrideable": "the device's fused kernel",
    "torch_attn::_varlen_attn": "PyTorch's varlen FlashAttention kernel",
    EAGER_KERNEL: "matmul + softmax",
}
MATH_KERNEL = "aten::_scaled_dot_product_attention_math"
KIND = "confirmed"
CONFIRM_VERSION = 1  # part of the cache key: bump when `confirm` changes what it proves
_LAYER_MARK = "attnpick.attention_call."
# torch 2.13's profiler logs its start and stop from C++ on file descriptor 2 ("USDT:... profiler_start").
_PROFILER_LOG = re.compile(r"^(USDT|STAGE):\S+ \S+ \d+:\d+ \S+\.cpp:\d+\] ")


def kernel_words(op: str) -> str:
    """'flash kernel for CPU' for `aten::_scaled_dot_product_flash_attention_for_cpu`; the op itself when unknown."""
    return KERNEL_WORDS.get(op, op)


@dataclass(frozen=True)
class Confirmation:
    """Which attention function actually ran during one tiny forward of the loaded model."""

    attn_implementation: str | None
    calls: dict[str, int]
    layers: int
    ok: bool | None
    note: str = ""
    forwards: dict[str, int] = field(default_factory=dict)
    layer_kernels: tuple[str, ...] = ()  # per attention call, in order: the kernel op it ran
    cached: bool = False  # read from the cache: this machine, packages, model files and path confirmed it before

    @property
    def kernels(self) -> dict[str, int]:
        """Kernel op -> how many attention calls ran it."""
        out: dict[str, int] = {}
        for op in self.layer_kernels:
            out[op] = out.get(op, 0) + 1
        return out

    def kernel_summary(self) -> str:
        """'flash kernel for CPU' (every call's kernel in words, each once), or '' when unknown."""
        return " + ".join(kernel_words(op) for op in self.kernels)

    def kernel_line(self) -> str:
        """'aten::_scaled_dot_product_flash_attention_for_cpu x2 (flash kernel for CPU)', or '' when unknown."""
        return ", ".join(f"{op} x{n} ({kernel_words(op)})" for op, n in self.kernels.items())

    def to_dict(self) -> dict[str, Any]:
        return {"attn_implementation": self.attn_implementation, "calls": dict(self.calls),
                "forwards": dict(self.forwards), "layers": self.layers, "ok": self.ok, "note": self.note,
                "kernels": self.kernels, "layer_kernels": list(self.layer_kernels), "cached": self.cached}

    @classmethod
    def from_dict(cls, value: dict[str, Any], cached: bool = False) -> Confirmation:
        return cls(value["attn_implementation"], dict(value["calls"]), int(value["layers"]), value["ok"],
                   value["note"], dict(value["forwards"]), tuple(value["layer_kernels"]), cached)


@contextmanager
def _profiler_log_dropped() -> Iterator[None]:
    """File descriptor 2 into a temporary file while the profiler runs; everything but the profiler's own two log
    lines goes back to stderr afterwards."""
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
    except (AttributeError, OSError, ValueError):  # no real stderr (an embedded interpreter)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not _PROFILER_LOG.match(line)]
            if kept:
                sys.stderr.write("".join(kept))


@contextmanager
def _profiled(kernels: list[str], calls_marked: bool) -> Iterator[None]:
    """Profile the block (the legacy CPU profiler: milliseconds, where kineto's takes a second to start) and put
    the attention kernel each marked call ran (or, unmarked, each kernel op in order) into `kernels`."""
    from torch.autograd.profiler import profile

    with _profiler_log_dropped(), profile(use_kineto=False) as prof:
        yield
    events = list(prof.function_events)
    if calls_marked:
        marks = [e for e in events if e.name.startswith(_LAYER_MARK)]
        for mark in sorted(marks, key=lambda e: int(e.name[len(_LAYER_MARK):])):
            inside = [e for e in events if _within(e, mark)]
            kernels.append(_kernel_of(inside))
    else:
        kernels.extend(e.name for e in events if _KERNEL_OP.search(e.name) and not _has_kernel_parent(e))


def _within(event: Any, mark: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent is mark:
            return True
        parent = parent.cpu_parent
    return False


def _has_kernel_parent(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if _KERNEL_OP.search(parent.name):
            return True
        parent = parent.cpu_parent
    return False


def _kernel_of(events: list[Any]) -> str:
    """The outermost kernel op among one call's events; eager's softmax when there is none."""
    ops = [e for e in events if _KERNEL_OP.search(e.name) and not _has_kernel_parent(e)]
    if ops:
        return ops[0].name
    if any(e.name in ("aten::softmax", "aten::_softmax", "aten::_safe_softmax") for e in events):
        return EAGER_KERNEL
    return "unknown"


@contextmanager
def _counting(impl: str, eager: Callable[..., Any] | None, calls: dict[str, int]) -> Iterator[None]:
    """Route `impl` through a counter in transformers' AttentionInterface for the duration of the block."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface  # heavy, model loaded

    saved = ALL_ATTENTION_FUNCTIONS.get(impl)  # transformers' mapping: this process's own entry, else the global one
    own = saved is not None and saved is not AttentionInterface().get(impl)  # a fresh interface sees globals only
    original = eager if saved is None else saved
    if original is None:
        yield
        return
    name = f"{original.__module__}.{original.__qualname__}"

    def counted(*args: Any, **kwargs: Any) -> Any:
        from torch.autograd.profiler import record_function

        index = sum(calls.values())
        calls[name] = calls.get(name, 0) + 1
        with record_function(f"{_LAYER_MARK}{index}"):
            return original(*args, **kwargs)

    ALL_ATTENTION_FUNCTIONS[impl] = counted  # this process's entry, which the model's forward reads first
    try:
        yield
    finally:
        if own:
            ALL_ATTENTION_FUNCTIONS[impl] = saved
        else:
            del ALL_ATTENTION_FUNCTIONS[impl]


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
    kernels: list[str] = []
    loader = is_loader(backend)
    try:
        with _counting(impl or "", eager, calls), _profiled(kernels, calls_marked=not loader), torch.no_grad():
            model(**ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    ran, total = sum(forwards.values()), sum(calls.values())
    found = tuple(kernels)
    if loader:  # it replaces the layers' forward with its own: the layer count is the proof
        ok = ran == layers if layers else ran > 0
        return Confirmation(impl, calls, layers, ok, "" if ok else f"{ran} attention layers ran of {layers}",
                            forwards, found)
    if impl != hf_name:
        return Confirmation(impl, calls, layers, False, f"the model runs {impl!r}, not {hf_name!r}", forwards, found)
    if total == 0:
        if remote_code:
            return Confirmation(impl, calls, layers, None, "remote code does not dispatch through transformers' "
                                "AttentionInterface: unconfirmed", forwards, found)
        return Confirmation(impl, calls, layers, False, "no attention function was called", forwards, found)
    ok = total == layers if layers else True
    return Confirmation(impl, calls, layers, ok, "" if ok else f"{total} attention calls for {layers} layers",
                        forwards, found)


def confirm_key(facts: EnvFacts, folder: str, backend: str, implementation: str | None, dtype: str,
                load_in_4bit: bool, model: Any, use_cache: bool = True) -> dict[str, Any] | None:
    """What a confirmation depends on: the machine and its package versions (the facts), the model's files and class,
    the backend and its implementation, the dtype, 4-bit, and whether a loader patched transformers in this process;
    None (confirm every time) when `use_cache` is False."""
    if not use_cache:
        return None
    return {"facts": facts.to_dict(), "folder": folder, "model_files": cache.files_key(folder), "backend": backend,
            "implementation": implementation, "dtype": dtype, "load_in_4bit": load_in_4bit,
            "model_class": type(model).__name__, "patched": patched_in_process(), "version": CONFIRM_VERSION}


def _valid(value: Any) -> bool:
    Confirmation.from_dict(value)
    return value["ok"] is True


def cached_confirmation(key: dict[str, Any] | None, run: Callable[[], Confirmation]) -> Confirmation:
    """`run()`'s confirmation, or the one cached for the same `key` (only a passed one is stored): the profiled
    forward runs once per machine, packages, model and path."""
    confirmation, _ = cache.passed_or_run(
        KIND, key, run, passed=lambda found: found.ok is True, encode=Confirmation.to_dict,
        decode=lambda stored: Confirmation.from_dict(stored, cached=True), valid=_valid)
    return confirmation


def slow_kernel_note(facts: EnvFacts, decision: Decision, confirmation: Confirmation | None) -> str | None:
    """A warning when auto's SDPA ran its math kernel on a GPU, where a fused kernel (another backend) exists for
    this model: what happened, why (Windows torch has no flash SDPA; GQA with a mask rules out the efficient
    kernel), and the fix (the first install hint). None otherwise: a pinned `sdpa_math` was asked for, and on a
    CPU no faster backend trains."""
    if confirmation is None or facts.device.type not in GPU_TYPES or decision.chosen is None \
            or not CATALOG[decision.chosen].picks_kernel_at_run_time:
        return None
    if MATH_KERNEL not in confirmation.kernels:
        return None
    model = decision.model_facts
    heads, kv_heads, _ = model.attention_shape if model is not None else (0, 0, 0)
    why = []
    if "flash" not in facts.sdpa_kernels:
        why.append("this torch build has no flash SDPA kernel" + (" (Windows builds do not)"
                                                                  if facts.os == "windows" else ""))
    if kv_heads and kv_heads != heads:
        why.append(f"with grouped-query attention ({heads}/{kv_heads} heads) and a padding mask the "
                   "memory-efficient kernel is ineligible")
    hint = next((h for h in decision.install_hints if not is_loader(h.backend)), None)  # an attention kernel's
    fix = f"{hint.command} ({hint.backend})" if hint else "'attnpick doctor' lists the backends and why each is out"
    return (f"WARNING: SDPA ran its math kernel, the slowest, in {sum(confirmation.kernels.values())} attention calls"
            + (f": {'; '.join(why)}" if why else "") + f". Fix: {fix}.")




def device_of(model: Any) -> Any:
    """The device of a model's first parameter."""
    return next(model.parameters()).device
