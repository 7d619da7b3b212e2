"""The one child-process mechanism: run `python -m MODULE` in its own process group with a timeout, read back
its marked result lines, and stop it as a whole tree on every path out.

Import checks, smoke runs and benchmarks all run here, so a crash (signal), a hang, or a library that prints
banners on import never takes the caller down or garbles its output: the caller turns what happened into a
reason. Each child prints its results as lines starting with `MARKER` followed by one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attnpick.errors import UsageError, first_line

MARKER = "ATTNPICK-RESULT "
IMPORT_TIMEOUT_S = 180.0
SMOKE_TIMEOUT_S = 300.0
BENCH_TIMEOUT_S = 600.0
# After a kill, how long to wait for the pipes to close before giving up on a grandchild that holds them.
KILL_WAIT_S = 5.0


@dataclass(frozen=True)
class ChildResult:
    records: tuple[dict[str, Any], ...]
    returncode: int | None
    timed_out: bool
    stderr_tail: str = ""

    @property
    def record(self) -> dict[str, Any] | None:
        """The last result line, or None when the child printed none."""
        return self.records[-1] if self.records else None

    def describe_exit(self) -> str:
        """'died of SIGABRT', 'exited with code 1 without a result'."""
        code = self.returncode
        if code is not None and code < 0:
            try:
                return f"died of {signal.Signals(-code).name}"
            except ValueError:
                return f"died of signal {-code}"
        return f"exited with code {code} without a result"


def child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONWARNINGS="ignore", TOKENIZERS_PARALLELISM="false", PYTHONIOENCODING="utf-8")


class Child:
    """One `python -m MODULE ARGS...` in a process group of its own (POSIX session, Windows
    CREATE_NEW_PROCESS_GROUP), killed as a tree when it overruns or when the caller leaves the `with` block."""

    def __init__(self, module: str, args: list[str]) -> None:
        group: dict[str, Any] = (
            {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" else {"start_new_session": True}
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", env=child_env(), **group,
        )

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()

    def wait(self, timeout_s: float) -> ChildResult:
        """Wait at most `timeout_s` seconds; on overrun kill the tree and report `timed_out`."""
        try:
            out, err = self.proc.communicate(timeout=max(timeout_s, 0.01))
        except subprocess.TimeoutExpired:
            out, err = self.kill()
            return ChildResult(parse_records(out), self.proc.returncode, True, _tail(err))
        return ChildResult(parse_records(out), self.proc.returncode, False, _tail(err))

    def kill(self) -> tuple[str, str]:
        """Kill the child and everything it started; whatever it printed so far."""
        kill_tree(self.proc)
        try:
            return self.proc.communicate(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            # A grandchild outside the group still holds the pipes: stop reading, keep what we have.
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
            self.proc.wait(timeout=KILL_WAIT_S)
            return "", ""


def kill_tree(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the child's process group (POSIX), `taskkill /T` its tree (Windows), else kill the child."""
    killpg = getattr(os, "killpg", None)
    try:
        if killpg is not None:
            killpg(proc.pid, signal.SIGKILL)
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)
            return
    except (ProcessLookupError, PermissionError, OSError):
        pass
    with contextlib.suppress(OSError):
        proc.kill()


def parse_records(out: str | None) -> tuple[dict[str, Any], ...]:
    records = []
    for line in (out or "").splitlines():
        if line.startswith(MARKER):
            try:
                record = json.loads(line[len(MARKER):])
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return tuple(records)


def _tail(err: str | None) -> str:
    return first_line(err, last=True)


def run_child(module: str, job: dict[str, Any], timeout_s: float) -> ChildResult:
    """Run one child with a JSON job as its argument and wait for it (at most `timeout_s`)."""
    with Child(module, [json.dumps(job)]) as child:
        return child.wait(timeout_s)


def emit(record: dict[str, Any]) -> None:
    """The child side: print one marked result line."""
    sys.stdout.write(MARKER + json.dumps(record) + "\n")
    sys.stdout.flush()


def error_line(exc: BaseException) -> str:
    """The last line of an exception as Python prints it: 'ImportError: ...undefined symbol...'."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()[:2000]


def serve(argv: list[str], run: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """The child side of `run_child`: run `run(job)` on the JSON job in argv[0] and emit one result, with any
    exception's last line as the error (the parent decides what it means)."""
    job = json.loads(argv[0])
    try:
        record = {"ok": True, "error": None, **run(job)}
    except BaseException as exc:  # noqa: BLE001 - any failure is the fact the parent reports
        record = {"ok": False, "error": error_line(exc)}
    emit(record)
    return 0


def check_timeout(seconds: float, option: str) -> float:
    """A timeout given by the user: a finite number of seconds above zero."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds) \
            or seconds <= 0:
        raise UsageError(f"{option} must be a finite number of seconds above 0, got {seconds!r}.")
    return float(seconds)
