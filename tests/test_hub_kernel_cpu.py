"""The hub provider's whole path on a CPU: probe -> decision -> smoke run -> load -> confirmation, then parity and a
packed training step, with a kernel given through the kernels package's LOCAL_KERNELS (tests/hub_kernel.py).

Runs where the installed `kernels` is a version the installed transformers loads hub kernels with. transformers
5.24 (the main lane) asks for kernels >= 0.18.2, which PyPI does not carry yet; the Unsloth lane (transformers 5.17,
kernels 0.16) runs these."""

from __future__ import annotations

import json
import subprocess

import pytest

from attnpick.decide.probe import collect_facts
from tests.helpers import run_cli
from tests.hub_kernel import write_kernel

REPO = "kernels-community/flash-attn2"


def _hub_path_available() -> str | None:
    facts = collect_facts()
    kernels, allowed = facts.package("kernels"), facts.hub.kernels_range
    if kernels.version is None:
        return "kernels is not installed"
    from packaging.specifiers import SpecifierSet

    if allowed and kernels.version not in SpecifierSet(allowed):
        return f"kernels {kernels.version} is outside transformers' range {allowed}"
    return None


pytestmark = pytest.mark.skipif(bool(why := _hub_path_available()), reason=f"hub path not loadable here: {why}")


def cli(*args: str, kernel_dir) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={"LOCAL_KERNELS": f"{REPO}={kernel_dir}", "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    return write_kernel(tmp_path_factory.mktemp("kernel") / "flash-attn2")


def test_load_proves_and_confirms_flash_attention_from_a_local_hub_kernel(kernel_dir):
    proc = cli("load", "--dtype", "bfloat16", "--max-seq-length", "256", "--json", kernel_dir=kernel_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["chosen"] == "flash_attention_2"
    fa2 = next(c for c in report["decision"]["candidates"] if c["backend"] == "flash_attention_2")
    assert fa2["provider"] == "hub" and fa2["attn_implementation"] == REPO
    attempt = next(a for a in report["attempts"] if a["backend"] == "flash_attention_2")
    assert attempt["outcome"] == "loaded" and attempt["smoke"]["ok"] is True
    conf = report["confirmation"]
    assert conf["ok"] is True and conf["attn_implementation"] == REPO
    assert conf["calls"] == {"transformers.integrations.flash_attention.flash_attention_forward": conf["layers"]}


def test_the_local_kernel_is_in_the_facts(kernel_dir):
    proc = cli("doctor", "--json", kernel_dir=kernel_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["facts"]["hub"]["local"] == {REPO: str(kernel_dir)}


def test_verify_compares_the_hub_kernel_with_eager(kernel_dir):
    proc = cli("verify", "--dtype", "bfloat16", "--backends", "flash_attention_2", "--json", kernel_dir=kernel_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [result] = json.loads(proc.stdout)["results"]
    assert result["backend"] == "flash_attention_2" and result["ok"], result


def test_packed_training_runs_through_the_kernels_varlen_function(kernel_dir, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "--output", str(out), "--backend", "flash_attention_2", "--dtype", "bfloat16", "--no-4bit",
               "--max-steps", "2", "--batch-size", "4", "--json", kernel_dir=kernel_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["backend"] == "flash_attention_2" and report["steps"] == 2
    assert report["packing"]["enabled"] is True and report["packing"]["checked"] is True


def test_a_broken_hub_kernel_fails_its_smoke_run_and_the_chain_goes_on(tmp_path):
    broken = write_kernel(tmp_path / "broken", failure="planted: this kernel build is broken")
    proc = cli("load", "--dtype", "bfloat16", "--json", kernel_dir=broken)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    fa2 = next(a for a in report["attempts"] if a["backend"] == "flash_attention_2")
    assert fa2["outcome"] == "smoke_failed" and "planted" in fa2["reasons"][0]["message"]
    assert report["chosen"] == "sdpa"


def test_bench_measures_the_hub_kernel_and_names_its_provider(kernel_dir):
    proc = cli("bench", "--mode", "kernel", "--backends", "flash_attention_2", "--dtype", "bfloat16", "--seq-lens",
               "64", "--repeats", "2", "--no-verify", "--json", kernel_dir=kernel_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)["rows"]
    fa2 = next(r for r in rows if r["backend"] == "flash_attention_2")
    assert fa2["ok"], fa2["error"]
    pinned = collect_facts().hub.flash_kernels["flash_attention_2"].version  # the installed transformers' pin
    assert fa2["version"] == f"flash_attention_2 (hub {REPO} v{pinned})"
    assert fa2["forward_backward"]["median_s"] > 0
