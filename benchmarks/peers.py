"""attnpick beside what users would pick instead: the same LoRA fine-tune, each contender in its own process.

    .venv/bin/python benchmarks/peers.py [--model PATH] [--steps 4] [--device cpu|cuda] [--only NAME,...]

Every contender trains the same model (default: SmolLM2-135M-Instruct from `scripts/smollm2.sh`) on the same data
(attnpick's embedded Korean/English set, 10% held out by a seeded shuffle), at 256 tokens, with the same LoRA
(r 16, alpha 32, dropout 0, every linear layer of the blocks), optimizer (AdamW, lr 2e-4, linear schedule, no
warm-up), batch size, steps and seed:

1. `attnpick train` with its defaults on this machine, first with an empty cache (`attnpick-cold`), then again with
   the cache it wrote (`attnpick`);
2. transformers' `Trainer` + peft, padded batches, eager attention (the guide's baseline "기본 (eager)");
3. the same with sdpa;
4. TRL's `SFTTrainer` with its defaults (prompt-completion data: the loss on the answer);
5. TRL with `packing=True` (best-fit packing into rows of 256 tokens, padding-free: TRL 1.16 refuses
   `padding_free=True` without packing while `max_length` is set, and packing turns it on);
6. Unsloth's `FastLanguageModel` + `SFTTrainer`, in the Unsloth lane's venv (`--unsloth-python`), where it runs.

Contenders 2-6 are written as their libraries' documentation writes them and import nothing from attnpick. For
each: non-padding tokens per second of training, seconds from the process's start to the first optimizer step,
wall time in all, peak RSS of the training process, and the final eval loss on the held-out share's answer tokens,
computed afterwards by one evaluator for every contender's adapter alike (float32, sdpa, padded batches). Ratios are
over contender 2. Written to `docs/benchmarks/<device>/peers.{json,md,png}` (`--out`).

On a CPU this measures the whole training job, not a GPU kernel: the matrix products dominate the step and
attention at 256 tokens is a small share of it, so a CPU says nothing about FlashAttention's or xFormers' speed on a
GPU. The same script runs unchanged with `--device cuda` where a GPU is lent (the GPU check).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED = ROOT / "src" / "attnpick" / "data" / "default_sft.jsonl"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CONTENDERS = ("attnpick-cold", "attnpick", "hf-eager", "hf-sdpa", "trl", "trl-packing", "unsloth")
BASELINE = "hf-eager"
LABELS = {
    "attnpick-cold": "1. attnpick train (first run: empty cache)",
    "attnpick": "1. attnpick train (defaults)",
    "hf-eager": "2. Trainer + peft, eager, padded",
    "hf-sdpa": "3. Trainer + peft, sdpa, padded",
    "trl": "4. TRL SFTTrainer (defaults)",
    "trl-packing": "5. TRL packing=True (padding-free)",
    "unsloth": "6. Unsloth FastLanguageModel + SFTTrainer",
}


# ---------------------------------------------------------------- the data every contender gets


def row_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """One row of the embedded set as chat messages (its three layouts)."""
    if "messages" in row:
        return [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    system = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    if "instruction" in row:
        prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        return [*system, {"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]
    return [*system, {"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]


def write_data(folder: Path, eval_share: float, seed: int) -> dict[str, Any]:
    """train.jsonl / eval.jsonl of {"messages": [...]} (attnpick, Trainer) and train-pc.jsonl of prompt/completion
    messages (TRL, Unsloth: the completion is the last assistant turn)."""
    rows = [row_messages(json.loads(line)) for line in EMBEDDED.read_text(encoding="utf-8").splitlines() if line]
    random.Random(seed).shuffle(rows)
    held = round(len(rows) * eval_share)
    train, held_out = rows[held:], rows[:held]
    for name, part in (("train", train), ("eval", held_out)):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for messages in part:
                f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    with open(folder / "train-pc.jsonl", "w", encoding="utf-8") as f:
        for messages in train:
            f.write(json.dumps({"prompt": messages[:-1], "completion": messages[-1:]}, ensure_ascii=False) + "\n")
    return {"rows": len(rows), "train": len(train), "eval": len(held_out), "seed": seed}


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


def answer_masked(messages: list[dict[str, str]], tokenizer: Any, max_length: int) -> dict[str, list[int]]:
    """input_ids and labels (-100 outside the assistant turns), tokenized piece by piece: each rendered prefix
    before an assistant turn, then the turn itself (the way the chat template renders them)."""
    ids: list[int] = []
    labels: list[int] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        for text, trained in ((prompt[len(done):], False), (upto[len(prompt):], True)):
            piece = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += piece
            labels += piece if trained else [-100] * len(piece)
        done = upto
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


# ---------------------------------------------------------------- inside a contender's process


class Timing:
    """The first optimizer step's start and the non-padding tokens fed, counted at the collator."""

    def __init__(self) -> None:
        self.first_step_at: float | None = None
        self.tokens = 0
        self.fed = 0

    def counting(self, collator: Any) -> Any:
        def collate(features: list[dict[str, Any]]) -> Any:
            batch = collator(features)
            mask = batch.get("attention_mask")
            self.tokens += int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
            self.fed += int(batch["input_ids"].numel())
            return batch
        return collate

    def callback(self) -> Any:
        from transformers import TrainerCallback

        timing = self

        class FirstStep(TrainerCallback):  # type: ignore[misc]
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if timing.first_step_at is None:
                    timing.first_step_at = time.time()
        return FirstStep()


