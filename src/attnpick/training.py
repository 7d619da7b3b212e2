"""`attnpick train`: QLoRA SFT with the proven backend, verified packing, exact resume, one backend per job.

- The model comes from `load_model` (4-bit NF4 by default), the LoRA from peft, the loop from transformers'
  Trainer (checkpoints with adapter, optimizer, scheduler, RNG and trainer state; `--resume` continues).
- Packing is padding-free (transformers' `DataCollatorWithFlattening`: one row, position ids restarting per
  sequence, no padding). Before training, attnpick checks on the real training path that a packed batch gives
  every sequence the logits it gets alone; if not, packing is off and the report says why.
- A checkpoint counts only once its completion marker is written, last: a crash mid-save leaves the previous
  checkpoint as the one `--resume` uses.
- Under `torchrun` / `accelerate launch` every rank probes and smoke-tests, the ranks all-gather their
  verdicts, and all use the first backend eligible on every rank, and the same packing decision.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnpick.errors import UsageError

COMPLETE = "attnpick-complete.json"
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainConfig:
    model: str = "tiny-exaone"
    data: str = "embedded"
    output: str = "attnpick-run"
    backend: str = "auto"
    dtype: str | None = None
    load_in_4bit: bool = True
    max_seq_length: int = 256
    packing: str = "auto"  # auto | on | off
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 2e-4
    scheduler: str = "linear"
    warmup: float = 0.0  # < 1: a fraction of the steps; >= 1: steps
    seed: int = 42
    logging_steps: int = 1
    save_steps: int = 50
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    resume: bool = False
    progress: bool = True

    def validate(self) -> None:
        if self.packing not in ("auto", "on", "off"):
            raise UsageError(f"--packing must be auto, on or off, got {self.packing!r}.")
        if self.max_seq_length < 8 or self.batch_size < 1 or self.grad_accum < 1 or self.save_steps < 1:
            raise UsageError("--max-seq-length (>= 8), --batch-size, --grad-accum and --save-steps must be positive.")
        if self.max_steps == 0 or (self.max_steps < 0 and self.epochs <= 0):
            raise UsageError("Give a positive --max-steps or --epochs.")
        if self.learning_rate <= 0:
            raise UsageError(f"--learning-rate must be positive, got {self.learning_rate}.")


@dataclass(frozen=True)
class PackingVerdict:
    enabled: bool
    requested: str
    checked: bool
    max_abs_diff: float | None
    tolerance: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def latest_complete_checkpoint(output: Path) -> Path | None:
    """The newest `checkpoint-N` whose completion marker exists; unfinished ones are ignored."""
    done = [p for p in output.glob("checkpoint-*") if (p / COMPLETE).is_file() and p.name.split("-")[-1].isdigit()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def check_output(config: TrainConfig) -> Path | None:
    """Refuse to overwrite; with --resume, the checkpoint to continue from."""
    out = Path(config.output)
    if config.resume:
        if not out.is_dir():
            raise UsageError(f"--resume: output folder {config.output!r} does not exist. Drop --resume to start.")
        ckpt = latest_complete_checkpoint(out)
        if ckpt is None:
            raise UsageError(f"--resume: {config.output!r} has no complete checkpoint to continue from.")
        return ckpt
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"Output folder {config.output!r} already exists. Pass --resume to continue it, or choose "
                         "another --output; attnpick never overwrites a run.")
    return None


def packing_check(model: Any, examples: list[Any], collator: Any, dtype: str, extra: dict[str, Any] | None = None,
                  count: int = 4) -> tuple[bool, float, float]:
    """Run `count` sequences packed (through the training collator, as the Trainer calls the model) and one by
    one; (equal within the dtype's tolerance, max |difference| of logits, tolerance)."""
    import torch

    from attnpick.parity import TOLERANCES

    picked = sorted(examples[:count * 4], key=lambda e: len(e.input_ids))[-count:]
    features = [{"input_ids": e.input_ids, "labels": e.labels} for e in picked]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in collator(features).items()}
            batch.pop("labels", None)
            batch.update(extra or {})
            packed = model(**batch).logits[0].float()
            separate = [model(input_ids=torch.tensor([f["input_ids"]], device=device),
                              use_cache=False).logits[0].float() for f in features]
    finally:
        model.train(was_training)
    diff, start = 0.0, 0
    scale = max(float(s.abs().max()) for s in separate)
    for alone in separate:
        n = alone.shape[0]
        diff = max(diff, float((packed[start:start + n] - alone).abs().max()))
        start += n
    tolerance = TOLERANCES[dtype].logits * scale
    return diff <= tolerance, diff, tolerance


