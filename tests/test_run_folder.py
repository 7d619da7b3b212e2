"""One run per output folder (an OS lock; a second train or --resume is exit 2 naming the first), --resume only on
a run and never on a complete one, a full disk as one line naming the last complete checkpoint, files written
with the user's usual permissions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import train_cli


def test_two_runs_on_one_folder_leave_one_run_and_one_exit_2(tmp_path):
    import time

    out = tmp_path / "shared"
    first = subprocess.Popen([sys.executable, "-m", "attnpick", "train", "--output", str(out), "--max-steps", "120",
                              "--batch-size", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "attnpick-run.json").is_file() and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    others = [subprocess.Popen([sys.executable, "-m", "attnpick", "train", "--output", str(out), *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
              for extra in (["--max-steps", "3"], ["--resume", "--max-steps", "3"])]
    results = [p.communicate(timeout=900) for p in others]
    _, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-3000:]
    for proc, (_, stderr) in zip(others, results, strict=True):
        assert proc.returncode == 2 and "being written by another attnpick train (pid" in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1
    assert json.loads((out / "train_report.json").read_text())["steps"] == 120


def test_resume_only_continues_a_run_and_a_complete_run_is_left_as_it_is(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    proc = train_cli("--output", str(notes), "--resume")
    assert proc.returncode == 2 and "is not a run of attnpick train" in proc.stderr, proc.stderr
    assert [p.name for p in notes.iterdir()] == ["notes.txt"]
    done = tmp_path / "done"
    assert train_cli("--output", str(done), "--max-steps", "3").returncode == 0
    before = (done / "train_report.json").read_bytes()
    proc = train_cli("--output", str(done), "--resume", "--max-steps", "3")
    assert proc.returncode == 2 and "is a complete run (3 steps" in proc.stderr, proc.stderr
    assert (done / "train_report.json").read_bytes() == before
    assert oct((done / "train_report.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not 0o600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_full_disk_during_a_checkpoint_is_one_line_naming_the_last_complete_one(tmp_path, monkeypatch):
    """torch.save on a full file system fails with "unexpected pos"; the second checkpoint's save fails here."""
    import torch

    import attnpick
    from attnpick.util.files import DiskFullError

    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        if "checkpoint-4" in str(f):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 512 vs 448")
        calls.append(str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(DiskFullError, match="the last complete checkpoint is checkpoint-2"):
        attnpick.train(output=str(tmp_path / "run"), max_steps=6, save_steps=2, progress=False)
    assert any("checkpoint-2" in c for c in calls)
