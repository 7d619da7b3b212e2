"""Padding-free packing against padded batches at 256 tokens on the embedded length mix, side by side in one
run: useful (non-padding) tokens per second of `attnpick train`, same model, backend, batch and steps.
Target: packed / padded >= 1.5 (published padding-free results: about 2x on short, varied data).

    .venv/bin/python benchmarks/packing.py [--model tiny-exaone] [--steps 20] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny-exaone")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-4bit", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from attnpick.training import TrainConfig, train

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for packing in ("on", "off"):
            config = TrainConfig(model=args.model, output=str(Path(tmp) / packing), packing=packing,
                                 max_steps=args.steps, batch_size=args.batch_size, save_steps=10_000,
                                 load_in_4bit=not args.no_4bit, progress=False)
            report = train(config)
            results[packing] = {"tokens_per_s": report.tokens_per_s, "seconds": report.seconds,
                                "tokens_seen": report.tokens_seen, "backend": report.backend,
                                "packing": report.packing.reason}
    ratio = results["on"]["tokens_per_s"] / results["off"]["tokens_per_s"]
    out = {"model": args.model, "max_seq_length": 256, "batch_size": args.batch_size, "steps": args.steps,
           "packed": results["on"], "padded": results["off"], "ratio": ratio, "target": 1.5, "met": ratio >= 1.5}
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        verdict = "met" if out["met"] else "NOT met"
        print(f"packed: {results['on']['tokens_per_s']:.0f} tokens/s, padded: {results['off']['tokens_per_s']:.0f} "
              f"tokens/s (non-padding tokens), ratio {ratio:.2f}x (target >= 1.5x: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
