"""verify and bench on this CPU machine, and the loader's use of their verdicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from attnpick.decide.decision import choose
from attnpick.loading import load_model
from attnpick.measure import parity
from attnpick.measure.bench import attention_flops, bench, plot
from attnpick.measure.policy import measured_decision
from attnpick.model.resolve import prepare
from tests.helpers import ignore_padding, run_cli


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=1200)


def test_verify_cli_passes_for_sdpa_against_eager_fp32():
    proc = cli("verify", "--backends", "sdpa", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["reference"] == "eager float32" and report["dtype"] == "float32"
    [sdpa] = report["results"]
    assert sdpa["backend"] == "sdpa" and sdpa["ok"]
    assert set(sdpa["measures"]) == {"logits", "loss", "grads"}
    assert sdpa["measures"]["logits"]["relative"] <= parity.TOLERANCES["float32"].logits


def test_fixed_batch_has_left_and_right_padding():
    from transformers import PreTrainedTokenizerFast

    from attnpick.model import tiny

    tok = PreTrainedTokenizerFast.from_pretrained(tiny.ensure())
    batch = parity.fixed_batch(tok, "cpu")
    mask = batch["attention_mask"]
    assert mask[0, 0] == 0 and mask[0, -1] == 1  # left-padded
    assert mask[1, 0] == 1 and mask[1, -1] == 0  # right-padded
    assert bool(mask[2].all())
    ignored = batch["labels"] == -100
    assert ignored[mask == 0].all()
    assert ignored.sum() == (mask == 0).sum() + 3  # and each row's first real token


def test_a_backend_that_ignores_padding_fails_verify(facts):
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register("ignore_padding", ignore_padding)
    AttentionMaskInterface.register("ignore_padding", sdpa_mask)
    report = parity.verify("tiny-exaone", backends=["sdpa", "ignore_padding"], facts=facts)
    by_name = {r.backend: r for r in report.results}
    assert by_name["sdpa"].ok
    bad = by_name["ignore_padding"]
    assert not bad.ok and not bad.measures["logits"].ok and not report.ok


def test_verify_cli_exits_4_on_a_parity_failure():
    script = textwrap.dedent("""
        import sys
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
        from tests.helpers import ignore_padding
        AttentionInterface.register("ignore_padding", ignore_padding)
        AttentionMaskInterface.register("ignore_padding", sdpa_mask)
        from attnpick.cli.main import main
        sys.exit(main(["verify", "--backends", "ignore_padding,eager"]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "FAIL" in proc.stdout


def test_the_loader_skips_a_backend_that_failed_parity(facts, monkeypatch, tmp_path):
    """sdpa made to ignore padding fails verify; auto loading then skips it and says why."""
    from transformers import AttentionInterface

    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path))
    original = AttentionInterface()["sdpa"]
    AttentionInterface.register("sdpa", ignore_padding)
    try:
        report = parity.verify("tiny-exaone", backends=["sdpa"], facts=facts)
    finally:
        AttentionInterface.register("sdpa", original)
    assert not report.ok
    _, _, loaded = load_model("tiny-exaone", facts=facts)
    sdpa = next(a for a in loaded.attempts if a.backend == "sdpa")
    assert sdpa.outcome == "rejected" and sdpa.reasons[0].code == "parity_failed"
    assert loaded.chosen == "eager"
    _, _, forced = load_model("tiny-exaone", backend="sdpa", facts=facts)  # forcing still works
    assert forced.chosen == "sdpa"


@pytest.fixture(scope="module")
def kernel_report(facts):
    return bench("tiny-exaone", seq_lens=(256, 1024, 4096), mode="kernel", backends=["sdpa", "eager"],
                 facts=facts, repeats=3)