def process_start() -> float:
    import psutil

    return float(psutil.Process().create_time())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def hyper(job: dict[str, Any]) -> dict[str, Any]:
    """The TrainingArguments every Trainer-based contender shares."""
    return {"output_dir": job["work"], "per_device_train_batch_size": job["batch_size"], "max_steps": job["steps"],
            "learning_rate": 2e-4, "lr_scheduler_type": "linear", "warmup_steps": 0, "seed": job["seed"],
            "data_seed": job["seed"], "logging_steps": 1, "save_strategy": "no", "report_to": [],
            "disable_tqdm": True, "use_cpu": job["device"] == "cpu", "dataloader_num_workers": 0,
            "optim": "adamw_torch", "weight_decay": 0.0}


def lora_config() -> Any:
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")


def dtype_of(job: dict[str, Any]) -> Any:
    import torch

    return torch.float32 if job["device"] == "cpu" else torch.bfloat16


def finish(job: dict[str, Any], trainer: Any, model: Any, timing: Timing, seconds: float, extra: dict[str, Any]
           ) -> dict[str, Any]:
    model.save_pretrained(job["adapter"])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "train_seconds": seconds, "tokens": timing.tokens,
            "fed": timing.fed, "first_step_at": timing.first_step_at, "losses": losses, **extra}


