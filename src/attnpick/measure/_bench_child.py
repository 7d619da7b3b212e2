"""Child process: time one backend at each sequence length and report each measurement's peak memory.

Run as `python -m attnpick.measure._bench_child '<json job>'` through `attnpick.util.subproc`. One backend per
process: the model loads once, then each length is measured with its own memory baseline (CUDA: the peak of
`max_memory_allocated` after a reset; CPU: the growth of the process's peak RSS, reset through /proc, over the RSS
once the inputs exist), and a crash cannot take the caller down. A length that fails (out of memory) is its row's
error; the next one runs. torch and transformers are imported by the job that needs them.
"""

from __future__ import annotations

import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any

from attnpick.backends.registry import CATALOG, ensure_registered
from attnpick.decide.decision import Request, choose
from attnpick.decide.probe import collect_facts
from attnpick.load.chain import LoadOptions, load_with
from attnpick.load.lora import attach
from attnpick.model.resolve import prepare
from attnpick.util.subproc import error_line, serve


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _rss_peak_mb() -> float:
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    try:
        import resource  # POSIX only: absent on Windows
    except ImportError:
        return _windows_peak_mb()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def _windows_peak_mb() -> float:
    """The process's peak working set on Windows (GetProcessMemoryInfo), 0.0 where it cannot be read."""
    try:
        import ctypes
        from ctypes import wintypes

        class Counters(ctypes.Structure):
            _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                        ("PeakWorkingSetSize", ctypes.c_size_t), ("WorkingSetSize", ctypes.c_size_t),
                        ("QuotaPeakPagedPoolUsage", ctypes.c_size_t), ("QuotaPagedPoolUsage", ctypes.c_size_t),
                        ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t), ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
                        ("PagefileUsage", ctypes.c_size_t), ("PeakPagefileUsage", ctypes.c_size_t)]

        counters = Counters()
        counters.cb = ctypes.sizeof(Counters)
        windll = ctypes.windll  # type: ignore[attr-defined]
        handle = windll.kernel32.GetCurrentProcess()
        if not windll.psapi.GetProcessMemoryInfo(handle, ctypes.byref(counters), counters.cb):
            return 0.0
        return counters.PeakWorkingSetSize / 2**20
    except (AttributeError, OSError):
        return 0.0


class _Memory:
    def __init__(self, device: Any) -> None:
        import torch

        self.device = device
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            # CPU: the growth of the process's peak RSS over its RSS once the inputs exist
            self.base = (_status_mb("VmRSS") if _reset_peak_rss() else None) or _rss_peak_mb()

    def peak_mb(self) -> float:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - self.base) / 2**20
        return max(0.0, _rss_peak_mb() - self.base)


PEAK_REPEATS = 10  # the matmul ceiling takes the fastest of at least this many runs


def _timed(fn: Any, device: Any, warmup: int, repeats: int) -> list[float]:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times


def _stats(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=4) if len(times) >= 4 else [min(times), 0, max(times)]
    return {"median_s": statistics.median(times), "q1_s": q[0], "q3_s": q[-1], "min_s": min(times),
            "repeats": len(times)}


def kernel(job: dict[str, Any]) -> dict[str, Any]:
    """The attention function alone, as transformers calls it, at the model's shapes; causal, no padding."""
    import torch  # heavy: imported by the job that needs it

    impl = job.get("attn_implementation") or job["backend"]
    ensure_registered(job["backend"])
    if "flash" in impl:  # transformers loads the FlashAttention kernels lazily, at model init
        from transformers.modeling_flash_attention_utils import lazy_import_flash_attention

        lazy_import_flash_attention(impl)
    device, dtype = torch.device(job["device"]), getattr(torch, job["dtype"])
    b, hq, hkv, d, s = job["batch"], job["heads"], job["kv_heads"], job["head_dim"], job["seq"]
    gen = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(b, hq, s, d, device=device, dtype=dtype, generator=gen, requires_grad=True)
    k = torch.randn(b, hkv, s, d, device=device, dtype=dtype, generator=gen, requires_grad=True)
    v = torch.randn(b, hkv, s, d, device=device, dtype=dtype, generator=gen, requires_grad=True)
    module = torch.nn.Module()
    module.is_causal, module.layer_idx, module.num_key_value_groups = True, 0, hq // hkv
    module.config = SimpleNamespace(_attn_implementation=impl)
    module.eval()
    fn, mask = attention_call(job["backend"], impl, s, device, dtype)
    scale = d**-0.5
    grad = torch.randn(b, s, hq, d, device=device, dtype=dtype, generator=gen)
    memory = _Memory(device)

    def forward() -> Any:
        with torch.no_grad():
            return fn(module, q, k, v, mask, dropout=0.0, scaling=scale)[0]

    def forward_backward() -> None:
        out = fn(module, q, k, v, mask, dropout=0.0, scaling=scale)[0]
        out.backward(grad)
        q.grad = k.grad = v.grad = None

    fwd = _timed(forward, device, job["warmup"], job["repeats"])
    fwd_bwd = _timed(forward_backward, device, job["warmup"], job["repeats"])
    return {"forward": _stats(fwd), "forward_backward": _stats(fwd_bwd), "peak_mb": memory.peak_mb()}


