"""The run's folder: what may be written where (never over another run; incomplete checkpoints never block),
and the files a finished run leaves (reports as UTF-8 JSON written atomically, the loss curve)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from attnpick import files, plots
from attnpick.errors import UsageError
from attnpick.training.trainer import COMPLETE, checkpoint_step, latest_complete_checkpoint

logger = logging.getLogger(__name__)



def incomplete_checkpoints(out: Path) -> list[Path]:
    """`checkpoint-N` folders without a completion marker: a save that never finished (a crash, Ctrl-C)."""
    return [p for p in out.glob("checkpoint-*") if checkpoint_step(p) is not None and not (p / COMPLETE).is_file()]


def prepare_output(output: str, resume: bool) -> tuple[Path | None, bool, list[str]]:
    """Check `--output` before anything loads: (checkpoint to resume from, whether the folder was created now,
    notes for the user). Refuses to overwrite another run; discards incomplete checkpoints, which hold nothing
    usable and must not block a run."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {output!r} is a file, not a folder. Give a folder path for the run.")
    notes: list[str] = []
    if resume and not out.is_dir():
        raise UsageError(f"--resume: output folder {output!r} does not exist. Drop --resume to start a new run.")
    if out.is_dir():
        torn = incomplete_checkpoints(out)
        others = [p for p in out.iterdir() if p not in torn]
        if not resume and others:
            raise UsageError(f"Output folder {output!r} already exists. Pass --resume to continue it, or choose "
                             "another --output; attnpick never overwrites a run.")
        for folder in torn:
            files.discard_folder(folder)
            notes.append(f"discarded {folder.name}: its save never finished")
    created = files.check_writable(out, "--output")
    checkpoint = latest_complete_checkpoint(out) if resume else None
    if resume and checkpoint is None:
        notes.append(f"--resume: {output} has no complete checkpoint; starting from scratch")
    return checkpoint, created, notes


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
