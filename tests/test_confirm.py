"""The confirmation names the kernel each attention call ran (torch profiler), and warns when auto's SDPA ran its
math kernel on a GPU."""

from __future__ import annotations

import json

import pytest

from attnpick import load_model
from attnpick.decide.decision import Request, choose
from attnpick.decide.facts import ModelFacts
from attnpick.load.confirm import EAGER_KERNEL, MATH_KERNEL, Confirmation, kernel_words, slow_kernel_note
from tests.helpers import machine, run_cli

EXAONE_24B = ModelFacts(model_type="exaone", head_dim=80, num_attention_heads=32, num_key_value_heads=8)


@pytest.mark.parametrize("backend, op", [
    ("auto", "aten::_scaled_dot_product_flash_attention_for_cpu"),
    ("sdpa_math", MATH_KERNEL),
    ("eager", EAGER_KERNEL),
])
def test_the_load_report_names_the_kernel_every_layer_ran(facts, backend, op):
    _, _, report = load_model("tiny-exaone", max_seq_length=256, backend=backend, facts=facts)
    conf = report.confirmation
    assert conf.ok and conf.layer_kernels == (op,) * conf.layers
    assert conf.to_dict()["kernels"] == {op: conf.layers}
    assert f"{op} x{conf.layers} ({kernel_words(op)})" == conf.kernel_line()


def test_load_json_names_the_aten_kernel():
    proc = run_cli("load", "--json", "--backend", "sdpa_math", "--max-seq-length", "256")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert set(report["confirmation"]["kernels"]) == {MATH_KERNEL}
    assert "profiler_start" not in proc.stderr  # torch 2.13's profiler log lines are dropped


def _confirmed(*ops: str) -> Confirmation:
    return Confirmation("sdpa", {"sdpa_attention_forward": len(ops)}, len(ops), True, layer_kernels=ops)


def test_math_on_a_windows_gpu_with_gqa_warns_and_names_xformers():
    facts = machine("windows", "RTX4090", torch="2.13.0+cu130")
    decision = choose(facts, model_facts=EXAONE_24B)
    assert decision.chosen == "sdpa"
    note = slow_kernel_note(facts, decision, _confirmed(MATH_KERNEL, MATH_KERNEL))
    assert note.startswith("WARNING: SDPA ran its math kernel")
    assert "grouped-query attention (32/8 heads)" in note and "xformers" in note and "unsloth" not in note


@pytest.mark.parametrize("facts, ops", [
    (machine("linux", torch="2.13.0"), (MATH_KERNEL,)),  # a CPU: no faster backend trains there
    (machine("windows", "RTX4090", torch="2.13.0+cu130"), ("aten::_scaled_dot_product_efficient_attention",)),
], ids=["cpu", "gpu-fused-kernel"])
def test_no_warning_where_nothing_is_faster_or_a_fused_kernel_ran(facts, ops):
    assert slow_kernel_note(facts, choose(facts, model_facts=EXAONE_24B), _confirmed(*ops)) is None


def test_no_warning_when_the_math_kernel_was_asked_for():
    facts = machine("linux", "A100", torch="2.13.0+cu130")
    decision = choose(facts, model_facts=EXAONE_24B)
    forced = choose(facts, Request("sdpa_math"), EXAONE_24B)
    assert decision.chosen != "sdpa" and forced.chosen == "sdpa_math"
    assert slow_kernel_note(facts, forced, _confirmed(MATH_KERNEL)) is None
