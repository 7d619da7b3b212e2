"""Run one attnpick child module with a JSON job and a timeout, and read back its marked result line.

The smoke runs and the benchmarks both use it: a crash (signal), a hang or a missing result never takes the
caller down; the caller turns them into reasons.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChildResult:
    record: dict[str, Any] | None
    returncode: int | None
    timed_out: bool
    stderr_tail: str

    def describe_exit(self) -> str:
        """'died of SIGABRT', 'exited with code 1 without a result'."""
        code = self.returncode
        if code is not None and code < 0:
            try:
                return f"died of {signal.Signals(-code).name}"
            except ValueError:
                return f"died of signal {-code}"
        return f"exited with code {code} without a result"


def run_child(module: str, job: dict[str, Any], marker: str, timeout_s: float) -> ChildResult:
    env = dict(os.environ, PYTHONWARNINGS="ignore", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-m", module, json.dumps(job)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return ChildResult(None, proc.returncode, True, "")
    record = None
    for line in out.splitlines():
        if line.startswith(marker):
            record = json.loads(line[len(marker):])
    tail = err.strip().splitlines()[-1][:300] if err.strip() else ""
    return ChildResult(record, proc.returncode, False, tail)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()


def serve(argv: list[str], marker: str, run: Any) -> int:
    """The child side: run `run(job)` on the JSON job in argv[0] and print one marked result line, with any
    exception's last line as the error (the parent decides what it means)."""
    job = json.loads(argv[0])
    try:
        record = {"ok": True, "error": None, **run(job)}
    except BaseException as exc:  # noqa: BLE001 - any failure is the fact the parent reports
        import traceback

        record = {"ok": False, "error": traceback.format_exception_only(type(exc), exc)[-1].strip()[:2000]}
    sys.stdout.write(marker + json.dumps(record) + "\n")
    sys.stdout.flush()
    return 0
