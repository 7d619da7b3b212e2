#!/usr/bin/env bash
# The Unsloth lane: Unsloth 2026.10 in its own venv (.venv-unsloth) with its pins (transformers <= 5.17,
# trl <= 1.15) and the CPU torch build. Here Unsloth runs its CPU mode. Runs the Unsloth tests and then the
# whole suite again, so transformers 5.17 (no native EXAONE: attnpick's Llama mapping) is tested too, and
# kernels 0.16 (the range transformers 5.17 accepts) runs the kernels-hub path on CPU (tests/test_hub_kernel_cpu.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1  # no hub here; bitsandbytes and kernels must not try it
export ATTNPICK_REQUIRE_XFORMERS=1  # Unsloth installs xformers: the GPU contract tests run its checks here too
venv=.venv-unsloth
stamp=$venv/.attnpick-setup
want="$(cat ci/unsloth-constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x $venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "unsloth lane: setting up $venv" >&2
  python3 -m venv $venv
  $venv/bin/python -m pip install -q torch==2.13.0
  $venv/bin/python -m pip install -q -c ci/unsloth-constraints.txt unsloth==2026.10.9
  # pip picks a CUDA torchvision from this machine's disk, which breaks `import unsloth` on CPU torch.
  $venv/bin/python -m pip uninstall -q -y torchvision
  $venv/bin/python -m pip install -q -c ci/unsloth-constraints.txt -e ".[dev,hub]"
  echo "$want" > "$stamp"
fi
$venv/bin/python -c "import transformers, unsloth; print('unsloth lane:', unsloth.__version__, 'transformers', transformers.__version__)" 2>/dev/null
$venv/bin/python -m pytest -q -n 2 --dist loadfile tests/unsloth "$@"
# Not again here: the install test (a second fresh venv would test the same commands), attnpick's own input
# handling (run folders, odd inputs, bad inputs, model options, a console that cannot encode Korean), its
# subprocess plumbing, its layout and the GPU check's driver, which no transformers version changes; they ran
# in the main lane.
$venv/bin/python -m pytest -q -n 2 --dist loadfile -m "not unsloth and not install and not slow" \
  --ignore tests/test_run_folder.py --ignore tests/test_odd_inputs.py --ignore tests/test_bad_inputs.py \
  --ignore tests/test_model_options.py --ignore tests/test_windows.py --ignore tests/test_subproc.py \
  --ignore tests/test_layout.py --ignore tests/test_gpu_check.py "$@"
