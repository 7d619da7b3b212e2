#!/usr/bin/env bash
# The real model end to end (README "Try a real model", docs/real-model.md): fine-tune MODEL on the welcome task
# with `attnpick train`, take the model away (a merged folder for transformers, an f16 GGUF file for llama.cpp)
# and ask it with `attnpick chat`. Each command is printed before it runs.
#   examples/welcome/run.sh MODEL [RUN]      (RUN default: runs/welcome-<time>)
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:?usage: examples/welcome/run.sh MODEL [RUN]}
run=${2:-runs/welcome-$(date +%Y%m%d-%H%M%S)}
step() { echo "+ attnpick $*" >&2; .venv/bin/attnpick "$@"; }
step train "$model" --data examples/welcome/train.jsonl --eval-data examples/welcome/eval.jsonl --epochs 2 --batch-size 4 \
  --eval-steps 16 --output "$run"
step export "$run" --format merged --output "$run-merged"
step export "$run" --format gguf --quantization f16 --output "$run-gguf"
step chat "$run" --prompt "Welcome card: name=Yuna Oh; city=Busan; team=Design"
