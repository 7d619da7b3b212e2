"""Benchmarks: how fast is each backend that passed parity, and how much memory does it take?

Modes: `kernel` (the attention function alone at the model's shapes, forward and forward+backward),
`train` (one training step of the model) and `infer` (prefill and per-token decode). Each backend runs in a child
process of its own (every length in it, each with its own peak-memory baseline), after warm-up, synchronized (CUDA
events on GPU), repeated; the median and the quartiles are reported. Results carry the facts snapshot and
versioned backend names. Kernel TFLOP/s use FlashAttention's counting (forward 4*B*S^2*H*D, halved when
causal; backward 2.5x forward); a figure above the device's measured matmul peak is a timing bug and is
reported as such, never as a result.

At 256 tokens attention is a small share of a 2-3B model's training step (about 1-3% of its FLOPs): the
kernel rows show where a backend wins; the train rows show what that is worth in a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attnpick.backends.registry import BACKEND_NAMES, CATALOG, REFERENCE, is_loader
from attnpick.decide.decision import Candidate, Decision, Reason, Request, assess_one, choose
from attnpick.decide.facts import EnvFacts
from attnpick.decide.probe import collect_facts
from attnpick.errors import UsageError
from attnpick.load.smoke import runnability
from attnpick.measure.parity import backend_names, verify
from attnpick.model import tiny
from attnpick.model.config import check_context
from attnpick.model.options import ModelOptions
from attnpick.model.resolve import MAX_SEQ_LENGTH_LIMIT, Prepared, as_prepared, torch_device
from attnpick.util import files, plots
from attnpick.util.options import option
from attnpick.util.subproc import BENCH_TIMEOUT_S, run_child

CHILD_MODULE = "attnpick.measure._bench_child"
MODES = ("kernel", "train", "infer")
PEAK_MARGIN = 1.05  # allowance for the matmul peak's own measurement noise


@dataclass(frozen=True)
class BenchRow:
    backend: str
    version: str
    seq: int
    ok: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "version": self.version, "seq": self.seq, "ok": self.ok,
                "error": self.error, **self.metrics}


@dataclass(frozen=True)
class BenchReport:
    model: str
    mode: str
    dtype: str
    batch: int
    shape: dict[str, int]
    device: str
    rows: tuple[BenchRow, ...]
    matmul_peak_tflops: float | None
    excluded: dict[str, Reason]
    facts: EnvFacts

    def row(self, backend: str, seq: int) -> BenchRow | None:
        return next((r for r in self.rows if r.backend == backend and r.seq == seq), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "mode": self.mode, "dtype": self.dtype, "batch": self.batch, "shape": self.shape,
            "device": self.device, "matmul_peak_tflops": self.matmul_peak_tflops,
            "rows": [r.to_dict() for r in self.rows],
            "excluded": {name: reason.to_dict() for name, reason in self.excluded.items()},
            "note": "At 256 tokens attention is ~1-3% of a 2-3B model's training FLOPs; padding waste and the "
                    "rest of the step matter more than the kernel there.",
            "facts": self.facts.to_dict(),
        }


def attention_flops(batch: int, heads: int, seq: int, head_dim: int, causal: bool = True) -> tuple[float, float]:
    """(forward, forward+backward) FLOPs, FlashAttention's counting."""
    forward = 4 * batch * seq * seq * heads * head_dim / (2 if causal else 1)
    return forward, forward * 3.5


def backend_version(facts: EnvFacts, cand: Candidate) -> str:
    """'flash_attention_2 (flash-attn 2.8.3)', 'flash_attention_2 (hub kernels-community/flash-attn2 v4)',
    'sdpa (torch 2.13.0)': which provider, at which version, a row measured."""
    if cand.kernel is not None and cand.provider == "hub":
        return f"{cand.backend} (hub {cand.kernel.repo} v{cand.kernel.version})"
    dist = CATALOG[cand.backend].distribution
    if dist:
        return f"{cand.backend} ({dist} {facts.package(dist).version})"
    return f"{cand.backend} (torch {facts.torch})"


