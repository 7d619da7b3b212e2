"""The run's folder: what may be written where (never over another run; incomplete checkpoints never block),
and the files a finished run leaves (reports as UTF-8 JSON written atomically, the loss curve)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from attnpick.errors import UsageError, first_line
from attnpick.export.adapters import RUN_MARKER
from attnpick.model.config import check_adapter_files
from attnpick.training.trainer import COMPLETE, checkpoint_step, latest_complete_checkpoint
from attnpick.util import files, plots

logger = logging.getLogger(__name__)



def incomplete_checkpoints(out: Path) -> list[Path]:
    """`checkpoint-N` folders without a completion marker: a save that never finished (a crash, Ctrl-C)."""
    return [p for p in out.glob("checkpoint-*") if checkpoint_step(p) is not None and not (p / COMPLETE).is_file()]


LOCK = ".attnpick-run.lock"  # held while a run writes the folder (an OS lock: a killed process releases it)
OURS = (RUN_MARKER, LOCK)


def lock_run(out: Path) -> Any:
    """The folder's lock, taken now or refused: a second `train` (or `--resume`) on a folder another one is writing
    is exit 2 naming that one. The OS releases the lock of a killed process, so a stale lock never blocks."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(out / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        owner = _owner(out)
        raise UsageError(f"--output {str(out)!r} is being written by another attnpick train{owner}. Wait for it to "
                         "finish, or choose another --output.") from None
    return lock


def _owner(out: Path) -> str:
    try:
        doc = json.loads((out / RUN_MARKER).read_text(encoding="utf-8"))
        return f" (pid {doc['pid']} on {doc['host']}, started {doc['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def mark_run(out: Path) -> None:
    files.write_json(out / RUN_MARKER, {"pid": os.getpid(), "host": socket.gethostname(),
                                        "started": time.strftime("%Y-%m-%d %H:%M:%S")})


def is_run_folder(out: Path) -> bool:
    """A folder attnpick train wrote: its marker, a report, or a complete checkpoint (runs from before the marker)."""
    return (out / RUN_MARKER).is_file() or (out / "train_report.json").is_file() or \
        latest_complete_checkpoint(out) is not None


def prepare_output(output: str, resume: bool, max_steps: int = -1,
                   lock: bool = True) -> tuple[Path | None, bool, list[str], Any]:
    """Check `--output` before anything loads and take it: (checkpoint to resume from, whether the folder was
    created now, notes for the user, the held lock or None). Refuses to overwrite another run, to resume a folder
    attnpick did not write or a run that is complete; discards incomplete checkpoints, which hold nothing usable
    and must not block a run. `lock=False` (ranks other than 0): check only."""
    if not str(output).strip():
        raise UsageError("--output is empty: give a folder path for the run, e.g. --output runs/first.")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {output!r} is a file, not a folder. Give a folder path for the run.")
    notes: list[str] = []
    if resume and not out.is_dir():
        raise UsageError(f"--resume: output folder {output!r} does not exist. Drop --resume to start a new run.")
    created = files.check_writable(out, "--output")
    held = lock_run(out) if lock else None
    try:
        torn = incomplete_checkpoints(out)
        others = [p for p in out.iterdir() if p not in torn and p.name not in OURS]
        if not resume and others:
            raise UsageError(f"Output folder {output!r} already exists. Pass --resume to continue it, or choose "
                             "another --output; attnpick never overwrites a run.")
        if resume and others and not is_run_folder(out):
            raise UsageError(f"--resume: {output!r} is not a run of attnpick train (no {RUN_MARKER}, report or "
                             "checkpoint). Choose the run's own folder, or drop --resume and give a new --output.")
        if resume:
            _refuse_complete(out, max_steps)
        if lock:
            for folder in torn:
                files.discard_folder(folder)
                notes.append(f"discarded {folder.name}: its save never finished")
            mark_run(out)
        checkpoint = latest_complete_checkpoint(out) if resume else None
        if resume and checkpoint is None:
            notes.append(f"--resume: {output} has no complete checkpoint; starting from scratch")
        if checkpoint is not None:
            check_checkpoint(checkpoint)
    except BaseException:
        release(out, held, created)
        raise
    return checkpoint, created, notes, held


