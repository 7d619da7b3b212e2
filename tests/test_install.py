"""The README's Linux install commands, run as written in a fresh venv, with the two changes a CPU-only CI machine
needs: the CPU torch in place of the CUDA one, and no xFormers line (its wheels are CUDA builds). `doctor` must
answer. Marked `install`: it downloads and installs every dependency (minutes), so it runs in the main lane only."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def linux_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Install on your GPU machine", 1)[1]
    block = re.search(r"Linux:\s*```bash\n(.*?)```", section, re.S)
    assert block, "README: the Linux block of 'Install on your GPU machine' is missing"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_documented_linux_commands_are_the_ones_this_test_runs():
    lines = linux_commands()
    assert lines[0].startswith("python3 -m venv .venv") and lines[-1] == "python -m attnpick doctor"
    assert any(line.startswith("pip install torch --index-url https://download.pytorch.org/whl/cu") for line in lines)
    assert any(line.startswith('pip install -e ".[') for line in lines)


@pytest.mark.install
def test_the_documented_linux_install_works_in_a_fresh_venv(tmp_path):
    script = []
    for line in linux_commands():
        if line.startswith("pip install torch "):
            line = "pip install -q torch==2.13.0"  # the CPU build, from this machine's disk
        elif line.startswith("pip install xformers"):
            continue  # CUDA wheels only
        elif line.startswith("pip install"):
            line = line.replace("pip install", "pip install -q -c <(echo torch==2.13.0)", 1)
        script.append(line.replace(".venv", str(tmp_path / "venv")))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["ATTNPICK_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=1500, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (script, proc.stdout[-2000:], proc.stderr[-4000:])
    assert "Chosen: sdpa" in proc.stdout, proc.stdout[-3000:]  # a CPU machine: PyTorch's own SDPA
