#!/usr/bin/env bash
# The CPU figures of docs/guide.md: `attnpick bench` on this machine, written to docs/benchmarks/cpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/benchmarks/cpu}
mkdir -p "$out"
bin=.venv/bin/attnpick
$bin doctor --json > "$out/doctor.json"
$bin verify tiny-exaone --json > "$out/verify-tiny-exaone.json"
$bin bench tiny-exaone --mode kernel --seq-lens 256,1024,4096 --json --plot "$out/kernel-tiny-exaone.png" \
  > "$out/kernel-tiny-exaone.json"
# EXAONE-2.4B's attention shapes (32 heads, 8 kv heads, head_dim 80). Random weights: parity is checked on
# tiny-exaone above with the same kernels, as verifying a 2.4B model in float32 four times does not fit here.
$bin bench exaone-2.4b-random --mode kernel --seq-lens 256,1024,4096 --repeats 3 --no-verify --json \
  --plot "$out/kernel-exaone-2.4b.png" > "$out/kernel-exaone-2.4b.json"
$bin bench tiny-exaone --mode train --seq-lens 256 --batch 8 --json --plot "$out/train-tiny-exaone.png" \
  > "$out/train-tiny-exaone.json"
.venv/bin/python benchmarks/packing.py --json > "$out/packing-exaone-50m.json"
echo "written to $out"
