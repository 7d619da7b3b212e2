#!/usr/bin/env bash
# Every GPU check and benchmark of attnpick in one run (< 8 minutes), for a lent NVIDIA machine:
#   gpu-marked tests, doctor, verify (bf16), kernel bench on tiny-exaone and on EXAONE-2.4B's shapes,
#   a LoRA train bench at 256 tokens, the xFormers adapter against the raw xformers call, packing three ways per
#   varlen-capable backend (PyTorch's varlen FlashAttention, SDPA), the kernel each backend ran, the measured policy.
# Wheels the machine lacks (xformers, bitsandbytes; unsloth in a second call) travel in .whl/ (see the device
# tool's README); they are installed into /tmp/site. Results go to $OUT (at most 8 files).
#   OUT=out/gpu bash scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT/parts"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 ATTNPICK_CACHE_DIR=${ATTNPICK_CACHE_DIR:-/tmp/attnpick-cache}
# A kernels cache carried as .kernel-cache (docs/hub-kernels.md) lets tests/gpu/test_hub_kernels_gpu.py load the
# real FlashAttention hub kernels offline.
[ -d .kernel-cache ] && export KERNELS_CACHE=$PWD/.kernel-cache
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:$PWD:${PYTHONPATH:-}
py=python3
log="$OUT/log.txt"
step() { echo "== $*" | tee -a "$log"; }
start=$(date +%s)

step "device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$log"
step "doctor"; $py -m attnpick doctor --json > "$OUT/parts/doctor.json" 2>>"$log"
step "gpu tests"; timeout 150 $py -m pytest -q -m gpu tests/gpu -p no:cacheprovider 2>&1 | tee "$OUT/gpu-tests.txt" | tail -5 | tee -a "$log"
step "verify bf16"; timeout 120 $py -m attnpick verify tiny-exaone --dtype bfloat16 --json > "$OUT/parts/verify.json" 2>>"$log"
step "kernel tiny"; timeout 90 $py -m attnpick bench tiny-exaone --dtype bfloat16 --no-verify --json \
  --plot "$OUT/kernel-tiny-exaone.png" > "$OUT/parts/kernel-tiny-exaone.json" 2>>"$log"
step "kernel 2.4b"; timeout 120 $py -m attnpick bench exaone-2.4b-random --dtype bfloat16 --batch 4 --no-verify \
  --json --plot "$OUT/kernel-exaone-2.4b.png" > "$OUT/parts/kernel-exaone-2.4b.json" 2>>"$log"
step "train 2.4b lora"; timeout 120 $py -m attnpick bench exaone-2.4b-random --mode train --seq-lens 256 --batch 8 \
  --lora --dtype bfloat16 --repeats 5 --no-verify --json --plot "$OUT/train-exaone-2.4b.png" \
  > "$OUT/parts/train-exaone-2.4b.json" 2>>"$log"
step "xformers adapter"; timeout 60 $py benchmarks/xformers_adapter.py --json > "$OUT/parts/xformers-adapter.json" 2>>"$log"
# Packed / padded / group_by_length LoRA steps at 256 tokens, per varlen-capable backend (auto picks the first).
for backend in auto torch_varlen sdpa; do
  step "packing 2.4b $backend"; timeout 120 $py benchmarks/packing.py --model exaone-2.4b-random --steps 10 \
    --backend $backend --json > "$OUT/parts/packing-exaone-2.4b-$backend.json" 2>>"$log"
done
step "kernel that ran"; for backend in torch_varlen sdpa; do
  timeout 60 $py -m attnpick load exaone-2.4b-random --backend $backend --dtype bfloat16 --json \
    > "$OUT/parts/load-$backend.json" 2>>"$log"
done
step "measured policy"; timeout 60 $py -m attnpick load --policy measured --max-seq-length 256 --dtype bfloat16 --json \
  > "$OUT/parts/measured.json" 2>>"$log"
$py - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
merged = {}
for part in sorted((out / "parts").glob("*.json")):
    try:
        merged[part.stem] = json.loads(part.read_text())
    except ValueError:
        merged[part.stem] = {"error": "no JSON", "text": part.read_text()[-2000:]}
(out / "results.json").write_text(json.dumps(merged, indent=1))
PY
rm -rf "$OUT/parts"
echo "done in $(( $(date +%s) - start ))s" | tee -a "$log"
