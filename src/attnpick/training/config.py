"""`TrainConfig`: every option of `attnpick train`, with its help line, in one place. The CLI builds its
options from these fields (`attnpick.cli.main`), the library takes them as keyword arguments, and `validate()`
refuses a bad value before anything is loaded or written."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import cached_property

from attnpick.backends.registry import DTYPES
from attnpick.errors import UsageError
from attnpick.model.options import ModelOptions, check_max_seq_length
from attnpick.training.data import DEFAULT as DEFAULT_DATA
from attnpick.training.data import TRUNCATE, parse_columns
from attnpick.util.options import finite, flag, option, whole

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PACKING = ("auto", "on", "off")
AUTOCAST = ("auto", "off")


@dataclass
class TrainConfig(ModelOptions):
    """One fine-tuning run. Field names are the library's keyword arguments; `--field-name` the CLI's. The model and
    how to read it are `ModelOptions`' fields, as for every command."""

    data: str = option(DEFAULT_DATA, "training data: a .jsonl/.json/.parquet/.csv/.txt file, a folder of them, a "
                       "save_to_disk folder or a hub dataset id, with chat 'messages', ShareGPT 'conversations', "
                       "instruction/input/output, prompt/completion or plain 'text' (default: the embedded "
                       "Korean/English set)", metavar="FILE|DIR|ID")
    data_split: str | None = option(None, "the split to read: of a folder of data files (default: every file in "
                                    "it, whatever its name) or of a saved or hub dataset (default: train)",
                                    metavar="NAME")
    columns: str = option("", "map your column names onto attnpick's, e.g. instruction=질문,output=답변",
                          metavar="NAME=COLUMN,...")
    truncate: str = option("right", "over max_seq_length: right cuts the end (an answer may lose its end), left cuts "
                           "the start of the conversation (keeps the answer, loses prompt)", choices=TRUNCATE)
    max_dropped: float | None = option(None, "fail when more than this share of rows is dropped (0 fails on any "
                                       "drop; default: only warn above 0.1)", metavar="SHARE", type=float)
    strict_data: bool = option(False, "a malformed row (null or non-text field, empty answer, unknown role) is an "
                               "error instead of a counted drop", action="store_true")
    eval_data: str | None = option(None, "held-out data for an eval loss on answer tokens, in any --data format",
                                   metavar="FILE|DIR|ID")
    eval_share: float = option(0.0, "hold out this share of --data for an eval loss (a split seeded by --seed; "
                               "0: none)", metavar="SHARE")
    eval_steps: int | None = option(None, "eval loss every N steps as well as at the end", metavar="N", type=int)
    chat_template: str | None = option(None, "a Jinja chat template file for a model whose tokenizer has none (or "
                                       "whose own does not render); saved with the adapter", metavar="FILE")
    output: str = option("attnpick-run", "the run's folder: created, never overwritten (see --resume)",
                         metavar="DIR", required=True)
    backend: str = option("auto", "attention backend: auto (default) or one name from 'attnpick doctor'; "
                          "env ATTNPICK_BACKEND", kind="backend")
    dtype: str | None = option(None, "compute dtype; default: the device's best", choices=DTYPES)
    autocast: str = option("auto", "CPU: matrix products in bfloat16 over float32 weights (torch.autocast); auto: "
                           "where the CPU computes bfloat16 natively (AVX512-BF16, AMX) and the model is not 4-bit; "
                           "off: float32 throughout", choices=AUTOCAST)
    load_in_4bit: bool | None = option(None, "--4bit: LoRA on the 4-bit (NF4) model (QLoRA); --no-4bit: on the "
                                       "unquantized one. Default: 4-bit on a GPU; on a CPU unquantized when it fits "
                                       "in half the free memory (4-bit is slower there)", flag="--4bit",
                                       action=argparse.BooleanOptionalAction)
    max_seq_length: int = option(256, "longest example in tokens; longer ones are truncated", metavar="N")
    packing: str = option("auto", "padding-free packing: auto (after a check on the real training path), on, off",
                          choices=PACKING)
    group_by_length: bool = option(False, "padded batches of similar lengths (transformers' group_by_length); "
                                   "with packing on it changes nothing", action="store_true")
    epochs: float = option(1.0, "passes over the data (ignored when --max-steps is given)", metavar="N")
    max_steps: int = option(-1, "optimizer steps to run; -1: as many as --epochs gives", metavar="N")
    batch_size: int = option(8, "examples per device per step", metavar="N")
    grad_accum: int = option(1, "steps whose gradients are summed before one optimizer step", metavar="N")
    learning_rate: float = option(2e-4, "peak learning rate", metavar="LR", aliases=("--lr",))
    scheduler: str = option("linear", "learning-rate schedule: one of transformers' SchedulerType names",
                            metavar="NAME")
    warmup: float = option(0.0, "warm-up: below 1 a fraction of the steps, from 1 a number of steps", metavar="W")
    seed: int = option(42, "seed of the LoRA initialisation, the data order and dropout", metavar="N")
    logging_steps: int = option(1, "log the loss every N steps", metavar="N")
    save_steps: int = option(50, "write a checkpoint every N steps", metavar="N")
    lora_r: int = option(16, "LoRA rank", metavar="R")
    lora_alpha: int = option(32, "LoRA alpha (scaling = alpha / r)", metavar="A")
    lora_dropout: float = option(0.0, "dropout on the LoRA input, from 0 up to (not including) 1", metavar="P")
    target_modules: list[str] = option(DEFAULT_TARGETS, "comma-separated module names that get a LoRA",
                                       metavar="A,B", kind="list")
    resume: bool = option(False, "continue from the output folder's last complete checkpoint", action="store_true")
    fresh: bool = option(False, "prove everything again: ignore the cached import checks, smoke runs and packing "
                         "checks", action="store_true")
    progress: bool = option(True, "show a progress bar", cli=False)

    @cached_property
    def column_map(self) -> dict[str, str]:
        """`--columns` read once: attnpick's names -> the data's column names."""
        return parse_columns(self.columns)

    def validate(self) -> None:
        """Every value checked, before anything loads; `UsageError` naming the option and the fix."""
        self.validate_model()
        if self.load_in_4bit is not None:
            flag(self.load_in_4bit, "load_in_4bit")
        if self.packing not in PACKING:
            raise UsageError(f"--packing must be auto, on or off, got {self.packing!r}.")
        if self.autocast not in AUTOCAST:
            raise UsageError(f"--autocast must be auto or off, got {self.autocast!r}.")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise UsageError(f"Unknown dtype {self.dtype!r}. Choose one of: {', '.join(DTYPES)}.")
        check_max_seq_length(self.max_seq_length)
        for value, name in ((self.batch_size, "--batch-size"), (self.grad_accum, "--grad-accum"),
                            (self.save_steps, "--save-steps"), (self.logging_steps, "--logging-steps"),
                            (self.lora_r, "--lora-r"), (self.lora_alpha, "--lora-alpha")):
            whole(value, name, 1)
        whole(self.seed, "--seed", 0, 2**32 - 1)
        whole(self.max_steps, "--max-steps", -1)
        if self.max_steps == 0:
            raise UsageError("--max-steps must be positive, or -1 to train for --epochs.")
        finite(self.epochs, "--epochs", low=0.0, low_open=True)
        finite(self.learning_rate, "--learning-rate", low=0.0, low_open=True)
        finite(self.warmup, "--warmup", low=0.0)
        finite(self.lora_dropout, "--lora-dropout", low=0.0, high=1.0)
        if self.truncate not in TRUNCATE:
            raise UsageError(f"--truncate must be right or left, got {self.truncate!r}.")
        if self.max_dropped is not None:
            finite(self.max_dropped, "--max-dropped", low=0.0, high=1.0)
        self.column_map  # noqa: B018 - parsed now: a bad --columns is refused before anything loads
        finite(self.eval_share, "--eval-share", low=0.0, high=0.5)
        if self.eval_data and self.eval_share:
            raise UsageError("Give --eval-data or --eval-share, not both.")
        if self.eval_steps is not None:
            whole(self.eval_steps, "--eval-steps", 1)
            if not (self.eval_data or self.eval_share):
                raise UsageError("--eval-steps needs held-out data: add --eval-share 0.05 or --eval-data FILE.")
        if not self.target_modules or not all(isinstance(m, str) and m.strip() for m in self.target_modules):
            raise UsageError("--target-modules needs at least one module name, e.g. q_proj,v_proj.")
        self._check_scheduler()

    def _check_scheduler(self) -> None:
        from transformers.trainer_utils import SchedulerType  # the schedulers transformers itself accepts

        names = [s.value for s in SchedulerType]
        if self.scheduler not in names:
            raise UsageError(f"Unknown --scheduler {self.scheduler!r}. Choose one of: {', '.join(names)}.")
