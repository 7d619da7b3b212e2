"""The benchmark scripts still run (their numbers are measured by hand and committed under docs/benchmarks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import _trl_blocked_on_cpu

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


def test_peers_benchmark_runs_its_contenders_and_writes_the_table_and_plot(tmp_path):
    """benchmarks/peers.py on a saved tiny-exaone folder: attnpick beside transformers' Trainer (eager) and TRL, each
    in its own process, one evaluator for every adapter, the JSON, Markdown and PNG written, the targets judged."""
    from attnpick.loading import load_model

    model, tokenizer, _ = load_model("tiny-exaone", max_seq_length=256)
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "out"
    contenders = ["attnpick", "hf-eager"] + ([] if _trl_blocked_on_cpu() else ["trl"])  # TRL 1.15 + triton: no CPU
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peers.py"), "--model", str(folder), "--steps",
                           "2", "--batch-size", "2", "--only", ",".join(contenders), "--out", str(out)],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "peers.json").read_text())
    assert [row["contender"] for row in doc["table"]] == contenders
    for row in doc["table"]:
        assert not row.get("error"), row
        assert row["steps"] == 2 and row["tokens_per_s"] > 0 and row["first_step_s"] > 0
        assert row["eval_loss"] > 0 and row["peak_rss_mb"] > 0
    assert doc["table"][1]["speed_vs_baseline"] == 1.0 and doc["table"][1]["attention"] == "eager"
    attnpick = doc["results"]["attnpick"]
    assert attnpick["packing"] is True and "packing check" in attnpick["startup"]["phases"]
    judged = {t["target"] for t in doc["targets"]}
    assert "tokens/s >= 2.0x contender 2" in judged and "eval loss within 1% of contender 2's" in judged
    assert (out / "peers.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 2. Trainer + peft, eager, padded | eager |" in (out / "peers.md").read_text()
