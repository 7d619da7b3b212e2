"""transformers' Trainer with checkpoints that count only once complete, and a rich progress bar.

A checkpoint folder gets a completion marker after every file in it is flushed to disk; `--resume` uses the
newest folder with a marker, so a crash in the middle of a save (or Ctrl-C) leaves the previous one in use.
Both classes are built on first use, so that bad input is refused before transformers is imported.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from attnpick.util import files

COMPLETE = "attnpick-complete.json"


def checkpoint_step(folder: Path) -> int | None:
    """N for a `checkpoint-N` folder, else None."""
    prefix, _, number = folder.name.rpartition("-")
    return int(number) if prefix == "checkpoint" and number.isdigit() else None


def latest_complete_checkpoint(output: Path) -> Path | None:
    """The newest `checkpoint-N` whose completion marker exists; unfinished ones are ignored."""
    done = [p for p in output.glob("checkpoint-*") if checkpoint_step(p) is not None and (p / COMPLETE).is_file()]
    return max(done, key=lambda p: checkpoint_step(p) or 0, default=None)


class TokenCounter:
    """A data collator wrapped to count what the model is fed: every token of every batch, and how many of them
    are real (not padding). With packing the two are equal; with padded batches the gap is the padding waste."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.fed = 0
        self.real = 0

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        batch = self.collator(features)
        self.fed += int(batch["input_ids"].numel())
        self.real += sum(len(f["input_ids"]) for f in features)
        return batch

    @property
    def padding_share(self) -> float | None:
        return 1 - self.real / self.fed if self.fed else None


def trainer_classes() -> tuple[Any, Any, Any]:
    """(Trainer with completion-marked checkpoints, rich progress callback, first-step callback)."""
    from transformers import Trainer, TrainerCallback  # heavy: built when training starts
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class CheckpointingTrainer(Trainer):  # type: ignore[misc]
        """Trainer whose checkpoints count only once a completion marker is written, after every file; eval batches
        go through the collator itself, not the token counter around it (the counts are the training's)."""

        def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
            counted = self.data_collator
            self.data_collator = getattr(counted, "collator", counted)
            try:
                return super().get_eval_dataloader(eval_dataset)
            finally:
                self.data_collator = counted

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            super()._save_checkpoint(model, trial)
            if not self.is_world_process_zero():
                return
            folder = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            for file in folder.rglob("*"):
                if file.is_file():
                    files.fsync_file(file)
            files.fsync_folder(folder)
            files.write_json(folder / COMPLETE, {"step": self.state.global_step})

    class Progress(TrainerCallback):  # type: ignore[misc]
        """A rich progress bar with the loss and non-padding tokens/s."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")
            self.start, self.tokens0 = time.perf_counter(), state.num_input_tokens_seen
            self.progress.start()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "eval_loss" in logs:
                self.eval = f" · eval {logs['eval_loss']:.4f}"
            if logs and "loss" in logs:
                rate = (state.num_input_tokens_seen - self.tokens0) / max(time.perf_counter() - self.start, 1e-9)
                self.progress.update(self.task, completed=state.global_step,
                                     info=f"loss {logs['loss']:.4f}{getattr(self, 'eval', '')} · {rate:,.0f} tok/s")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()

    class FirstStep(TrainerCallback):  # type: ignore[misc]
        """Calls `mark` when the first optimizer step of this run begins (the end of the start-up)."""

        def __init__(self, mark: Any) -> None:
            self.mark = mark

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.mark()

    return CheckpointingTrainer, Progress, FirstStep