def run_hf(job: dict[str, Any], attention: str) -> dict[str, Any]:
    """2 and 3: transformers' Trainer + peft, padded batches (transformers' and peft's documentation)."""
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=dtype_of(job), attn_implementation=attention,
                                                 device_map=job["device"])
    model = get_peft_model(model, lora_config())
    rows = [answer_masked(r["messages"], tokenizer, 256) for r in read_jsonl(job["train"])]
    timing = Timing()
    collator = timing.counting(DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    trainer = Trainer(model=model, args=TrainingArguments(**hyper(job), remove_unused_columns=False),
                      train_dataset=Dataset.from_list(rows), data_collator=collator, callbacks=[timing.callback()])
    start = time.perf_counter()
    trainer.train()
    return finish(job, trainer, model, timing, time.perf_counter() - start, {"attention": attention})


def sft_config(job: dict[str, Any], **extra: Any) -> Any:
    from trl import SFTConfig

    return SFTConfig(**hyper(job), max_length=256, **extra)


def run_trl(job: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """4 and 5: TRL's SFTTrainer with a model id, prompt-completion data and a peft config (TRL's documentation)."""
    from datasets import load_dataset
    from trl import SFTTrainer

    timing = Timing()
    dataset = load_dataset("json", data_files=job["train_pc"], split="train")
    args = sft_config(job, model_init_kwargs={"dtype": dtype_of(job), "device_map": job["device"]}, **extra)
    trainer = SFTTrainer(model=job["model"], args=args, train_dataset=dataset, peft_config=lora_config(),
                         callbacks=[timing.callback()])
    trainer.data_collator = timing.counting(trainer.data_collator)
    start = time.perf_counter()
    trainer.train()
    attention = trainer.model.config._attn_implementation
    return finish(job, trainer, trainer.model, timing, time.perf_counter() - start, {"attention": attention})


def run_unsloth(job: dict[str, Any]) -> dict[str, Any]:
    """6: Unsloth's notebook cells (FastLanguageModel, get_peft_model, TRL's SFTTrainer)."""
    from datasets import load_dataset
    from trl import SFTTrainer

    from unsloth import FastLanguageModel  # first: it patches transformers, peft and trl

    on_gpu = job["device"] != "cpu"
    model, tokenizer = FastLanguageModel.from_pretrained(job["model"], max_seq_length=256, dtype=None,
                                                         load_in_4bit=on_gpu)
    model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32, lora_dropout=0, target_modules=TARGETS,
                                             bias="none", use_gradient_checkpointing="unsloth",
                                             random_state=job["seed"])
    timing = Timing()
    dataset = load_dataset("json", data_files=job["train_pc"], split="train")
    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=dataset, args=sft_config(job),
                         callbacks=[timing.callback()])
    trainer.data_collator = timing.counting(trainer.data_collator)
    start = time.perf_counter()
    trainer.train()
    dtype = str(next(p for p in model.parameters() if not p.requires_grad).dtype).replace("torch.", "")
    return finish(job, trainer, model, timing, time.perf_counter() - start,
                  {"attention": model.config._attn_implementation, "dtype": dtype, "4bit": on_gpu})


def run_attnpick(job: dict[str, Any]) -> dict[str, Any]:
    """1: the `attnpick train` command line, its defaults, run in this process (as the console script runs it)."""
    from attnpick.cli.main import main

    out = Path(job["work"]) / "run"
    code = main(["train", job["model"], "--data", job["train"], "--max-steps", str(job["steps"]),
                 "--batch-size", str(job["batch_size"]), "--seed", str(job["seed"]), "--output", str(out), "--json"])
    if code:
        raise SystemExit(code)
    report = json.loads((out / "train_report.json").read_text(encoding="utf-8"))
    Path(job["adapter"]).parent.mkdir(parents=True, exist_ok=True)
    os.replace(out / "adapter", job["adapter"])
    return {"steps": report["steps"], "train_seconds": report["seconds"], "tokens": report["tokens_seen"],
            "fed": report["tokens_fed"], "first_step_s": report["startup"]["before_first_step_s"],
            "startup": report["startup"], "losses": [x[1] for x in report["losses"]], "attention": report["backend"],
            "dtype": report["dtype"] + (f" ({report['autocast']} autocast)" if report.get("autocast") else ""),
            "4bit": bool(report["quantization"]), "packing": report["packing"]["enabled"]}


def child(name: str, job_file: str) -> None:
    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    started = process_start()
    runners = {"attnpick": run_attnpick, "attnpick-cold": run_attnpick, "hf-eager": lambda j: run_hf(j, "eager"),
               "hf-sdpa": lambda j: run_hf(j, "sdpa"), "trl": run_trl,
               "trl-packing": lambda j: run_trl(j, packing=True), "unsloth": run_unsloth}
    result = runners[name](job)
    if "first_step_s" not in result:
        result["first_step_s"] = result["first_step_at"] - started if result.get("first_step_at") else None
    result["wall_s"] = time.time() - started
    result["peak_rss_mb"] = peak_rss_mb()
    Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")


