#!/usr/bin/env bash
# The wheels the lent GPU machine lacks (Python 3.12, manylinux x86_64; nothing can be fetched there), into .whl/,
# exact versions, at most 64 MiB per run (docs/gpu-check.md):
#   bash scripts/gpu-wheels.sh core      # for `scripts/gpu-check.sh`
#   bash scripts/gpu-wheels.sh unsloth   # for `scripts/gpu-check.sh --unsloth`
# The image already has torch 2.11.0+cu130, transformers 5.17, peft, accelerate, pyarrow, pandas, xxhash, fsspec,
# huggingface-hub, psutil and rich. Two wheels are slimmed here, never changed otherwise: bitsandbytes keeps the
# library for the machine's CUDA 13.0 and the CPU one (its full wheel carries a library per CUDA and ROCm release,
# 43 MB), Unsloth drops its `studio` web app (88 MB unpacked). kernels is not carried: it needs the hub to fetch a
# kernel, which neither machine reaches.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-core}
core="bitsandbytes==0.50.2 xformers==0.0.35 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 trl==1.16.0
platformdirs==4.14.9 gguf==0.19.0"
# Unsloth 2026.10.9 with what it imports, at the versions the Unsloth CI lane resolves (transformers <= 5.17, the
# image's; trl 1.15; datasets < 5).
unsloth="unsloth==2026.10.9 unsloth_zoo==2026.10.9 bitsandbytes==0.50.2 xformers==0.0.35 datasets==4.8.5 dill==0.4.1
multiprocess==0.70.19 trl==1.15.0 platformdirs==4.14.9 gguf==0.19.0 tyro==1.0.17 docstring_parser==0.18.0
typeguard==4.6.1 hf_transfer==0.1.9 cut-cross-entropy==25.1.1 msgspec==0.23.0 json5==0.17.3 nest-asyncio==1.6.0
structlog==26.1.0 diffusers==0.42.1 torchao==0.18.0 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0
typing-inspection==0.4.5 importlib_metadata==10.2.0 lazy-importer==0.1.0 tzdata==2026.6"
case "$run" in core) wanted=$core ;; unsloth) wanted=$unsloth ;; *) echo "usage: $0 core|unsloth" >&2; exit 2 ;; esac
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $wanted
python3 - <<'PY'
"""Slim two wheels: drop files (and their RECORD lines) the GPU machine never loads."""
import pathlib, zipfile

def slim(wheel: pathlib.Path, drop) -> None:
    out = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if drop(item.filename):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"\n".join(line for line in data.split(b"\n") if not drop(line.split(b",")[0].decode()))
            dst.writestr(item, data)
    out.replace(wheel)

for wheel in pathlib.Path(".whl").glob("bitsandbytes-*.whl"):
    slim(wheel, lambda name: name.startswith("bitsandbytes/libbitsandbytes_") and not name.endswith(("_cuda130.so", "_cpu.so")))
for wheel in pathlib.Path(".whl").glob("unsloth-*.whl"):
    slim(wheel, lambda name: name.startswith("studio/"))
PY
du -ch .whl/*.whl | tail -1
