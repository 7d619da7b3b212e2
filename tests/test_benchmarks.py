"""The benchmark scripts still run (their numbers are measured by hand and committed under docs/benchmarks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_packing_benchmark_runs_all_three_modes():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "packing.py"), "--model", "tiny-exaone",
                           "--steps", "2", "--batch-size", "4", "--json"], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert set(out["results"]) == {"packed", "padded", "group_by_length"}
    assert out["results"]["packed"]["padding_share"] == 0.0
    assert out["results"]["padded"]["padding_share"] > out["results"]["group_by_length"]["padding_share"]
    assert out["lengths"]["rows"] == 360 and out["lengths"]["max"] <= 256


def test_cpu_step_profile_runs_its_three_modes_and_accounts_for_the_step():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu_step.py"), "tiny-exaone", "--batch-size",
                           "2", "--json"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert list(out) == ["4-bit, packed", "unquantized, packed", "unquantized, padded"]
    assert out["4-bit, packed"]["quantization"] == "bitsandbytes-nf4"
    assert out["unquantized, packed"]["quantization"] is None
    for mode in out.values():
        assert mode["tokens_per_s"] > 0 and sum(mode["share"].values()) == pytest.approx(1.0, abs=0.01)
        assert mode["ms"]["attention"] > 0 and mode["ms"]["matrix products (base + LoRA)"] > 0
