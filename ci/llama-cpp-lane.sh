#!/usr/bin/env bash
# The llama.cpp lane: llama-cpp-python (llama.cpp itself, built from source) in the main lane's .venv, and the tests
# that load attnpick's GGUF files in llama.cpp (greedy tokens against transformers, k-quants through its quantizer).
# The build takes a few minutes on 2 cores; its wheel is cached in $ATTNPICK_WHEEL_CACHE (default
# ~/.cache/attnpick/wheels), so a rerun on the same machine installs it in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
version=0.3.36
cache=${ATTNPICK_WHEEL_CACHE:-$HOME/.cache/attnpick/wheels}
[ -x .venv/bin/python ] || { echo "llama.cpp lane: no .venv; run ./dev test first (it sets it up)" >&2; exit 2; }
wheel=$(ls "$cache"/llama_cpp_python-$version-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  echo "llama.cpp lane: building llama-cpp-python $version (cached in $cache)" >&2
  mkdir -p "$cache"
  start=$(date +%s)
  # Portable CPU code (no -march=native: the cached wheel runs on any x86-64), the library only.
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    .venv/bin/python -m pip wheel -q --no-deps "llama-cpp-python==$version" -w "$cache"
  echo "llama.cpp lane: built in $(( $(date +%s) - start ))s" >&2
  wheel=$(ls "$cache"/llama_cpp_python-$version-*.whl | head -1)
fi
.venv/bin/python -m pip install -q "$wheel"
ATTNPICK_REQUIRE_LLAMA_CPP=1 .venv/bin/python -m pytest -q -n 2 --dist loadfile -m llama_cpp "$@"
