"""What breaks on Windows, simulated here where it can be (the README lists what is verified only by reading):
no `resource` module, a console that cannot encode Korean, fsync only on handles opened for writing, no fsync of a
folder, a folder that cannot be deleted while another process maps a file in it, plots with Korean titles."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from attnpick.errors import UsageError
from attnpick.util import files

ROOT = Path(__file__).resolve().parents[1]


def test_nothing_needs_the_posix_only_resource_module():
    code = ("import sys; sys.modules['resource'] = None\n"
            "import attnpick.cli.main, attnpick.measure.bench, attnpick.measure.policy\n"
            "import attnpick.measure._bench_child as child\n"
            "child._status_mb = lambda field: None  # no /proc either, as on Windows\n"
            "print(child._rss_peak_mb())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip()) >= 0.0


def test_a_console_that_cannot_encode_korean_does_not_crash_a_run(tmp_path):
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "attnpick", "train", "--output", str(out), "--max-steps", "2",
                           "--batch-size", "2", "--json"], capture_output=True, env=env, timeout=900,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:].decode("ascii", "replace")
    printed = json.loads(proc.stdout.decode("ascii"))  # \\u escapes: valid JSON on an ASCII console
    written = json.loads((out / "train_report.json").read_text(encoding="utf-8"))
    assert printed["probe"]["text"] == written["probe"]["text"] and "서울" in written["probe"]["text"]
    assert "서울" in (out / "train_report.json").read_text(encoding="utf-8")  # UTF-8 on disk, whatever the locale
    human = subprocess.run([sys.executable, "-m", "attnpick", "train", "--output", str(tmp_path / "run2"),
                            "--max-steps", "2", "--batch-size", "2"], capture_output=True, env=env, timeout=900,
                           stdin=subprocess.DEVNULL)
    assert human.returncode == 0, human.stderr[-3000:].decode("ascii", "replace")


def test_fsync_only_ever_on_handles_opened_for_writing(tmp_path, monkeypatch):
    """Windows raises on os.fsync of a read-only handle (a checkpoint file opened "rb" did that)."""
    real_fsync = os.fsync

    def windows_fsync(fd: int) -> None:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", windows_fsync)
    target = tmp_path / "state.json"
    files.write_json(target, {"step": 4})
    files.fsync_file(target)
    from attnpick.training import trainer

    assert "fsync_file" in Path(trainer.__file__).read_text(encoding="utf-8")  # the checkpoint marker uses it


def test_no_folder_fsync_where_a_folder_cannot_be_opened(tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(files.os, "open", lambda *a, **k: opened.append(a) or (_ for _ in ()).throw(
        PermissionError(13, "Access is denied")))
    monkeypatch.setattr(files.os, "name", "nt")
    files.fsync_folder(tmp_path)
    assert opened == []


def test_replacing_a_folder_tolerates_a_file_another_process_maps(tmp_path, monkeypatch):
    final = tmp_path / "model"
    final.mkdir()
    (final / "model.safetensors").write_text("held open by another process")
    real_rmtree = files.shutil.rmtree

    def windows_rmtree(path, ignore_errors=False, **kwargs):
        if not ignore_errors:
            raise PermissionError(13, "The process cannot access the file because it is being used")

    monkeypatch.setattr(files.shutil, "rmtree", windows_rmtree)
    with files.publish_folder(final, replace=True) as staging:
        (staging / "model.safetensors").write_text("new")
    assert (final / "model.safetensors").read_text() == "new"
    assert [p.name.startswith(files.TRASH_PREFIX) for p in tmp_path.iterdir()].count(True) == 1
    monkeypatch.setattr(files.shutil, "rmtree", real_rmtree)
    with files.publish_folder(tmp_path / "other"):  # the next publish sweeps what the mapped file kept
        pass
    assert not any(p.name.startswith(files.TRASH_PREFIX) for p in tmp_path.iterdir())


def test_a_folder_that_cannot_even_be_renamed_gets_one_clear_message(tmp_path, monkeypatch):
    final = tmp_path / "model"
    final.mkdir()
    real_replace = files.os.replace

    def locked(src, dst):
        if Path(src) == final:
            raise PermissionError(13, "Access is denied")
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", locked)
    with pytest.raises(UsageError, match="Cannot replace .*model.*Close the programs that use it"), \
            files.publish_folder(final, replace=True):
        pass
    assert not any(p.name.startswith(".model.") for p in tmp_path.iterdir())  # no half-built folder left


def test_plots_with_korean_titles_warn_about_nothing(tmp_path):
    from attnpick.training.outputs import loss_plot

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss_plot([(1, 2.0), (2, 1.5)], tmp_path / "loss.png", "엑사원 · sdpa · packing on")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert [str(w.message) for w in caught if "Glyph" in str(w.message) or "glyph" in str(w.message)] == []