def test_kernel_bench_rows_and_memory(kernel_report, tmp_path):
    assert {(r.backend, r.seq) for r in kernel_report.rows} == {(b, s) for b in ("sdpa", "eager")
                                                              for s in (256, 1024, 4096)}
    assert all(r.ok for r in kernel_report.rows), [r.error for r in kernel_report.rows]
    sdpa, eager = kernel_report.row("sdpa", 4096), kernel_report.row("eager", 4096)
    assert sdpa.metrics["peak_mb"] < eager.metrics["peak_mb"] / 4
    for row in kernel_report.rows:
        assert 0 < row.metrics["forward_backward"]["tflops"] <= kernel_report.matmul_peak_tflops * 1.05
        assert row.version.endswith(f"(torch {kernel_report.facts.torch})")
    data = kernel_report.to_dict()
    assert data["facts"]["device"]["type"] == "cpu" and "1-3%" in data["note"]
    path = tmp_path / "kernel.png"
    plot(kernel_report, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flop_counting_matches_torchs_flop_counter():
    """Non-causal forward FLOPs equal what torch's FlopCounterMode counts for attention's two matmuls; causal is
    half of that; forward+backward uses FlashAttention's convention (backward = 2.5x forward)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    batch, heads, seq, head_dim = 2, 4, 64, 16
    q, k, v = (torch.randn(batch, heads, seq, head_dim) for _ in range(3))
    with FlopCounterMode(display=False) as counter:
        (q @ k.transpose(-1, -2)).softmax(-1) @ v
    full, _ = attention_flops(batch, heads, seq, head_dim, causal=False)
    causal, fwd_bwd = attention_flops(batch, heads, seq, head_dim)
    assert full == counter.get_total_flops()
    assert causal == full / 2 and fwd_bwd == causal * 3.5


def test_train_bench_gives_tokens_per_second(facts):
    report = bench("tiny-exaone", seq_lens=(256,), mode="train", backends=["sdpa", "eager"], facts=facts,
                   repeats=3, verify_first=False)
    for row in report.rows:
        assert row.ok, row.error
        assert row.metrics["tokens_per_s"] > 0 and row.metrics["confirmed"]


def test_infer_bench_gives_prefill_and_decode(facts):
    report = bench("tiny-exaone", seq_lens=(64,), mode="infer", backends=["sdpa"], facts=facts, repeats=3,
                   verify_first=False)
    [sdpa, eager] = report.rows
    assert sdpa.ok and sdpa.metrics["prefill"]["median_s"] > 0
    decode = sdpa.metrics["decode"]
    assert 0 < decode["min_s"] <= decode["median_s"] == sdpa.metrics["decode_per_token_s"]


def test_measured_policy_orders_by_measured_time(facts, monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path))
    prepared = prepare("tiny-exaone")
    decision = choose(facts, model_facts=prepared.model_facts)
    measured = measured_decision(facts, decision, prepared, seq=64)
    ranked = [c for c in measured.candidates if c.verdict != "rejected"]
    assert measured.chosen_by == "measured" and ranked[0].verdict == "accepted"
    assert {c.backend for c in ranked} >= {"sdpa", "eager"}
    assert all(c.note and "fwd+bwd" in c.note for c in ranked)
    times = json.loads(next((tmp_path / "measured").glob("*.json")).read_text())["value"]["times"]
    assert [c.backend for c in ranked] == sorted(times, key=times.get)


@pytest.mark.parametrize("args, needle", [
    (["bench", "--mode", "fast"], "invalid choice: 'fast'"),
    (["bench", "--seq-lens", "256,abc"], "comma-separated"),
    (["bench", "--plot", "out.jpg"], "ending in .png"),
    (["verify", "--backends", "xformer"], "Unknown backend"),
])
def test_bad_input_exits_2(args, needle):
    proc = cli(*args)
    assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_kernel_row_above_the_matmul_ceiling_is_reported_as_a_timing_bug():
    from attnpick.measure.bench import BenchRow, _above_peak

    metrics = {"forward": {"tflops": 0.4}, "forward_backward": {"tflops": 0.2}}
    row = BenchRow("sdpa", "sdpa (torch 2.13.0)", 256, True, metrics)
    assert _above_peak(row, 0.39) is row  # within the 5% allowance
    assert _above_peak(row, None) is row  # no ceiling measured: nothing to check against
    flagged = _above_peak(row, 0.3)
    assert not flagged.ok and flagged.error == "timing bug: 0.40 TFLOP/s is above the measured matmul peak 0.30"