# Written by the Trainer as a full pickle (its arguments) and never read back on resume.
UNREAD_PICKLES = ("training_args.bin",)


def check_checkpoint(folder: Path) -> None:
    """What `--resume` reads from a checkpoint, checked before anything loads: its adapter files
    (`check_adapter_files`) and every torch file the Trainer loads (optimizer, scheduler, random states), each
    read by torch's weights-only loader with the globals the Trainer allows (numpy's random state), which refuses a
    pickle that holds anything else.
    A file that fails is one line naming it."""
    import torch  # heavy: only on --resume
    from transformers.trainer_pt_utils import safe_globals  # the numpy types the Trainer's own loads allow

    check_adapter_files(folder)
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".pt", ".pth", ".bin")
                       and p.name not in UNREAD_PICKLES):
        try:
            with safe_globals():
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - UnpicklingError, a truncated zip, ...: unusable either way
            raise UsageError(f"--resume: {path} is not a checkpoint file torch reads safely ({first_line(exc)}). "
                             f"Delete {folder.name} to resume from the checkpoint before it, or start a new "
                             "--output.") from None


def release(out: Path, held: Any, created: bool) -> None:
    """Let the folder go. A folder that holds nothing of a run (a refused or failed start) loses the lock and marker
    attnpick put there, and is removed when attnpick created it."""
    if held is not None:
        held.release()
    try:
        leftovers = [p for p in out.iterdir() if p.name not in OURS]
    except OSError:
        return
    if leftovers and (out / RUN_MARKER).is_file():
        return
    if not leftovers:
        (out / RUN_MARKER).unlink(missing_ok=True)
    (out / LOCK).unlink(missing_ok=True)
    if created:
        remove_if_empty(out)


def _refuse_complete(out: Path, max_steps: int) -> None:
    """`--resume` of a finished run changes nothing: it says so (raise --max-steps to train further)."""
    try:
        report = json.loads((out / "train_report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    steps = report.get("steps") if isinstance(report, dict) else None
    if isinstance(steps, int) and (max_steps == -1 or steps >= max_steps):
        loss = report.get("train_loss")
        raise UsageError(f"--resume: {out} is a complete run ({steps} steps, train_loss "
                         f"{loss if loss is None else f'{loss:.4f}'}); nothing changed. Give a larger --max-steps to "
                         "train further, or choose another --output.")


def write_reports(out: Path, train_report: dict[str, Any], load_report: dict[str, Any],
                  losses: list[tuple[int, float]], title: str, eval_losses: list[tuple[int, float]] = ()) -> None:
    """metrics.json, load_report.json, train_report.json (UTF-8, atomic) and loss.png."""
    files.write_json(out / "load_report.json", load_report)
    files.write_json(out / "metrics.json", {k: train_report[k] for k in (
        "steps", "train_loss", "losses", "eval_loss", "eval_losses", "seconds", "tokens_seen", "tokens_per_s")})
    files.write_json(out / "train_report.json", train_report)
    loss_plot(losses, out / "loss.png", title, list(eval_losses))


def loss_plot(losses: list[tuple[int, float]], path: Path, title: str,
              eval_losses: list[tuple[int, float]] = ()) -> None:
    """The training loss per step, and the eval loss where there is one."""
    with plots.pyplot() as plt:
        fig, axis = plt.subplots(figsize=(6.5, 3.8))
        for points, label in ((losses, "training"), (eval_losses, "eval (answer tokens)")):
            if points:
                steps, values = zip(*points, strict=True)
                axis.plot(steps, values, marker=".", label=label)
        if eval_losses:
            axis.legend()
        axis.set(xlabel="step", ylabel="loss", title=title)
        axis.grid(True, alpha=0.3)
        plots.save(fig, path)


def remove_if_empty(out: Path) -> None:
    """After a failed run that created `out` and wrote nothing into it: leave no empty folder behind."""
    with contextlib.suppress(OSError):
        out.rmdir()
