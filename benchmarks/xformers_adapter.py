"""The xFormers adapter's overhead in training: `xformers_attention_forward` (transformers' layout in and out; k/v
repeated to the query heads, since xFormers 0.0.35 has no backward for 5-D GQA) against the raw
`xformers.ops.memory_efficient_attention` call on k/v repeated beforehand, outside the timed region, side by side in
one run. The ratio therefore counts the adapter's layout work and its k/v copy. Target: raw time / adapter time >=
0.97. Needs an NVIDIA GPU and xformers.

    python benchmarks/xformers_adapter.py [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def timed(fn, repeats: int = 50, warmup: int = 10) -> float:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure(batch: int, seq: int) -> dict:
    import torch
    import xformers.ops as xops
    from xformers.ops.fmha.attn_bias import LowerTriangularFromBottomRightMask

    from attnpick.backends.xformers import xformers_attention_forward

    module = torch.nn.Module()
    module.is_causal = True
    module.train()
    heads, kv, dim = 32, 8, 80  # EXAONE-3.5-2.4B
    q = torch.randn(batch, heads, seq, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(batch, kv, seq, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(batch, kv, seq, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(batch, seq, heads, dim, device="cuda", dtype=torch.bfloat16)
    # The raw call in xformers' own 4-D layout, prepared (k/v repeated) outside the timed region.
    q4 = q.detach().transpose(1, 2).contiguous().requires_grad_()
    k4, v4 = (t.detach().repeat_interleave(heads // kv, dim=1).transpose(1, 2).contiguous().requires_grad_()
              for t in (k, v))
    mask = LowerTriangularFromBottomRightMask()

    def raw() -> None:
        xops.memory_efficient_attention(q4, k4, v4, attn_bias=mask).backward(grad)

    def adapter() -> None:
        out, _ = xformers_attention_forward(module, q, k, v, None, scaling=dim**-0.5)
        out.backward(grad)

    raw_ms, adapter_ms = timed(raw), timed(adapter)
    ratio = raw_ms / adapter_ms
    return {"batch": batch, "seq": seq, "raw_ms": raw_ms, "adapter_ms": adapter_ms, "ratio": ratio,
            "target": 0.97, "met": ratio >= 0.97}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("needs an NVIDIA GPU", file=sys.stderr)
        return 2
    rows = [measure(batch, seq) for batch, seq in ((8, 256), (4, 1024), (1, 4096))]
    import xformers

    result = {"device": torch.cuda.get_device_name(), "xformers": xformers.__version__, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for r in rows:
            print(f"B={r['batch']} S={r['seq']}: raw {r['raw_ms']:.3f} ms, adapter {r['adapter_ms']:.3f} ms, "
                  f"ratio {r['ratio']:.3f} (target >= 0.97: {'met' if r['met'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
