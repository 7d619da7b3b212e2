"""Where a CPU training step's time goes, 4-bit (NF4) against the unquantized model, side by side in one run:
the model loaded through attnpick's chain (backend as `attnpick train` picks it), a LoRA on every linear layer as
`attnpick train` attaches it, one packed batch of the data as `attnpick train` feeds it, and the torch profiler's
self CPU time of two steps (forward, backward, optimizer) grouped by what the op does, and the same unquantized
step on padded batches: 4-bit dequantization,
matrix products (base weights and LoRA), attention, the loss, the optimizer, the rest.

    .venv/bin/python benchmarks/cpu_step.py MODEL [--data FILE] [--batch-size 8] [--json]

At 256 tokens attention is a few percent of the step: the matrix products (and, in 4-bit, the dequantization in
front of each of them) are what a CPU spends its time on.
"""

from __future__ import annotations

import argparse
import json
import time

GROUPS = (  # first match wins: (group, substrings of the op's name)
    ("4-bit dequantization", ("bitsandbytes", "dequantize", "quantize_4bit")),
    ("loss", ("cross_entropy", "nll_loss", "log_softmax")),
    ("attention", ("scaled_dot_product", "_flash_attention", "_efficient_attention", "softmax")),
    ("optimizer", ("optimizer", "adam", "_foreach")),
    ("matrix products (base + LoRA)", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
)


def group_of(op: str) -> str:
    low = op.lower()
    for group, needles in GROUPS:
        if any(n in low for n in needles):
            return group
    return "the rest (norms, rotary, activations, copies)"


def step_profile(model_name: str, four_bit: bool, data: str, batch_size: int, packed: bool = True) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from attnpick.load.lora import attach
    from attnpick.loading import load_model
    from attnpick.training.config import DEFAULT_TARGETS
    from attnpick.training.data import load_examples

    model, tokenizer, report = load_model(model_name, max_seq_length=256, load_in_4bit=four_bit)
    model = attach(model, report.chosen, r=16, lora_alpha=32, lora_dropout=0.0, target_modules=list(DEFAULT_TARGETS),
                   seed=42)
    model.config.use_cache = False
    examples, _ = load_examples(data, tokenizer, 256)
    rows = [{k: examples[i][k] for k in ("input_ids", "labels")} for i in range(batch_size)]
    if packed:  # as `attnpick train` feeds it: sdpa on each packed sequence, logits only where an answer follows
        from attnpick.training.answer_logits import AnswerLogits
        from attnpick.training.packing import packed_path

        collator, _ = packed_path(model, report.chosen)
        batch = AnswerLogits(collator)(rows)
    else:
        from transformers import DataCollatorForSeq2Seq

        tokenizer.padding_side = "right"
        batch = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)(rows)
    batch = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in batch.items()}
    tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["input_ids"].numel())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()

    def step() -> None:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
        step()
    seconds = (time.perf_counter() - start) / 2
    groups: dict[str, float] = {}
    for event in prof.key_averages():
        groups[group_of(event.key)] = groups.get(group_of(event.key), 0.0) + event.self_cpu_time_total / 2e3
    total = sum(groups.values())
    return {"quantization": report.quantization, "backend": report.chosen, "tokens": tokens,
            "seconds_per_step": seconds, "tokens_per_s": tokens / seconds,
            "ms": {g: round(v, 1) for g, v in sorted(groups.items(), key=lambda kv: -kv[1])},
            "share": {g: round(v / total, 3) for g, v in groups.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--data", default="embedded")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = {"4-bit, packed": (True, True), "unquantized, packed": (False, True),
             "unquantized, padded": (False, False)}
    results = {mode: step_profile(args.model, four_bit, args.data, args.batch_size, packed)
               for mode, (four_bit, packed) in modes.items()}
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for mode, r in results.items():
        print(f"{mode}: {r['tokens']} tokens a step, {r['seconds_per_step']:.2f} s a step, "
              f"{r['tokens_per_s']:.0f} tokens/s ({r['backend']})")
        for group, ms in r["ms"].items():
            print(f"  {group:<45} {ms:>9.1f} ms  {100 * r['share'][group]:5.1f}%")
    packed = results["unquantized, packed"]["tokens_per_s"]
    print(f"unquantized / 4-bit tokens/s (packed): {packed / results['4-bit, packed']['tokens_per_s']:.2f}x; "
          f"packed / padded (unquantized): {packed / results['unquantized, padded']['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
