"""scripts/gpu_check.py, the GPU check sized for the lent GPU machine: its control flow runs here (`--dry-run`), a
step past its budget is stopped with every process it started, and what finished is merged whatever stops."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _driver():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_step_past_its_budget_is_stopped_with_every_process_it_started(tmp_path):
    """attnpick's children run in sessions of their own: `timeout` or a process-group kill would leave them holding
    the GPU. The whole tree goes."""
    gpu_check = _driver()
    pid_file = tmp_path / "pid"
    job = json.dumps({"do": "hang", "pid_file": str(pid_file)})
    code = ("import sys, time; from attnpick.util.subproc import Child\n"
            f"child = Child('tests.children', [{job!r}])\n"  # a session of its own, as smoke and bench children
            "time.sleep(3600)")
    step = gpu_check.Step("hangs", [sys.executable, "-c", code], [], 5, json_out=False)
    start = time.monotonic()
    result = gpu_check.run_step(step, step.gpu, 5, tmp_path, tmp_path / "log.txt")
    assert result["timed_out"] and time.monotonic() - start < 30
    grandchild = int(pid_file.read_text())
    time.sleep(0.5)
    assert not _alive(grandchild), "the step's own child (its own session) outlived the step"
    assert "hangs: timed out" in (tmp_path / "log.txt").read_text()


@pytest.mark.slow
def test_the_dry_run_passes_on_this_cpu_within_five_minutes(tmp_path):
    """The run without Unsloth here; in the Unsloth lane (where Unsloth imports) the run with it."""
    unsloth = importlib.util.find_spec("unsloth") is not None
    start = time.monotonic()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--dry-run", "--out", str(tmp_path),
                           *(["--unsloth"] if unsloth else [])],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert seconds < 300, f"the dry run took {seconds:.0f}s"
    results = json.loads((tmp_path / "results.json").read_text())
    names = [s.name for s in _driver().steps(tmp_path, tmp_path, unsloth=unsloth)]
    assert list(results["steps"]) == names and all(r["exit_code"] == 0 for r in results["steps"].values())
    trained = results["steps"]["qlora-unsloth" if unsloth else "qlora-auto"]
    assert trained["load_report"]["confirmation"]["ok"]  # the kernel that ran is recorded
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) <= 8 and {"results.json", "log.txt", "train.png"} <= set(files), files