def attention_call(backend: str, impl: str, seq: int, device: Any, dtype: Any) -> tuple[Any, Any]:
    """(the attention function, the mask transformers hands it for an unpadded causal batch): every row timed causal
    and credited causal FLOPs. Both come from the backend's hooks where it has them (eager's function and additive
    mask, FlexAttention's causal BlockMask, without which it attends to every key); else transformers' mapping and no
    mask (causal through `is_causal`)."""
    from transformers import AttentionInterface

    spec = CATALOG.get(backend)
    fn = spec.attention() if spec is not None and spec.attention is not None else AttentionInterface()[impl]
    mask = spec.causal_mask(seq, device, dtype) if spec is not None and spec.causal_mask is not None else None
    return fn, mask


def matmul_peak(job: dict[str, Any]) -> dict[str, Any]:
    """The device's matmul throughput in this dtype, from its fastest run: the ceiling no attention figure may
    pass. The fastest run, not the median: a ceiling measured while another process held the cores would sit
    below honest attention figures."""
    import torch

    device, dtype = torch.device(job["device"]), getattr(torch, job["dtype"])
    n = job.get("n", 4096 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    bm = torch.randn(n, n, device=device, dtype=dtype)
    times = _timed(lambda: a @ bm, device, job["warmup"], max(job["repeats"], PEAK_REPEATS))
    return {"tflops": 2 * n**3 / min(times) / 1e12, "n": n}


def _load(job: dict[str, Any], max_seq_length: int) -> tuple[Any, Any]:
    """The model through the proven chain with the job's backend as a forced choice (LoRA the one way attnpick
    attaches it, when asked), and the proof of which attention ran."""
    facts = collect_facts()
    prepared = prepare(**job["model"])
    decision = choose(facts, Request(job["backend"], job["dtype"], origin="bench"), prepared.model_facts)
    model, _, report = load_with(decision, prepared, facts, LoadOptions(max_seq_length=max_seq_length))
    if job.get("lora"):
        model = attach(model, job["backend"], r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                       seed=0)
    return model, report


def train(job: dict[str, Any], loaded: tuple[Any, Any]) -> dict[str, Any]:
    """One training step of the real model (LoRA when asked): tokens/s and peak memory."""
    import torch

    model, report = loaded
    device = next(model.parameters()).device
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (job["batch"], job["seq"]), generator=gen).to(device)
    memory = _Memory(device)

    def step() -> None:
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    times = _timed(step, device, job["warmup"], job["repeats"])
    stats = _stats(times)
    return {"step": stats, "tokens_per_s": job["batch"] * job["seq"] / stats["median_s"],
            "peak_mb": memory.peak_mb(), "confirmed": bool(report.confirmation and report.confirmation.ok)}


def infer(job: dict[str, Any], loaded: tuple[Any, Any]) -> dict[str, Any]:
    """Prefill of `seq` tokens, then per-token decode with the KV cache."""
    import torch

    model = loaded[0]
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (job["batch"], job["seq"]), generator=gen).to(device)
    new_tokens = job.get("new_tokens", 16)
    memory = _Memory(device)

    def prefill() -> Any:
        with torch.no_grad():
            return model(input_ids=ids, use_cache=True)

    def decode_steps() -> float:
        """Seconds for `new_tokens` decode steps after an untimed prefill (a fresh cache each time)."""
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=True)
            cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            _sync(device)
            start = time.perf_counter()
            for _ in range(new_tokens):
                out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
                cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            _sync(device)
            return time.perf_counter() - start

    pre = _stats(_timed(prefill, device, job["warmup"], job["repeats"]))
    for _ in range(max(1, job["warmup"] // 2)):
        decode_steps()
    decode = _stats([decode_steps() / new_tokens for _ in range(max(3, job["repeats"] // 2))])
    return {"prefill": pre, "decode": decode, "decode_per_token_s": decode["median_s"], "peak_mb": memory.peak_mb()}


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


NEW_TOKENS = 64  # the infer job's room for decoding beyond the prompt


def rows(job: dict[str, Any]) -> dict[str, Any]:
    """Every sequence length of one backend in this process; one row each, a failing length its row's error."""
    seqs = job["seqs"]
    loaded = None
    if job["job"] in ("train", "infer"):
        loaded = _load(job, max(seqs) + (NEW_TOKENS if job["job"] == "infer" else 0))
    out = []
    for seq in seqs:
        one = {**job, "seq": seq}
        try:
            record = kernel(one) if job["job"] == "kernel" else MEASURES[job["job"]](one, loaded)
            out.append({"seq": seq, "ok": True, "error": None, **record})
        except Exception as exc:  # noqa: BLE001 - out of memory at one length is that row's result
            out.append({"seq": seq, "ok": False, "error": error_line(exc)})
            _free()
    return {"rows": out}


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


MEASURES = {"train": train, "infer": infer}
JOBS = {"rows": rows, "matmul_peak": matmul_peak}


def main(argv: list[str]) -> int:
    return serve(argv, lambda job: JOBS["rows" if "seqs" in job else job["job"]](job))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
