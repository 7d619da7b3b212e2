"""The one child-process mechanism: results through banners, timeouts, process groups, and no child left behind
on any path (a timeout, an exception in the caller, Ctrl-C, a missing os.killpg)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from attnpick.errors import UsageError
from attnpick.util import subproc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _importable_tests(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return True


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_the_result_is_found_among_banners_and_garbage():
    result = subproc.run_child("tests.children", {"do": "noise"}, 60)
    assert not result.timed_out and result.record == {"ok": True, "value": 1}


def test_a_timeout_kills_the_child_and_its_grandchildren(tmp_path):
    job = {"do": "grandchild", "grandchild_file": str(tmp_path / "g"), "pid_file": str(tmp_path / "c")}
    start = time.monotonic()
    result = subproc.run_child("tests.children", job, 3)
    assert result.timed_out and time.monotonic() - start < 3 + subproc.KILL_WAIT_S
    assert wait_gone(int((tmp_path / "c").read_text())) and wait_gone(int((tmp_path / "g").read_text()))


def test_without_os_killpg_a_grandchild_holding_the_pipe_cannot_stall_the_timeout(tmp_path, monkeypatch):
    """Windows has no os.killpg: the child is killed alone (taskkill /T is Windows-only), its grandchild keeps the
    pipe open, and communicate() must not wait for it."""
    monkeypatch.delattr(os, "killpg")
    job = {"do": "grandchild", "grandchild_file": str(tmp_path / "g")}
    start = time.monotonic()
    result = subproc.run_child("tests.children", job, 2)
    took = time.monotonic() - start
    grandchild = int((tmp_path / "g").read_text())
    os.kill(grandchild, signal.SIGKILL)  # this test's own cleanup: on POSIX the group kill would have done it
    assert result.timed_out and took < 2 + 2 * subproc.KILL_WAIT_S + 2


def test_leaving_the_block_by_an_exception_kills_the_child(tmp_path):
    with pytest.raises(RuntimeError), subproc.Child("tests.children", ['{"do": "hang", "pid_file": "'
                                                                        + str(tmp_path / "c") + '"}']):
        deadline = time.monotonic() + 30
        while not (tmp_path / "c").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        raise RuntimeError("the caller fails")
    assert wait_gone(int((tmp_path / "c").read_text()))


def test_ctrl_c_in_the_parent_leaves_no_child(tmp_path):
    script = textwrap.dedent(f"""
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even if started ignoring it
        from attnpick.util import subproc
        subproc.run_child("tests.children", {{"do": "hang", "pid_file": {str(tmp_path / "c")!r}}}, 600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (tmp_path / "c").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    parent.send_signal(signal.SIGINT)
    parent.wait(timeout=30)
    assert wait_gone(int((tmp_path / "c").read_text()))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0, -1, True, "10"])
def test_timeouts_must_be_finite_and_positive(value):
    with pytest.raises(UsageError, match="--smoke-timeout must be a finite number of seconds above 0"):
        subproc.check_timeout(value, "--smoke-timeout")
