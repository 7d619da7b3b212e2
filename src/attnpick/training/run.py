"""`train()`: QLoRA SFT with the proven backend, checked packing, exact resume, one backend per distributed job.

The run, step by step: check every input (options, data, output folder) before anything loads; load the model
through the proven chain (every rank agreeing on one backend); tokenize the data; attach the LoRA; decide on
packing after checking it on the real training path; fit with transformers' Trainer; write the reports.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnpick.decide.decision import cpu_autocast, default_dtype
from attnpick.decide.facts import EnvFacts
from attnpick.decide.probe import collect_facts
from attnpick.errors import UsageError
from attnpick.export import adapters
from attnpick.load import distributed
from attnpick.load.chain import LoadReport
from attnpick.load.lora import attach, check_target_modules
from attnpick.load.quantization import choose_4bit, free_memory, parameter_count
from attnpick.loading import load_model
from attnpick.model.config import check_context
from attnpick.model.resolve import Prepared, dtype_name, linear_layer_names
from attnpick.training.answer_logits import AnswerLogits, takes_kept_logits
from attnpick.training.config import TrainConfig
from attnpick.training.data import DataStats, drop_warnings, examples_of, load_examples, validate
from attnpick.training.model_checks import check_chat_template, folder_chat_template, read_chat_template
from attnpick.training.outputs import prepare_output, release, write_reports
from attnpick.training.packing import (
    PackingVerdict,
    cached_check,
    check_key,
    decide_packing,
    packed_path,
    packing_check,
    unpacked,
)
from attnpick.training.trainer import TokenCounter, latest_complete_checkpoint, trainer_classes
from attnpick.util.clock import StartupClock, phase
from attnpick.util.files import DiskFullError, is_disk_full

logger = logging.getLogger(__name__)
PROBE_TEXT = "[|user|]서울은 어떤 곳인가요?\n[|assistant|]"


@dataclass(frozen=True)
class TrainReport:
    """What a run did: the backend (with the whole `LoadReport`), the data, packing, losses and speed."""

    model: str
    output: str
    load: LoadReport
    data: DataStats
    packing: PackingVerdict
    steps: int
    losses: tuple[tuple[int, float], ...]
    train_loss: float | None
    seconds: float
    tokens_seen: int  # this run's (after a resume: its resumed part) non-padding tokens, every rank's
    lora: dict[str, Any]
    probe: dict[str, Any]
    resumed_from: str | None = None
    world_size: int = 1
    notes: tuple[str, ...] = field(default_factory=tuple)
    tokens_fed: int = 0  # this run (after a resume: its resumed part), on this rank: padding included
    padding_share: float | None = None
    eval: dict[str, Any] | None = None  # the held-out set: where from, how many examples (None: no eval)
    eval_losses: tuple[tuple[int, float], ...] = ()  # (step, eval loss on answer tokens); the last is the end's
    autocast: str | None = None  # "bfloat16": matrix products in bfloat16 over float32 weights (a CPU's autocast)
    answer_logits: bool = False  # the LM head and the loss ran only where the next token is an answer token
    startup: dict[str, Any] = field(default_factory=dict)  # `StartupClock.to_dict()`: where the time before step 1 went

    @property
    def eval_loss(self) -> float | None:
        return self.eval_losses[-1][1] if self.eval_losses else None

    @property
    def backend(self) -> str:
        return self.load.chosen

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens_seen / self.seconds if self.seconds else None

    def to_dict(self) -> dict[str, Any]:
        """The train_report.json document (the load report is written beside it, as load_report.json)."""
        return {
            "backend": self.backend, "loader_kernel": self.load.loader_kernel,
            "unsloth_kernel": self.load.loader_kernel, "dtype": self.load.dtype,
            "quantization": self.load.quantization, "packing": self.packing.to_dict(), "data": self.data.to_dict(),
            "steps": self.steps, "losses": [list(x) for x in self.losses], "train_loss": self.train_loss,
            "seconds": self.seconds, "tokens_seen": self.tokens_seen, "tokens_per_s": self.tokens_per_s,
            "tokens_fed": self.tokens_fed, "padding_share": self.padding_share,
            "resumed_from": self.resumed_from, "world_size": self.world_size,
            "ranks_that_differed": [d.to_dict() for d in self.load.ranks_that_differed], "lora": dict(self.lora),
            "adapter": str(Path(self.output) / "adapter"), "model": self.model, "probe": dict(self.probe),
            "notes": list(self.notes), "eval": self.eval, "eval_loss": self.eval_loss,
            "eval_losses": [list(x) for x in self.eval_losses], "startup": dict(self.startup),
            "answer_logits": self.answer_logits, "autocast": self.autocast,
        }


def train(config: TrainConfig | None = None, **options: Any) -> TrainReport | None:
    """Fine-tune a LoRA on `config.data` and write the run to `config.output`.

    Args:
        config: a `TrainConfig`; or give its fields as keyword options instead.

    Returns:
        The `TrainReport` (also written to `<output>/train_report.json`); None on ranks other than 0.

    Example:
        >>> import attnpick
        >>> report = attnpick.train(model="tiny-exaone", output="runs/demo", max_steps=30)
        >>> report.backend, report.packing.enabled
        ('sdpa', True)
    """
    config = _config(config, options)
    with StartupClock() as clock:
        with phase("check inputs"):
            prepared, given = _check_inputs(config)
        rank, _ = distributed.rank_and_world()
        # rank 0 holds the folder's lock for the whole run: a second train on it is refused
        resume_from, created, notes, lock = prepare_output(config.output, config.resume, config.max_steps,
                                                           rank == 0)
        try:
            return _run(config, prepared, resume_from, notes, given, clock)
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError ("unexpected pos")
            full = _disk_full(exc, config.output)
            if full is None:
                raise
            raise full from None
        finally:
            release(Path(config.output), lock, created)


def _check_inputs(config: TrainConfig) -> tuple[Prepared, str | None]:
    """Bad options, data, a bad model folder and LoRA targets the model lacks fail before any weight is read or
    anything is written; (the prepared model, the --chat-template given or None)."""
    config.validate()
    stats = validate(config.data, config.data_split, config.column_map, config.strict_data)
    drop_warnings(stats, config.max_dropped)
    layouts = set(stats.layouts)
    if config.eval_data:
        layouts |= set(validate(config.eval_data, config.data_split, config.column_map, config.strict_data).layouts)
    prepared = config.prepare()  # once: the load below takes it as it is
    _check_targets(prepared, config.target_modules)
    check_context(prepared.folder, config.max_seq_length, config.model)
    given = read_chat_template(config.chat_template) if config.chat_template else None
    if layouts != {"text"}:  # plain text (continued pretraining) is learned whole: no chat template is used
        check_chat_template(given if config.chat_template else folder_chat_template(prepared.folder),
                            f"--chat-template {config.chat_template}" if config.chat_template else config.model)
    return prepared, given


def _disk_full(exc: BaseException, output: str) -> BaseException | None:
    """A full disk while the run wrote: one line naming the folder and the last complete checkpoint."""
    if not is_disk_full(exc):
        return None
    last = latest_complete_checkpoint(Path(output))
    where = f"the last complete checkpoint is {last.name}: free space, then rerun with --resume" if last else \
        "no checkpoint was complete: free space and start again"
    return DiskFullError(f"No space left on the device holding {output} while the run wrote to it; {where}.")


def _config(config: TrainConfig | None, options: dict[str, Any]) -> TrainConfig:
    if config is not None and options:
        raise UsageError("Give either a TrainConfig or keyword options, not both.")
    if config is not None:
        return config
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(f"Unknown training option(s) {', '.join(unknown)}. Known: {', '.join(sorted(known))}.")
    return TrainConfig(**options)


def _run(config: TrainConfig, prepared: Prepared, resume_from: Path | None, notes: list[str],
         chat_template: str | None, clock: StartupClock) -> TrainReport | None:
    rank, world = distributed.rank_and_world()
    if world > 1:
        distributed.init_process_group()
    with phase("machine facts"):
        facts = collect_facts(fresh=config.fresh)  # once: the 4-bit choice and the load read the same facts
        four_bit, why = _four_bit(config, prepared, facts, world)
    if why:
        notes = [*notes, why]
    model, tokenizer, load = _load(config, prepared, four_bit, facts)
    autocast = cpu_autocast(facts, load.dtype, four_bit, prepared.model_facts) if config.autocast == "auto" else None
    if autocast:
        notes = [*notes, "CPU: matrix products in bfloat16 (autocast): this CPU computes bfloat16 natively; the "
                 "weights, norms, softmax and loss stay float32. Pass --autocast off to train in float32 throughout."]
    if chat_template:
        tokenizer.chat_template = chat_template  # --chat-template, as checked: saved with the adapter
    with phase("tokenize data"):
        examples, stats = load_examples(config.data, tokenizer, config.max_seq_length, config.data_split,
                                        config.column_map, config.truncate, config.strict_data)
        notes = [*notes, *drop_warnings(stats, config.max_dropped)]
        examples, held_out, eval_info = _held_out(config, examples, tokenizer)
    for note in notes:
        logger.warning(note)
    with phase("attach LoRA"):
        model = _attach_lora(model, config, load.chosen)
    with phase("packing check"):
        packing, collator = _choose_packing(config, model, examples, tokenizer, load, prepared, facts, world)
    counter = TokenCounter(collator)
    trainer, seconds = _fit(config, model, tokenizer, examples, held_out, counter, load, resume_from, rank, world,
                            clock, autocast)
    # the tokens of the examples fed (the Trainer's own count takes a pad token that is also the end-of-turn token
    # for padding), every rank's
    real_tokens = sum(distributed.gather(counter.real)) if world > 1 else counter.real
    report = None
    if trainer.is_world_process_zero():
        report = _report(config, trainer, model, tokenizer, load, stats, packing, seconds, resume_from, world, notes,
                         counter, real_tokens, eval_info, clock, autocast)
    if world > 1:
        distributed.barrier()
    return report


def _held_out(config: TrainConfig, examples: Any, tokenizer: Any) -> tuple[Any, Any, dict[str, Any] | None]:
    """(training examples, eval examples or None, what the eval set is): `--eval-data` tokenized like the training
    data, or `--eval-share` of the training examples split off, seeded by `--seed` (every example in one set)."""
    if config.eval_data:
        held_out, stats = load_examples(config.eval_data, tokenizer, config.max_seq_length, config.data_split,
                                        config.column_map, config.truncate, config.strict_data)
        return examples, held_out, {"source": stats.dataset, "examples": stats.examples, "rows": stats.rows,
                                    "dropped": stats.dropped.count}
    if not config.eval_share:
        return examples, None, None
    n = len(examples)
    size = round(n * config.eval_share)
    if size < 1 or size >= n:
        raise UsageError(f"--eval-share {config.eval_share:g} of {n} examples holds out {size}: choose a share that "
                         "leaves at least one example on each side, or give --eval-data.")
    split = examples.train_test_split(test_size=size, seed=config.seed, shuffle=True)
    info = {"source": f"--eval-share {config.eval_share:g} of the data (seed {config.seed})",
            "examples": len(split["test"]), "trained_on": len(split["train"])}
    return split["train"], split["test"], info


def _four_bit(config: TrainConfig, prepared: Prepared, facts: EnvFacts, world: int) -> tuple[bool, str | None]:
    """4-bit or not (`choose_4bit`), from the device, the model's size and the free memory. Under torchrun each
    rank measures its own free memory, so every rank takes 4-bit when one of them needs it: one model for all."""
    if config.load_in_4bit is not None:
        return config.load_in_4bit, None
    dtype = dtype_name(config.dtype) or default_dtype(facts)
    four_bit, why = choose_4bit(None, facts.device.type, parameter_count(prepared.load_folder), free_memory(), dtype)
    if world > 1 and not distributed.all_true(not four_bit) and not four_bit:
        return True, ("CPU: training in 4-bit (NF4): another rank's free memory is too small for the unquantized "
                      "weights, and every rank trains one model; pass --no-4bit to train unquantized anyway.")
    return four_bit, why


def _load(config: TrainConfig, prepared: Prepared, four_bit: bool, facts: EnvFacts) -> tuple[Any, Any, LoadReport]:
    """The model through the proven chain (under torchrun every rank agrees on the backend first)."""
    return load_model(prepared, max_seq_length=config.max_seq_length, dtype=config.dtype,
                      load_in_4bit=four_bit, backend=config.backend, facts=facts, use_cache=not config.fresh)


def _check_targets(prepared: Prepared, target_modules: list[str]) -> None:
    names = linear_layer_names(prepared)
    if names is not None:
        check_target_modules(names, target_modules)


def _attach_lora(model: Any, config: TrainConfig, backend: str) -> Any:
    from transformers import set_seed  # heavy; seeds python, numpy and torch as the Trainer will

    set_seed(config.seed)  # LoRA's A matrices are drawn now, before the Trainer seeds anything
    model = attach(model, backend, r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                   target_modules=config.target_modules, seed=config.seed)
    model.config.use_cache = False  # a cache in a packed forward leaks across samples
    adapters.record_base(model, config.model)  # the saved adapter names the model as asked, not a cache folder
    return model


def _choose_packing(config: TrainConfig, model: Any, examples: Any, tokenizer: Any, load: LoadReport,
                    prepared: Prepared, facts: EnvFacts, world: int) -> tuple[PackingVerdict, Any]:
    """Padding-free packing when asked or checked safe on this path (a check cached per machine, packages, model
    files and path); else padded batches."""
    from transformers import DataCollatorForSeq2Seq

    if config.packing == "off":
        flat, verdict = None, decide_packing("off", None, None, None, "")
    else:
        own = model.config._attn_implementation
        flat, attention = packed_path(model, load.chosen)
        key = check_key(facts, prepared.load_folder, attention, load.dtype, load.quantization,
                        {"r": config.lora_r, "targets": sorted(config.target_modules)}, not config.fresh)
        ok, diff, tol, cached = cached_check(
            key, lambda: packing_check(model, examples_of(examples, 16), flat, load.dtype))
        if world > 1:
            ok = distributed.all_true(ok)
        verdict = decide_packing(config.packing, ok, diff, tol, attention, cached)
        if not verdict.enabled:
            unpacked(model, own)
    tokenizer.padding_side = "right"
    padded = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    if not verdict.enabled:
        return verdict, padded
    return verdict, AnswerLogits(flat) if takes_kept_logits(model) else flat


def _fit(config: TrainConfig, model: Any, tokenizer: Any, examples: Any, held_out: Any, collator: Any,
         load: LoadReport, resume_from: Path | None, rank: int, world: int,
         clock: StartupClock, autocast: str | None) -> tuple[Any, float]:
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    on_cpu = load.device == "cpu"
    args = TrainingArguments(
        output_dir=config.output, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        lr_scheduler_type=config.scheduler, warmup_steps=config.warmup, num_train_epochs=config.epochs,
        max_steps=config.max_steps, seed=config.seed, data_seed=config.seed, logging_steps=config.logging_steps,
        save_strategy="steps", save_steps=config.save_steps, report_to=[], disable_tqdm=True,
        remove_unused_columns=False, dataloader_num_workers=0, use_cpu=on_cpu,
        bf16=(load.dtype == "bfloat16" and not on_cpu) or autocast == "bfloat16",
        fp16=load.dtype == "float16" and not on_cpu,
        include_num_input_tokens_seen="non_padding", ddp_backend="gloo" if on_cpu and world > 1 else None,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        eval_strategy="steps" if held_out is not None and config.eval_steps else "no", eval_steps=config.eval_steps,
        per_device_eval_batch_size=config.batch_size,
    )
    trainer_class, progress_class, first_step_class = trainer_classes()
    callbacks = [first_step_class(clock.first_step)]
    callbacks += [progress_class()] if config.progress and rank == 0 else []
    trainer = trainer_class(model=model, args=args, train_dataset=examples, eval_dataset=held_out,
                            data_collator=collator, processing_class=tokenizer, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # the progress bar shows loss and tokens/s
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - start
    if held_out is not None:
        trainer.evaluate()  # the end's eval loss, logged with the step it was taken at
    return trainer, seconds


def _report(config: TrainConfig, trainer: Any, model: Any, tokenizer: Any, load: LoadReport, stats: DataStats,
            packing: PackingVerdict, seconds: float, resume_from: Path | None, world: int,
            notes: list[str], counter: TokenCounter, real_tokens: int, eval_info: dict[str, Any] | None,
            clock: StartupClock, autocast: str | None) -> TrainReport:
    out = Path(config.output)
    model.save_pretrained(str(out / "adapter"))
    tokenizer.save_pretrained(str(out / "adapter"))
    losses = tuple((h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h)
    eval_losses = _eval_losses(trainer.state.log_history)
    report = TrainReport(
        model=config.model, output=config.output, load=load, data=stats, packing=packing,
        steps=trainer.state.global_step, losses=losses, train_loss=run_loss(losses),
        seconds=seconds, tokens_seen=real_tokens,
        lora={"r": config.lora_r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
              "target_modules": list(config.target_modules)},
        probe=_probe_logits(model, tokenizer), resumed_from=str(resume_from) if resume_from else None,
        world_size=world, notes=tuple(notes), tokens_fed=counter.fed, padding_share=counter.padding_share,
        eval=eval_info, eval_losses=eval_losses, startup=clock.to_dict(),
        answer_logits=isinstance(counter.collator, AnswerLogits), autocast=autocast,
    )
    title = f"{config.model} · {report.backend} · packing {'on' if packing.enabled else 'off'}"
    write_reports(out, report.to_dict(), load.to_dict(), list(losses), title, list(eval_losses))
    return report


def _eval_losses(history: list[dict[str, Any]]) -> tuple[tuple[int, float], ...]:
    """(step, eval loss) in order, one per step: the end's evaluation repeats the last periodic one's step when
    they coincide."""
    by_step = {h["step"]: h["eval_loss"] for h in history if "eval_loss" in h}
    return tuple(sorted(by_step.items()))


def run_loss(losses: tuple[tuple[int, float], ...]) -> float | None:
    """The mean training loss over the whole run, resumed parts included: each logged loss (the mean of the
    steps since the previous log) weighted by the steps it covers."""
    total, steps, previous = 0.0, 0, 0
    for step, loss in losses:
        span = step - previous
        total, steps, previous = total + loss * span, steps + span, step
    return total / steps if steps else None


def _probe_logits(model: Any, tokenizer: Any) -> dict[str, Any]:
    """Logits of a fixed prompt's last position: reloading the adapter must give them back."""
    import torch

    ids = tokenizer(PROBE_TEXT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids.to(next(model.parameters()).device), use_cache=False).logits[0, -1].float()
    model.train(was_training)
    return {"text": PROBE_TEXT, "head": [round(float(x), 6) for x in logits[:8]], "sum": float(logits.sum())}
