"""Padding-free packing against what users otherwise do, side by side in one run: padded batches in random order,
and padded batches grouped by length (transformers' group_by_length). Same model, backend, data, batch size,
seed and steps; the measure is non-padding tokens per second of `attnpick train`.

Targets: packed >= 1.5x padded and >= 1.15x group_by_length, on the embedded data at 256 tokens. The default model
is `exaone-50m-random` (EXAONE-shaped, ~46M parameters, random weights: timing only), large enough that compute,
not per-step overhead, dominates the step; tiny-exaone is too small for that.

    .venv/bin/python benchmarks/packing.py [--model exaone-50m-random] [--steps 20] [--batch-size 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from attnpick.training import TrainConfig, train

MODES = {
    "packed": {"packing": "on"},
    "padded": {"packing": "off"},
    "group_by_length": {"packing": "off", "group_by_length": True},
}


def length_distribution(model: str, max_seq_length: int) -> dict[str, float]:
    """Token lengths of the embedded data after the chat template, as the run trains on them."""
    from transformers import AutoTokenizer

    from attnpick.model.resolve import prepare
    from attnpick.training.data import load_examples

    tokenizer = AutoTokenizer.from_pretrained(str(prepare(model).load_folder), trust_remote_code=False)
    dataset, stats = load_examples("embedded", tokenizer, max_seq_length)
    lengths = sorted(len(ids) for ids in dataset["input_ids"])
    quartiles = statistics.quantiles(lengths, n=4)
    return {"rows": stats.rows, "min": lengths[0], "q1": quartiles[0], "median": quartiles[1], "q3": quartiles[2],
            "max": lengths[-1], "mean": statistics.fmean(lengths), "at_max": sum(n == max_seq_length for n in lengths)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="exaone-50m-random")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--4bit", dest="four_bit", action="store_true", help="QLoRA (needs a real checkpoint)")
    parser.add_argument("--backend", default="auto", help="the attention backend of all three runs (default: auto)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, options in MODES.items():
            config = TrainConfig(model=args.model, output=str(Path(tmp) / mode), max_steps=args.steps,
                                 batch_size=args.batch_size, max_seq_length=args.max_seq_length, save_steps=10_000,
                                 load_in_4bit=args.four_bit, progress=False, backend=args.backend, **options)
            report = train(config)
            assert report is not None
            results[mode] = {"tokens_per_s": report.tokens_per_s, "seconds": report.seconds,
                             "tokens_seen": report.tokens_seen, "tokens_fed": report.tokens_fed,
                             "padding_share": report.padding_share, "backend": report.backend,
                             "packing": report.packing.reason}
    packed = results["packed"]["tokens_per_s"]
    ratios = {"packed_vs_padded": packed / results["padded"]["tokens_per_s"],
              "packed_vs_group_by_length": packed / results["group_by_length"]["tokens_per_s"]}
    targets = {"packed_vs_padded": 1.5, "packed_vs_group_by_length": 1.15}
    out = {"model": args.model, "max_seq_length": args.max_seq_length, "batch_size": args.batch_size,
           "steps": args.steps, "four_bit": args.four_bit, "results": results, "ratios": ratios, "targets": targets,
           "met": {k: ratios[k] >= targets[k] for k in ratios},
           "lengths": length_distribution(args.model, args.max_seq_length)}
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    for mode, r in results.items():
        print(f"{mode:16} {r['tokens_per_s']:9,.0f} non-padding tokens/s   padding {r['padding_share']:.0%} of "
              f"{r['tokens_fed']:,} tokens fed   ({r['seconds']:.1f} s, {r['backend']})")
    for key, ratio in ratios.items():
        print(f"{key:28} {ratio:.2f}x  (target >= {targets[key]}x: {'met' if ratio >= targets[key] else 'NOT met'})")
    print("lengths:", out["lengths"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