def bench(model: str | Prepared = tiny.NAME, seq_lens: tuple[int, ...] = (256, 1024, 4096), batch: int = 1,
          mode: str = "kernel", backends: list[str] | None = None, dtype: str | None = None, lora: bool = False,
          facts: EnvFacts | None = None, repeats: int | None = None, warmup: int | None = None,
          verify_first: bool = True, timeout_s: float = BENCH_TIMEOUT_S, decision: Decision | None = None
          ) -> BenchReport:
    """Measure every backend that runs here and passed parity, at each sequence length.

    Args:
        model: a name as for `load_model`, or a model prepared already (its flags reach verify and the train and
            infer children); kernel mode uses only its attention shapes.
        seq_lens: sequence lengths to measure.
        batch: batch size.
        mode: "kernel", "train" or "infer".
        backends: names to measure (default: every eligible one, pinned SDPA kernels too; the reference always).
        dtype: default: the device's best.
        lora: train mode: attach a LoRA (r=16, all linear layers) and train it only.
        facts, repeats, warmup, timeout_s: this machine (probed when None); timed runs, untimed runs (defaults by
            device) and seconds per child.
        verify_first: run `attnpick verify` and drop backends that fail parity.
        decision: the caller's decision; its dtype is the measured dtype.

    Returns:
        A `BenchReport`.
    """
    check_bench_values(seq_lens, batch, repeats, mode)
    prepared = as_prepared(model)
    check_context(prepared.folder, max(seq_lens), prepared.name, "--seq-lens")
    facts = facts or collect_facts()
    decision = decision or choose(facts, Request.from_names(None, dtype), prepared.model_facts)
    on_gpu = facts.device.type in ("cuda", "rocm")
    timing = {"warmup": warmup or (5 if on_gpu else 1), "repeats": repeats or (20 if on_gpu else 5)}
    names, excluded = _measurable(backends, mode, facts, prepared, decision.dtype)
    if verify_first:
        names, excluded = _verified(names, excluded, prepared, facts, decision)
    peak_job = {"job": "matmul_peak", "device": torch_device(facts), "dtype": decision.dtype, **timing}
    peaks = [_matmul_peak(peak_job, timeout_s)] if mode == "kernel" else []
    rows = _measure(names, seq_lens, mode, batch, lora, prepared, facts, decision.dtype, timing, timeout_s)
    peak = None
    if mode == "kernel":
        peaks.append(_matmul_peak(peak_job, timeout_s))  # before and after the rows: one busy moment can't set it
        peak = max((p for p in peaks if p is not None), default=None)
        rows = [_above_peak(row, peak) for row in rows]
    heads, kv_heads, head_dim = prepared.model_facts.attention_shape
    shape = {"heads": heads, "kv_heads": kv_heads, "head_dim": head_dim}
    return BenchReport(prepared.name, mode, decision.dtype, batch, shape, facts.device.name or facts.device.type,
                       tuple(rows), peak, excluded, facts)


def _measurable(backends: list[str] | None, mode: str, facts: EnvFacts, prepared: Prepared,
                dtype: str) -> tuple[list[str], dict[str, Reason]]:
    """The backends to time: those named, else every one that runs here (its smoke run passes; a model loader only
    where a whole model runs), and the reference, against which every speedup is taken."""
    excluded: dict[str, Reason] = {}
    names = list(backends or [])
    if backends is None:
        for name in BACKEND_NAMES:
            if is_loader(name) and mode == "kernel":
                continue  # a model loader (Unsloth), not an attention function
            runs = runnability(name, facts, prepared.model_facts, dtype)
            if runs.ok:
                names.append(name)
            elif runs.stage == "smoke":
                excluded[name] = runs.reasons[0]
    if REFERENCE not in names:
        names.append(REFERENCE)
    return names, excluded


def _verified(names: list[str], excluded: dict[str, Reason], prepared: Prepared, facts: EnvFacts,
              decision: Decision) -> tuple[list[str], dict[str, Reason]]:
    """`names` without the backends that fail parity here (or could not be checked), each with its reason."""
    report = verify(prepared, backends=[b for b in names if not is_loader(b)], dtype=decision.dtype, facts=facts,
                    decision=decision)
    excluded = {**excluded, **{r.backend: r.reason() for r in report.results if not r.ok},
                **{k: v for k, v in report.skipped.items() if k in names}}
    return [b for b in names if b not in excluded], excluded


