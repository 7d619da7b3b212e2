"""attnpick's GPU check, sized for the GPU machine a session may be lent (one H200, 10 minutes a command, 15 in all,
nothing reachable from it): one run of at most 8 minutes without Unsloth, one with it (`--unsloth`).

Each step has its own time budget, and the run has one in all (`--budget`, 450 s): a step gets the smaller of its own
budget and what is left. A step that overruns is stopped with everything it started, attnpick's children included
(they run in process groups of their own, so the whole process tree is killed, not one group). After every step the
results are merged into `results.json`, so whatever stops the run, what finished is there. At most 8 files come back:
results.json, log.txt, gpu-tests.txt and the benchmark plots.

`--dry-run` runs every step's control flow on this CPU with tiny shapes (tiny-exaone, float32, backends a CPU has,
a step or two), so that on the GPU only GPU facts can fail. docs/gpu-check.md says how to run it.

    bash scripts/gpu-check.sh [--unsloth] [--dry-run] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FILES = 8


@dataclass(frozen=True)
class Step:
    """One command: what it runs on the GPU machine and, for `--dry-run`, on a CPU; its budget in seconds; whether
    its standard output is its JSON result."""

    name: str
    gpu: list[str]
    cpu: list[str]
    budget: float
    json_out: bool = True
    attach: Path | None = None  # a file the step writes whose JSON goes into the results too (a run's load report)


def _attnpick(*args: str) -> list[str]:
    return [sys.executable, "-m", "attnpick", *args]


def _train(work: Path, name: str, gpu_args: list[str], cpu_args: list[str], budget: float) -> Step:
    """`attnpick train` as a user runs it: QLoRA (4-bit is train's default) on the embedded data; its load report
    (the attempts, the kernel that ran) goes into the results."""
    base = ["train", "--output", str(work / f"run-{name}"), "--json"]
    return Step(f"qlora-{name}", _attnpick(*base, *gpu_args), _attnpick(*base, *cpu_args), budget,
                attach=work / f"run-{name}" / "load_report.json")


def steps(out: Path, work: Path, unsloth: bool) -> list[Step]:
    """The checks in the order they matter, each on its own budget. `out` gets the files that come back; `work` the
    rest (runs, caches)."""
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/gpu"]
    device = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap", "--format=csv"]
    cpu_device = [sys.executable, "-c", "import platform; print('cpu,', platform.machine())"]
    common = [Step("device", device, cpu_device, 15, json_out=False), Step("doctor", _attnpick("doctor", "--json"),
                                                                          _attnpick("doctor", "--json"), 90)]
    if unsloth:
        return common + [
            Step("load-unsloth", _attnpick("load", "tiny-exaone", "--backend", "unsloth", "--4bit", "--json"),
                 _attnpick("load", "tiny-exaone", "--backend", "unsloth", "--json"), 120),
            _train(work, "unsloth", ["--backend", "unsloth", "--max-steps", "4"],
                   ["--backend", "unsloth", "--max-steps", "1", "--batch-size", "2"], 120),
            Step("train-lora-unsloth", _bench_train(out, ["unsloth", "torch_varlen", "sdpa"], gpu=True),
                 _bench_train(out, ["unsloth", "sdpa"], gpu=False), 150),
        ]
    return common + [
        # the real QLoRA path (4-bit, LoRA, k-bit preparation, bf16) with auto's choice, then with xFormers
        _train(work, "auto", ["--max-steps", "4"], ["--max-steps", "1", "--batch-size", "2"], 90),
        _train(work, "xformers", ["--max-steps", "4", "--backend", "xformers"],
               ["--max-steps", "1", "--batch-size", "2", "--backend", "sdpa"], 90),
        Step("gpu-tests", [*pytest, "-m", "gpu"], pytest, 90, json_out=False),
        Step("kernel", _bench_kernel(out, gpu=True), _bench_kernel(out, gpu=False), 75),
        Step("train-lora", _bench_train(out, ["torch_varlen", "xformers", "flash_attention_2", "sdpa", "eager"],
                                        gpu=True), _bench_train(out, ["sdpa", "eager"], gpu=False), 90),
        Step("verify", _attnpick("verify", "tiny-exaone", "--dtype", "bfloat16", "--json"),
             _attnpick("verify", "tiny-exaone", "--dtype", "float32", "--json"), 60),
        Step("packing", [sys.executable, "benchmarks/packing.py", "--model", "exaone-50m-random", "--steps", "8",
                         "--json"],
             [sys.executable, "benchmarks/packing.py", "--model", "tiny-exaone", "--steps", "1", "--batch-size", "2",
              "--json"], 90),
    ]


KERNEL_ROWS = ["torch_varlen", "xformers", "flash_attention_2", "sdpa", "eager"]  # the rows that decide


def _bench_kernel(out: Path, gpu: bool) -> list[str]:
    """The attention kernel alone at EXAONE-2.4B's shapes, 256 and 2k tokens: one child per backend."""
    rows = KERNEL_ROWS if gpu else ["sdpa", "eager"]
    model, dtype, seqs, extra = ("exaone-2.4b-random", "bfloat16", "256,2048", ["--batch", "4"]) if gpu else \
        ("tiny-exaone", "float32", "16,32", ["--repeats", "1"])
    return _attnpick("bench", model, "--dtype", dtype, "--seq-lens", seqs, *extra, "--no-verify", "--json",
                     *[arg for name in rows for arg in ("--backend", name)], "--plot", str(out / "kernel.png"))


def _bench_train(out: Path, rows: list[str], gpu: bool) -> list[str]:
    """A LoRA training step of EXAONE-2.4B's size at 256 tokens (random weights: timing only)."""
    model, dtype, extra = ("exaone-2.4b-random", "bfloat16", ["--batch", "8", "--repeats", "5"]) if gpu else \
        ("tiny-exaone", "float32", ["--batch", "2", "--seq-lens", "32", "--repeats", "1"])
    seqs = ["--seq-lens", "256"] if gpu else []
    return _attnpick("bench", model, "--mode", "train", "--lora", "--dtype", dtype, *seqs, *extra, "--no-verify",
                     "--json", *[arg for name in rows for arg in ("--backend", name)],
                     "--plot", str(out / "train.png"))


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc: attnpick's children start sessions of their own, so a process
    group or session kill would miss them."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Stop a step and everything it started, taken as one snapshot first so that nothing is orphaned on the way."""
    for pid in [*descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def run_step(step: Step, command: list[str], seconds: float, out: Path, log: Path) -> dict[str, object]:
    """Run one step within `seconds`; its JSON result (or its output's tail), exit code and time."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=max(seconds, 1))
            timed_out = False
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            code, timed_out = None, True
        stdout.seek(0)
        stderr.seek(0)
        text, err = stdout.read().decode("utf-8", "replace"), stderr.read().decode("utf-8", "replace")
    result: dict[str, object] = {"command": command[1:] if command[0] == sys.executable else command,
                                 "exit_code": code, "timed_out": timed_out,
                                 "seconds": round(time.monotonic() - start, 1), "budget_s": round(seconds, 1)}
    if step.json_out:
        try:
            result["result"] = json.loads(text)
        except ValueError:
            result["stdout_tail"] = text[-3000:]
    else:
        result["stdout_tail"] = text[-3000:]
        if step.name == "gpu-tests":
            (out / "gpu-tests.txt").write_text(text + err, encoding="utf-8")
    if code != 0:
        result["stderr_tail"] = err[-3000:]
    if step.attach is not None and step.attach.is_file():
        result[step.attach.stem] = json.loads(step.attach.read_text(encoding="utf-8"))
    with log.open("a", encoding="utf-8") as handle:
        status = "timed out" if timed_out else f"exit {code}"
        handle.write(f"== {step.name}: {status} in {result['seconds']}s (budget {seconds:.0f}s)\n{err[-1500:]}\n")
    return result


def write_results(out: Path, results: dict[str, object]) -> None:
    """results.json, whole or not at all (written after every step)."""
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    tmp.replace(out / "results.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unsloth", action="store_true", help="the second run: Unsloth's steps (carry its wheels)")
    parser.add_argument("--dry-run", action="store_true", help="every step's control flow on this CPU, tiny shapes")
    parser.add_argument("--out", default=os.environ.get("OUT") or "out/gpu", help="where the files go (at most 8)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run (default 450)")
    parser.add_argument("--only", action="append", default=[], help="run only this step (repeatable)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="attnpick-gpu-check-"))
    os.environ.setdefault("ATTNPICK_CACHE_DIR", str(work / "cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["PYTHONUNBUFFERED"] = "1"
    log = out / "log.txt"
    deadline = time.monotonic() + args.budget
    plan = [s for s in steps(out, work, args.unsloth) if not args.only or s.name in args.only]
    results: dict[str, object] = {"run": "unsloth" if args.unsloth else "core", "dry_run": args.dry_run,
                                  "budget_s": args.budget, "steps": {}}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    for step in plan:
        left = deadline - time.monotonic() - 5  # room to merge
        if stopping or left < 5:
            results["steps"][step.name] = {"skipped": "the run's time budget was spent"}  # type: ignore[index]
            continue
        command = step.cpu if args.dry_run else step.gpu
        results["steps"][step.name] = run_step(step, command, min(step.budget, left), out, log)  # type: ignore[index]
        write_results(out, results)
    write_results(out, results)
    kept = sorted(p.name for p in out.iterdir() if p.is_file())
    if len(kept) > MAX_FILES:
        print(f"gpu-check: {len(kept)} files in {out}, more than the {MAX_FILES} that come back", file=sys.stderr)
    failed = [name for name, r in results["steps"].items() if r.get("exit_code") != 0]  # type: ignore[union-attr]
    print(f"gpu-check: {len(plan) - len(failed)} of {len(plan)} steps passed" +
          (f"; not: {', '.join(failed)}" if failed else "") + f" (results in {out / 'results.json'})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