def evaluate(job_file: str) -> None:
    """The final eval loss of every adapter, alike: mean loss over the held-out answer tokens (float32, sdpa)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    tokenizer.padding_side = "right"
    rows = [answer_masked(r["messages"], tokenizer, 256) for r in read_jsonl(job["eval"])]
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    losses: dict[str, float] = {}
    base = AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32, attn_implementation="sdpa",
                                                device_map=job["device"])
    for name, adapter in job["adapters"].items():
        model = PeftModel.from_pretrained(base, adapter).eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(rows), 8):
                batch = {k: v.to(job["device"]) for k, v in collate(rows[i:i + 8]).items()}
                labels = batch.pop("labels")
                logits = model(**batch).logits[:, :-1].float()
                target = labels[:, 1:]
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                         ignore_index=-100, reduction="sum")
                total, count = total + float(loss), count + int((target != -100).sum())
        losses[name] = total / count
        base = model.unload()
    Path(job["result"]).write_text(json.dumps(losses), encoding="utf-8")


# ---------------------------------------------------------------- the parent: run, gather, write


def run_contender(name: str, python: str, job: dict[str, Any], env: dict[str, str], log: Path) -> dict[str, Any]:
    job_file = Path(job["work"]) / "job.json"
    Path(job["work"]).mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(job), encoding="utf-8")
    start = time.time()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run([python, __file__, "--child", name, "--job", str(job_file)], env=env, stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    if proc.returncode or not Path(job["result"]).exists():
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail), "wall_s": time.time() - start}
    return json.loads(Path(job["result"]).read_text(encoding="utf-8"))


def table(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per contender, with tokens/s and the ratios over the baseline."""
    base = results.get(BASELINE, {})
    base_rate = base.get("tokens_per_s")
    rows = []
    for name, r in results.items():
        row = {"contender": name, "label": LABELS[name], **{k: r.get(k) for k in (
            "tokens_per_s", "first_step_s", "wall_s", "peak_rss_mb", "eval_loss", "steps", "tokens", "fed",
            "attention", "dtype", "error")}}
        if base_rate and r.get("tokens_per_s"):
            row["speed_vs_baseline"] = r["tokens_per_s"] / base_rate
        if base.get("first_step_s") and r.get("first_step_s"):
            row["startup_vs_baseline"] = r["first_step_s"] / base["first_step_s"]
        if base.get("eval_loss") and r.get("eval_loss"):
            row["eval_loss_vs_baseline"] = r["eval_loss"] / base["eval_loss"] - 1
        rows.append(row)
    return rows


def targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each met or missed by the figures of this run."""
    def rate(name: str) -> float | None:
        return results.get(name, {}).get("tokens_per_s")

    def first(name: str) -> float | None:
        return results.get(name, {}).get("first_step_s")

    checks = []
    ours, base = rate("attnpick"), rate(BASELINE)
    if ours and base:
        checks.append(("tokens/s >= 2.0x contender 2", ours / base, 2.0, ">="))
    peers = [r for r in (rate(n) for n in ("hf-sdpa", "trl", "trl-packing")) if r]
    if ours and peers:
        checks.append(("tokens/s >= 1.0x the best of contenders 3-5", ours / max(peers), 1.0, ">="))
    loss, base_loss = results.get("attnpick", {}).get("eval_loss"), results.get(BASELINE, {}).get("eval_loss")
    if loss and base_loss:
        checks.append(("eval loss within 1% of contender 2's", abs(loss / base_loss - 1), 0.01, "<="))
    if first("attnpick") and first(BASELINE):
        checks.append(("seconds before step 1 (cache warm) <= 1.5x contender 2", first("attnpick") / first(BASELINE),
                       1.5, "<="))
    if first("attnpick-cold") and first(BASELINE):
        checks.append(("seconds before step 1 (first run) <= 3x contender 2",
                       first("attnpick-cold") / first(BASELINE), 3.0, "<="))
    return [{"target": t, "measured": round(v, 4), "bound": b,
             "met": v >= b if op == ">=" else v <= b} for t, v, b, op in checks]


def markdown(doc: dict[str, Any]) -> str:
    def num(v: Any, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    lines = [f"# attnpick beside its peers ({doc['device']})", "",
             f"Measured {doc['when']} on {doc['machine']}; model {doc['model_name']}, {doc['data']['train']} training "
             f"rows ({doc['data']['eval']} held out), {doc['steps']} steps x {doc['batch_size']} rows, 256 tokens, "
             "LoRA r16 on every linear layer. Written by `benchmarks/peers.py`; ratios over contender 2.", "",
             "| contender | attention | dtype | tokens/s | x eager | s to step 1 | x eager | wall s | peak RSS MB "
             "| eval loss | vs eager |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["table"]:
        if r.get("error"):
            lines.append(f"| {r['label']} | failed: {r['error'][:120]} | | | | | | | | | |")
            continue
        lines.append(f"| {r['label']} | {r['attention']} | {r['dtype']} | {num(r['tokens_per_s'], '.1f')} | "
                     f"{num(r.get('speed_vs_baseline'), '.2f')} | {num(r['first_step_s'], '.1f')} | "
                     f"{num(r.get('startup_vs_baseline'), '.2f')} | {num(r['wall_s'], '.0f')} | "
                     f"{num(r['peak_rss_mb'], '.0f')} | {num(r['eval_loss'], '.4f')} | "
                     f"{num(r.get('eval_loss_vs_baseline'), '+.2%')} |")
    lines += ["", "| target | measured | bound | met |", "|---|---:|---:|---|"]
    lines += [f"| {t['target']} | {t['measured']:.3f} | {t['bound']} | {'yes' if t['met'] else '**no**'} |"
              for t in doc["targets"]]
    if doc.get("startup"):
        lines += ["", "attnpick's seconds before step 1, by phase (from train_report.json's `startup`):", "",
                  "| run | before train() | " + " | ".join(doc["startup_phases"]) + " |",
                  "|---|---:|" + "---:|" * len(doc["startup_phases"])]
        for name, s in doc["startup"].items():
            lines.append(f"| {name} | {s['before_train_s']:.1f} | " + " | ".join(
                num(s["phases"].get(p), ".1f") for p in doc["startup_phases"]) + " |")
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["table"] if not r.get("error")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 1.8))
    labels = [r["label"] for r in rows]
    for ax, key, title in ((axes[0], "tokens_per_s", "non-padding tokens/s (higher is better)"),
                           (axes[1], "first_step_s", "seconds before the first step (lower is better)")):
        values = [r.get(key) or 0 for r in rows]
        ax.barh(labels, values, color=["#d62728" if r["contender"].startswith("attnpick") else "#7f7f7f"
                                       for r in rows])
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.1f}", va="center", fontsize=8)
    axes[1].set_yticks([])
    fig.suptitle(f"{doc['model_name']} · {doc['device']} · {doc['steps']} steps x {doc['batch_size']} rows",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def default_model() -> str:
    return subprocess.run(["bash", str(ROOT / "scripts" / "smollm2.sh")], check=True, capture_output=True,
                          text=True).stdout.strip().splitlines()[-1]


def machine() -> str:
    import platform

    cores = os.cpu_count()
    return f"{platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder or .gguf file (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--only", default="", help="comma-separated contenders (default: all): " + ",".join(CONTENDERS))
    parser.add_argument("--unsloth-python", default=str(ROOT / ".venv-unsloth" / "bin" / "python"))
    parser.add_argument("--out", help="folder for peers.json/.md/.png (default: docs/benchmarks/<device>)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--evaluate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate:
        evaluate(args.job)
        return 0
    if args.child:
        child(args.child, args.job)
        return 0
    chosen = [c for c in CONTENDERS if not args.only or c in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contender(s) {', '.join(sorted(unknown))}; choose from {', '.join(CONTENDERS)}")
    model = args.model or default_model()
    if model.endswith(".gguf"):  # the peers read folders: attnpick's conversion, once, as `attnpick train` does
        model = subprocess.run([sys.executable, "-c", "import sys; from attnpick.model.resolve import resolve; "
                                "print(resolve(sys.argv[1])[0])", model], check=True, capture_output=True,
                               text=True, env=dict(os.environ, HF_HUB_OFFLINE="1")).stdout.strip().splitlines()[-1]
    work = Path(tempfile.mkdtemp(prefix="attnpick-peers-"))
    data = write_data(work, args.eval_share, args.seed)
    out = Path(args.out or ROOT / "docs" / "benchmarks" / args.device)
    out.mkdir(parents=True, exist_ok=True)
    base_env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0")
    cache = work / "attnpick-cache"  # empty for the first run, warm for the second
    results: dict[str, dict[str, Any]] = {}
    for name in chosen:
        python = args.unsloth_python if name == "unsloth" else sys.executable
        if name == "unsloth" and not Path(python).exists():
            results[name] = {"error": f"no Unsloth venv at {python} (the CI's Unsloth lane builds it)"}
            continue
        env = dict(base_env, ATTNPICK_CACHE_DIR=str(cache))
        job = {"model": model, "train": str(work / "train.jsonl"), "train_pc": str(work / "train-pc.jsonl"),
               "eval": str(work / "eval.jsonl"), "steps": args.steps, "batch_size": args.batch_size,
               "seed": args.seed, "device": args.device, "work": str(work / name),
               "adapter": str(work / name / "adapter"), "result": str(work / name / "result.json")}
        print(f"peers: {name} ...", file=sys.stderr, flush=True)
        result = run_contender(name, python, job, env, work / f"{name}.log")
        if result.get("tokens") and result.get("train_seconds"):
            result["tokens_per_s"] = result["tokens"] / result["train_seconds"]
        result.setdefault("dtype", "float32" if args.device == "cpu" else "bfloat16")
        results[name] = result
        print(f"peers: {name}: " + (result.get("error") or f"{result.get('tokens_per_s', 0):.1f} tokens/s, "
              f"{result.get('first_step_s') or 0:.1f} s to step 1"), file=sys.stderr, flush=True)
    adapters = {n: str(work / n / "adapter") for n, r in results.items() if not r.get("error")}
    if adapters:
        print("peers: eval loss of every adapter ...", file=sys.stderr, flush=True)
        job = {"model": model, "eval": str(work / "eval.jsonl"), "device": args.device, "adapters": adapters,
               "result": str(work / "eval-result.json")}
        (work / "eval-job.json").write_text(json.dumps(job), encoding="utf-8")
        subprocess.run([sys.executable, __file__, "--evaluate", "--job", str(work / "eval-job.json")], env=base_env,
                       check=True)
        for name, loss in json.loads((work / "eval-result.json").read_text(encoding="utf-8")).items():
            results[name]["eval_loss"] = loss
    startup = {n: results[n]["startup"] for n in ("attnpick-cold", "attnpick") if results.get(n, {}).get("startup")}
    phases = list(dict.fromkeys(p for s in startup.values() for p in s["phases"]))
    doc = {"device": args.device, "when": time.strftime("%Y-%m-%d"), "machine": machine(),
           "model": model, "model_name": Path(model).name if not args.model else args.model, "data": data,
           "steps": args.steps, "batch_size": args.batch_size, "results": results, "table": table(results),
           "targets": targets(results), "startup": startup, "startup_phases": phases}
    if not args.model:
        doc["model_name"] = "SmolLM2-135M-Instruct (Q4_1 GGUF, read as float32)"
    (out / "peers.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / "peers.md").write_text(markdown(doc), encoding="utf-8")
    plot(doc, out / "peers.png")
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
