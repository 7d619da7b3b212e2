#!/usr/bin/env bash
# attnpick's GPU check on the lent GPU machine (docs/gpu-check.md): two runs of at most 8 minutes each.
#   bash scripts/gpu-wheels.sh core            # here, once: the wheels the machine lacks, into .whl/ (carried)
#   OUT=$OUT bash scripts/gpu-check.sh          # there: without Unsloth
#   OUT=$OUT bash scripts/gpu-check.sh --unsloth  # there, after `bash scripts/gpu-wheels.sh unsloth` here
#   bash scripts/gpu-check.sh --dry-run         # here: every step's control flow on this CPU (< 5 minutes)
# Carried wheels go to /tmp/site; the steps, their budgets and the files that come back are in scripts/gpu_check.py.
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
case " $* " in
  *" --dry-run "*) [ -x .venv/bin/python ] && py=${PYTHON:-.venv/bin/python} ;;
  *) if compgen -G ".whl/*.whl" > /dev/null; then
       python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
         .whl/*.whl || exit
       export PYTHONPATH=/tmp/site
     fi ;;
esac
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}
exec "$py" scripts/gpu_check.py "$@"