def _measure(names: list[str], seq_lens: tuple[int, ...], mode: str, batch: int, lora: bool, prepared: Prepared,
             facts: EnvFacts, dtype: str, timing: dict[str, int], timeout_s: float) -> list[BenchRow]:
    """One child per backend, every length in it (the model loads once); rows in (length, backend) order."""
    heads, kv_heads, head_dim = prepared.model_facts.attention_shape
    rows: list[BenchRow] = []
    for name in names:
        cand = assess_one(name, facts, dtype, prepared.model_facts, origin="bench") if name in CATALOG else None
        job = {"job": mode, "backend": name, "attn_implementation": (cand.implementation if cand else None) or name,
               "device": torch_device(facts), "dtype": dtype, "batch": batch, "seqs": list(seq_lens),
               "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "model": prepared.load_arguments(),
               "lora": lora, **timing}
        rows += _rows(job, backend_version(facts, cand) if cand else name, timeout_s)
    return sorted(rows, key=lambda r: (seq_lens.index(r.seq), names.index(r.backend)))


def _matmul_peak(job: dict[str, Any], timeout_s: float) -> float | None:
    child = run_child(CHILD_MODULE, job, timeout_s)
    return child.record["tflops"] if child.record and child.record.get("ok") else None


def _above_peak(row: BenchRow, peak: float | None) -> BenchRow:
    """A kernel row faster than the device's matmul ceiling is a timing bug, never a result."""
    if not row.ok or peak is None:
        return row
    best = max(row.metrics["forward"]["tflops"], row.metrics["forward_backward"]["tflops"])
    if best <= peak * PEAK_MARGIN:
        return row
    return BenchRow(row.backend, row.version, row.seq, False, row.metrics,
                    error=f"timing bug: {best:.2f} TFLOP/s is above the measured matmul peak {peak:.2f}")


def _rows(job: dict[str, Any], version: str, timeout_s: float) -> list[BenchRow]:
    """One backend's child: a row per length (a child that died or overran fails every length it had left)."""
    backend, seqs = job["backend"], job["seqs"]
    child = run_child(CHILD_MODULE, job, timeout_s)
    record = child.record
    if child.timed_out or record is None or not record.get("ok"):
        if child.timed_out:
            error = f"did not finish within {timeout_s:.0f}s"
        elif record is None:
            error = f"child {child.describe_exit()}: {child.stderr_tail}"
        else:
            error = record.get("error")
        return [BenchRow(backend, version, seq, False, error=error) for seq in seqs]
    return [_row(job, version, measured) for measured in record["rows"]]


def _row(job: dict[str, Any], version: str, measured: dict[str, Any]) -> BenchRow:
    backend, seq = job["backend"], measured.pop("seq")
    if not measured.pop("ok"):
        return BenchRow(backend, version, seq, False, error=measured.get("error"))
    measured.pop("error", None)
    if job["job"] == "kernel":
        fwd, fwd_bwd = attention_flops(job["batch"], job["heads"], seq, job["head_dim"])
        measured["forward"]["tflops"] = fwd / measured["forward"]["median_s"] / 1e12
        measured["forward_backward"]["tflops"] = fwd_bwd / measured["forward_backward"]["median_s"] / 1e12
    return BenchRow(backend, version, seq, True, measured)


def speedups(report: BenchReport) -> dict[str, dict[int, float]]:
    """Per backend and sequence length: the reference's time / the backend's time (the mode's main measurement)."""
    key = {"kernel": "forward_backward", "train": "step", "infer": "prefill"}[report.mode]
    out: dict[str, dict[int, float]] = {}
    for row in report.rows:
        base = report.row(REFERENCE, row.seq)
        if row.ok and base is not None and base.ok:
            out.setdefault(row.backend, {})[row.seq] = base.metrics[key]["median_s"] / row.metrics[key]["median_s"]
    return out