def decide_packing(requested: str, ok: bool | None, diff: float | None, tol: float | None,
                   backend: str) -> PackingVerdict:
    if requested == "off":
        return PackingVerdict(False, requested, False, None, None, "packing off (--packing off)")
    if ok:
        return PackingVerdict(True, requested, True, diff, tol,
                              f"packed sequences give the logits they get alone with {backend} (max diff {diff:.2e})")
    why = (f"packed sequences do not give the logits they get alone with {backend} "
           f"(max diff {diff:.2e} > {tol:.2e}): packing would leak attention across samples")
    if requested == "on":
        raise UsageError(f"--packing on: {why}. Use --packing auto or off.")
    return PackingVerdict(False, requested, True, diff, tol, why)


def _distributed() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def agree_on_backend(facts: Any, decision: Any, info: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Every rank smoke-tests the candidates its decision accepts; all-gather; use the first backend eligible on
    every rank. Returns the agreed decision and, per rank, what it lacked."""
    from dataclasses import replace

    import torch.distributed as dist

    from attnpick.decision import Candidate, Reason
    from attnpick.smoke import run_smoke, smoke_spec

    verdicts: dict[str, str | None] = {}
    for cand in decision.candidates:
        if cand.verdict == "rejected":
            verdicts[cand.backend] = "; ".join(r.message for r in cand.reasons)
            continue
        smoke = run_smoke(smoke_spec(cand.backend, facts, info, decision.dtype), facts)
        verdicts[cand.backend] = None if smoke.ok else (smoke.reason.message if smoke.reason else "smoke failed")
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, verdicts)
    order = [c.backend for c in decision.candidates]
    common = [b for b in order if all(g.get(b, "missing") is None for g in gathered)]
    # per rank: the backends some other rank could use and this one could not, with this rank's reason
    differing = [{"rank": r, "lacked": {b: why for b, why in g.items()
                                        if why is not None and any(o.get(b) is None for o in gathered)}}
                 for r, g in enumerate(gathered)]
    candidates = []
    for name in order:
        if name in common:
            candidates.append(Candidate(name, "accepted" if name == common[0] else "not_tried"))
        else:
            whys = [f"rank {r}: {g[name]}" for r, g in enumerate(gathered) if g.get(name)]
            candidates.append(Candidate(name, "rejected", tuple(Reason("not_on_every_rank", w) for w in whys)))
    agreed = replace(decision, chosen=common[0] if common else None, candidates=tuple(candidates),
                     source_detail="agreed by every rank")
    return agreed, [d for d in differing if d["lacked"]]


def train(config: TrainConfig | None = None, **options: Any) -> dict[str, Any]:
    """Fine-tune a LoRA on `config.data` and write the run to `config.output`.

    Args:
        config: a `TrainConfig`; or give its fields as keyword options instead.

    Returns:
        The train report (also written to `<output>/train_report.json`); empty on ranks other than 0.

    Example:
        >>> import attnpick
        >>> report = attnpick.train(model="tiny-exaone", output="runs/demo", max_steps=30)
        >>> report["backend"], report["packing"]["enabled"]
        ('sdpa', True)
    """
    if config is None:
        config = TrainConfig(**options)
    elif options:
        raise UsageError("Give either a TrainConfig or keyword options, not both.")
    config.validate()
    resume_from = check_output(config)
    from attnpick import data as data_mod

    data_mod.validate(config.data)  # bad data fails before any model is loaded or anything is written

    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, TrainingArguments

    from attnpick.decision import Request, choose
    from attnpick.loading import load_model, prepare
    from attnpick.probe import collect_facts

    rank, world = _distributed()
    if world > 1:
        from accelerate import PartialState

        PartialState()  # initializes the process group (gloo on CPU, nccl on GPUs)
    facts = collect_facts()
    from attnpick.probe import disabled_backends

    request = Request.from_names(config.backend, config.dtype, disabled=disabled_backends())
    info = prepare(config.model).info
    decision, differing = choose(facts, request, info), []
    if world > 1 and not request.forced:
        decision, differing = agree_on_backend(facts, decision, info)
        decision.require()
    if config.load_in_4bit and facts.package("bitsandbytes").version is None:
        raise UsageError("QLoRA needs bitsandbytes (pip install bitsandbytes), or pass --no-4bit.")
    model, tokenizer, load_report = load_model(config.model, max_seq_length=config.max_seq_length,
                                               dtype=request.dtype, load_in_4bit=config.load_in_4bit,
                                               backend=config.backend, facts=facts, decision=decision)
    dtype = load_report.dtype
    examples, stats = data_mod.load_examples(config.data, tokenizer, config.max_seq_length)

    from transformers import set_seed

    set_seed(config.seed)  # LoRA's A matrices are drawn here, before the Trainer seeds anything
    model = _with_lora(model, config, load_report.chosen)
    model.config.use_cache = False  # a cache in a packed forward leaks across samples
    flat = DataCollatorWithFlattening(return_position_ids=True)
    packing = _packing_verdict(config, model, examples, flat, dtype, load_report.chosen, world)
    tokenizer.padding_side = "right"
    collator = flat if packing.enabled else DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)

    out = Path(config.output)
    on_cpu = load_report.device == "cpu"
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        lr_scheduler_type=config.scheduler, warmup_steps=config.warmup, num_train_epochs=config.epochs,
        max_steps=config.max_steps, seed=config.seed, data_seed=config.seed, logging_steps=config.logging_steps,
        save_strategy="steps", save_steps=config.save_steps, report_to=[], disable_tqdm=True,
        remove_unused_columns=False, dataloader_num_workers=0, use_cpu=on_cpu,
        bf16=dtype == "bfloat16" and not on_cpu, fp16=dtype == "float16" and not on_cpu,
        include_num_input_tokens_seen="non_padding", ddp_backend="gloo" if on_cpu and world > 1 else None,
    )
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    trainer_class, progress_class = _trainer_classes()
    callbacks = [progress_class()] if config.progress and rank == 0 else []
    trainer = trainer_class(model=model, args=args, train_dataset=rows, data_collator=collator,
                                    callbacks=callbacks)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the progress bar shows loss and tokens/s
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - start

    report: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        model.save_pretrained(str(out / "adapter"))
        tokenizer.save_pretrained(str(out / "adapter"))
        losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
        probe = _probe_logits(model, tokenizer)
        tokens = trainer.state.num_input_tokens_seen
        report = {
            "backend": load_report.chosen, "unsloth_kernel": load_report.unsloth_kernel, "dtype": dtype,
            "quantization": load_report.quantization, "packing": packing.to_dict(), "data": stats.to_dict(),
            "steps": trainer.state.global_step, "losses": losses, "train_loss": result.training_loss,
            "seconds": seconds, "tokens_seen": tokens, "tokens_per_s": tokens / seconds if seconds else None,
            "resumed_from": str(resume_from) if resume_from else None, "world_size": world,
            "ranks_that_differed": differing, "lora": {"r": config.lora_r, "alpha": config.lora_alpha,
                                                       "dropout": config.lora_dropout,
                                                       "target_modules": config.target_modules},
            "adapter": str(out / "adapter"), "model": config.model, "probe": probe,
        }
        (out / "load_report.json").write_text(json.dumps(load_report.to_dict(), indent=2, ensure_ascii=False))
        (out / "metrics.json").write_text(json.dumps({k: report[k] for k in (
            "steps", "train_loss", "losses", "seconds", "tokens_seen", "tokens_per_s")}, indent=2))
        (out / "train_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        _loss_plot(losses, out / "loss.png", f"{config.model} · {load_report.chosen} · packing "
                   f"{'on' if packing.enabled else 'off'}")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return report


PROBE_TEXT = "[|user|]서울은 어떤 곳인가요?\n[|assistant|]"


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


def _with_lora(model: Any, config: TrainConfig, backend: str) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if backend == "unsloth":
        from unsloth import FastLanguageModel

        return FastLanguageModel.get_peft_model(model, r=config.lora_r, lora_alpha=config.lora_alpha,
                                                lora_dropout=config.lora_dropout,
                                                target_modules=config.target_modules, random_state=config.seed)
    if config.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _packing_verdict(config: TrainConfig, model: Any, examples: list[Any], collator: Any, dtype: str,
                     backend: str, world: int) -> PackingVerdict:
    if config.packing == "off":
        return decide_packing("off", None, None, None, backend)
    ok, diff, tol = packing_check(model, examples, collator, dtype)
    if world > 1:
        import torch.distributed as dist

        every: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(every, ok)
        ok = all(every)
    return decide_packing(config.packing, ok, diff, tol, backend)


def _loss_plot(losses: list[tuple[int, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6.5, 3.8))
    if losses:
        steps, values = zip(*losses, strict=True)
        axis.plot(steps, values, marker=".")
    axis.set(xlabel="step", ylabel="training loss", title=title)
    axis.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _trainer_classes() -> tuple[Any, Any]:
    """(Trainer with completion-marked checkpoints, rich progress callback), built on first use so that
    bad input is refused before transformers is imported."""
    from transformers import Trainer, TrainerCallback

    class CheckpointingTrainer(Trainer):  # type: ignore[misc]
        """Trainer whose checkpoints count only once a completion marker is written, after every file."""

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            super()._save_checkpoint(model, trial)
            if not self.is_world_process_zero():
                return
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            for file in folder.rglob("*"):
                if file.is_file():
                    with open(file, "rb") as handle:
                        os.fsync(handle.fileno())
            tmp = folder / (COMPLETE + ".tmp")
            tmp.write_text(json.dumps({"step": self.state.global_step}))
            os.replace(tmp, folder / COMPLETE)

    class Progress(TrainerCallback):  # type: ignore[misc]
        """A rich progress bar with the loss and tokens/s."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")
            self.start, self.tokens0 = time.perf_counter(), state.num_input_tokens_seen
            self.progress.start()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                rate = (state.num_input_tokens_seen - self.tokens0) / max(time.perf_counter() - self.start, 1e-9)
                self.progress.update(self.task, completed=state.global_step,
                                     info=f"loss {logs['loss']:.4f} · {rate:,.0f} tok/s")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()

    return CheckpointingTrainer, Progress