def plot(report: BenchReport, path: str) -> None:
    """A PNG: speedup over eager and peak memory per sequence length."""
    with plots.pyplot() as plt:
        from matplotlib.ticker import NullLocator

        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        for backend, by_seq in sorted(speedups(report).items()):
            seqs = sorted(by_seq)
            left.plot(seqs, [by_seq[s] for s in seqs], marker="o", label=backend)
        for backend in sorted({r.backend for r in report.rows}):
            rows = sorted((r for r in report.rows if r.backend == backend and r.ok), key=lambda r: r.seq)
            right.plot([r.seq for r in rows], [max(r.metrics["peak_mb"], 1e-3) for r in rows], marker="o",
                       label=backend)
        what = {"kernel": "attention forward+backward", "train": "training step", "infer": "prefill"}[report.mode]
        left.set(xscale="log", xlabel="sequence length", ylabel=f"speedup over eager ({what})",
                 title=f"{report.model}, {report.dtype}, batch {report.batch}")
        left.axhline(1.0, color="grey", lw=0.8, ls="--")
        right.set(xscale="log", yscale="log", xlabel="sequence length", ylabel="peak memory (MiB)",
                  title=f"{report.device}")
        ticks = sorted({r.seq for r in report.rows})
        for axis in (left, right):
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize=8)
            axis.xaxis.set_minor_locator(NullLocator())
            axis.set_xticks(ticks, [str(t) for t in ticks])
        plots.save(fig, path)


def fmt_seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"


def spread(stats: dict[str, float]) -> str:
    """Interquartile range as a percentage of the median."""
    if not stats.get("median_s"):
        return "-"
    return f"±{50 * (stats['q3_s'] - stats['q1_s']) / stats['median_s']:.0f}%"


def check_bench_values(seq_lens: Any, batch: Any, repeats: Any, mode: str) -> None:
    """Refuse what cannot be measured, before any work: one message naming the option."""
    if mode not in MODES:
        raise UsageError(f"Unknown --mode {mode!r}. Choose one of: {', '.join(MODES)}.")
    if not seq_lens or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_SEQ_LENGTH_LIMIT
                               for n in seq_lens):
        raise UsageError(f"--seq-lens must be token counts from 1 to {MAX_SEQ_LENGTH_LIMIT}, got "
                         f"{','.join(map(str, seq_lens or ())) or 'none'}.")
    for value, name in ((batch, "--batch"), (repeats, "--repeats")):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UsageError(f"{name} must be a positive whole number, got {value!r}.")


@dataclass
class BenchConfig(ModelOptions):
    """Every option of `attnpick bench`, with its help line; `run()` checks them and measures."""

    seq_lens: str = option("256,1024,4096", "sequence lengths to measure", metavar="A,B,C")
    batch: int = option(1, "batch size", metavar="N")
    mode: str = option("kernel", "kernel: the attention op alone; train: a training step; infer: prefill and decode",
                       choices=MODES)
    backend: list[str] = option([], "backends to measure (default: every one that runs here)", kind="backends")
    dtype: str | None = option(None, "compute dtype", kind="dtype")
    lora: bool = option(False, "train mode: train a LoRA only", action="store_true")
    repeats: int | None = option(None, "timed repeats per measurement (default: 20 GPU, 5 CPU)", metavar="N",
                                 type=int)
    no_verify: bool = option(False, "skip the parity check before timing", action="store_true")
    plot: str | None = option(None, "also write a PNG of speedup over eager and peak memory", metavar="FILE.png")

    def lengths(self) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in self.seq_lens.split(",") if x.strip())
        except ValueError:
            raise UsageError(f"--seq-lens must be comma-separated token counts, got {self.seq_lens!r}.") from None

    def validate(self) -> None:
        self.validate_model()
        check_bench_values(self.lengths(), self.batch, self.repeats, self.mode)
        Request.from_names(None, self.dtype)
        backend_names(self.backend)
        if self.plot:
            if not self.plot.lower().endswith(".png"):
                raise UsageError(f"--plot writes a PNG; give a file name ending in .png, got {self.plot!r}.")
            files.check_writable_file(self.plot, "--plot")

    def run(self) -> BenchReport:
        self.validate()
        dtype = Request.from_names(None, self.dtype).dtype
        report = bench(self.prepare(), seq_lens=self.lengths(), batch=self.batch, mode=self.mode,
                       backends=backend_names(self.backend), dtype=dtype, lora=self.lora, repeats=self.repeats,
                       verify_first=not self.no_verify)
        if self.plot:
            plot(report, self.plot)
        return report
