"""The decision over described machines: chosen backend and the reasons of the others."""

from __future__ import annotations

import pytest

from attnpick.backends.registry import ORDER
from attnpick.decide.decision import (
    RankDifference,
    Reason,
    Request,
    choose,
    common_to_ranks,
    default_dtype,
    rank_by_times,
    reject,
)
from attnpick.decide.facts import ModelFacts
from attnpick.errors import NoBackendError, UsageError
from tests.helpers import machine

ABI_ERROR = {
    "version": "2.8.3",
    "importable": False,
    "error": "ImportError: flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi",
}
EXAONE_24B = ModelFacts(model_type="exaone", head_dim=80, num_attention_heads=32, num_key_value_heads=8)
GEMMA2 = ModelFacts(model_type="gemma2", head_dim=256, num_attention_heads=8, num_key_value_heads=4,
                    softcapping=50.0)
BIG_HEAD = ModelFacts(model_type="custom", head_dim=512, num_attention_heads=8, num_key_value_heads=8)

# (id, facts, request, model, chosen, {backend: reason codes that must be among its reasons})
CASES = [
    ("linux-cpu", machine("linux", torch="2.13.0+cpu"), Request(), None, "sdpa",
     {"unsloth": {"not_installed", "cpu_mode_forced_only"}, "flash_attention_2": {"device_unsupported"},
      "xformers": {"device_unsupported"}, "flex_attention": {"request_only", "no_cpu_backward"}}),
    ("mac-apple", machine("darwin", device="mps", torch="2.11.0"), Request(), None, "sdpa",
     {"flash_attention_2": {"device_unsupported", "not_installed"}, "xformers": {"device_unsupported"}}),
    ("t4-fa2-installed", machine("linux", "T4", flash_attn="2.8.3"), Request(), None, "sdpa",
     {"flash_attention_2": {"capability_too_low"}}),
    ("t4-bf16-forced-dtype", machine("linux", "T4", xformers="0.0.33"), Request(dtype="bfloat16"), None, "sdpa",
     {"xformers": {"bf16_unsupported"}}),
    ("t4-xformers-fp16", machine("windows", "T4", xformers="0.0.33"), Request(), None, "xformers", {}),
    ("t4-unsloth", machine("linux", "T4", unsloth="2026.10.9", xformers="0.0.33"), Request(), None, "unsloth", {}),
    ("v100-unsloth", machine("linux", "V100", unsloth="2026.10.9"), Request(), None, "unsloth", {}),
    ("rtx4090-windows-xformers", machine("windows", "RTX4090", xformers="0.0.33"), Request(), None, "xformers",
     {"flash_attention_2": {"not_installed"}, "flash_attention_3": {"capability_unsupported"}}),
    ("rtx4090-linux-fa2", machine("linux", "RTX4090", flash_attn="2.8.3", xformers="0.0.33"), Request(), None,
     "flash_attention_2", {"flash_attention_4": {"capability_too_low", "not_installed"}}),
    ("a100-fa2", machine("linux", "A100", flash_attn="2.8.3"), Request(), EXAONE_24B, "flash_attention_2", {}),
    ("a100-fa2-float32", machine("linux", "A100", flash_attn="2.8.3", xformers="0.0.33"),
     Request(dtype="float32"), None, "xformers", {"flash_attention_2": {"dtype_unsupported"}}),
    ("a100-fa2-broken-abi", machine("linux", "A100", flash_attn=ABI_ERROR), Request(), None, "torch_varlen",
     {"flash_attention_2": {"abi_mismatch"}}),
    ("a100-fa1-too-old", machine("linux", "A100", flash_attn="1.0.9"), Request(), None, "torch_varlen",
     {"flash_attention_2": {"version_unsupported"}}),
    ("a100-fa2-head-dim-512", machine("linux", "A100", flash_attn="2.8.3"), Request(), BIG_HEAD, "sdpa",
     {"flash_attention_2": {"head_dim_too_large"}}),
    ("h100-fa3", machine("linux", "H100", flash_attn_3="3.0.0", flash_attn="2.8.3"), Request(), None,
     "flash_attention_3", {}),
    ("h100-fa4-only", machine("linux", "H100", flash_attn_4="4.0.0b36"), Request(), None, "flash_attention_4",
     {"flash_attention_3": {"not_installed"}}),
    ("b200-fa3-wrong-arch", machine("linux", "B200", flash_attn_3="3.0.0", flash_attn="2.8.3"), Request(), None,
     "flash_attention_2", {"flash_attention_3": {"capability_unsupported"}}),
    ("h100-unsloth-first", machine("linux", "H100", unsloth="2026.10.9", flash_attn_3="3.0.0"), Request(), None,
     "unsloth", {}),
    ("h100-unsloth-broken", machine("linux", "H100", flash_attn="2.8.3",
                                    unsloth={"version": "2026.10.9", "importable": False,
                                             "error": "ImportError: cannot import name 'X' from 'trl'"}),
     Request(), None, "flash_attention_2", {"unsloth": {"not_importable"}}),
    ("xformers-no-kernels", machine("linux", "RTX4090", xformers={"version": "0.0.33", "importable": True,
                                                                   "details": {"cpp_library": False}}),
     Request(), None, "torch_varlen", {"xformers": {"kernels_unavailable"}}),
    ("xformers-other-torch", machine("linux", "RTX4090", xformers={"version": "0.0.29", "importable": True,
                                                                    "details": {"built_for_torch": "2.6.0+cu124"}}),
     Request(), None, "torch_varlen", {"xformers": {"torch_mismatch"}}),
    ("gemma2-softcap-xformers", machine("linux", "RTX4090", xformers="0.0.33"), Request(), GEMMA2, "sdpa",
     {"xformers": {"softcapping_unsupported"}}),
    # PyTorch's own varlen FlashAttention (torch >= 2.10, GQA from 2.12, CUDA sm80+, half precision, Linux builds)
    ("h100-bare-torch-2.13-varlen", machine("linux", "H100", torch="2.13.0+cu130"), Request(), EXAONE_24B,
     "torch_varlen", {"flash_attention_2": {"not_installed"}, "xformers": {"not_installed"}}),
    # torch 2.11's varlen_attn has no GQA: key/value are repeated to the query heads (the backend's note says so)
    ("h100-torch-2.11-gqa-varlen-repeats", machine("linux", "H100"), Request(), EXAONE_24B, "torch_varlen", {}),
    ("a100-torch-2.9-no-varlen", machine("linux", "A100", torch="2.9.1+cu128"), Request(), None, "sdpa",
     {"torch_varlen": {"torch_too_old"}}),
    ("t4-no-varlen", machine("linux", "T4", torch="2.13.0+cu130"), Request(), EXAONE_24B, "sdpa",
     {"torch_varlen": {"capability_too_low"}}),
    ("cpu-no-varlen", machine("linux", torch="2.13.0"), Request(), EXAONE_24B, "sdpa",
     {"torch_varlen": {"device_unsupported", "dtype_unsupported"}}),
    ("windows-h100-no-varlen", machine("windows", "H100", torch="2.13.0+cu130"), Request(), EXAONE_24B, "sdpa",
     {"torch_varlen": {"sdpa_kernel_missing"}}),
    ("h100-varlen-float32", machine("linux", "H100", torch="2.13.0+cu130"), Request(dtype="float32"), None, "sdpa",
     {"torch_varlen": {"dtype_unsupported"}}),
    ("gemma2-softcap-no-varlen", machine("linux", "H100", torch="2.13.0+cu130"), Request(), GEMMA2, "sdpa",
     {"torch_varlen": {"softcapping_unsupported"}}),
    ("no-torch", machine("linux", torch=None), Request(), None, None,
     {"sdpa": {"torch_missing"}, "eager": {"torch_missing"}}),
    ("flex-forced-gpu", machine("linux", "A100"), Request.from_names("flex_attention"), None, "flex_attention", {}),
    ("flex-forced-cpu-inference", machine("linux"), Request.from_names("flex_attention", training=False), None,
     "flex_attention", {}),
    ("flex-forced-cpu-training", machine("linux"), Request.from_names("flex_attention"), None, None,
     {"flex_attention": {"no_cpu_backward"}}),
    ("flex-old-torch", machine("linux", "A100", torch="2.4.1+cu121"), Request.from_names("flex_attention"), None,
     None, {"flex_attention": {"torch_too_old"}}),
    ("forced-fa2-on-t4", machine("linux", "T4", flash_attn="2.8.3"), Request.from_names("flash_attention_2"),
     None, None, {"flash_attention_2": {"capability_too_low"}}),
    ("forced-fa2-on-cpu", machine("linux"), Request.from_names("flash_attention_2"), None, None,
     {"flash_attention_2": {"not_installed", "device_unsupported", "dtype_unsupported"}}),
    ("forced-unsloth-cpu-mode", machine("linux", unsloth="2026.10.9"), Request.from_names("unsloth"), None,
     "unsloth", {}),
    ("forced-unsloth-cpu-missing", machine("linux"), Request.from_names("unsloth"), None, None,
     {"unsloth": {"not_installed"}}),
    ("forced-eager", machine("linux", "H100", flash_attn_3="3.0.0"), Request.from_names("eager"), None, "eager", {}),
]


@pytest.mark.parametrize("facts, request_, model, chosen, reasons", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_choice_and_reasons(facts, request_, model, chosen, reasons):
    decision = choose(facts, request_, model)
    assert decision.chosen == chosen
    for backend, codes in reasons.items():
        cand = decision.candidate(backend)
        assert cand.verdict == "rejected"
        assert codes <= {r.code for r in cand.reasons}, (backend, cand.reasons)
    for cand in decision.candidates:
        assert (cand.verdict == "rejected") == bool(cand.reasons)
        for reason in cand.reasons:
            assert reason.message.startswith("need ") or reason.code == "request_only", reason
            assert ", have " in reason.message or reason.code == "request_only", reason


def test_all_reasons_are_collected_not_just_the_first():
    decision = choose(machine("linux"), Request.from_names("flash_attention_3"))
    codes = [r.code for r in decision.candidate("flash_attention_3").reasons]
    assert codes == ["not_installed", "device_unsupported", "dtype_unsupported"]


def test_auto_order_is_the_guides_and_flex_last():
    """Unsloth, then FlashAttention (3, 4, 2, PyTorch's own varlen kernel), then xFormers, then PyTorch: the runnable
    backends come out in that order, the first accepted."""
    decision = choose(machine("linux", "H100", flash_attn_3="3.0.0", flash_attn_4="4.0.0b36", flash_attn="2.8.3",
                              xformers="0.0.33"))
    assert [c.backend for c in decision.candidates if c.verdict != "rejected"] == [
        "flash_attention_3", "flash_attention_4", "flash_attention_2", "torch_varlen", "xformers", "sdpa", "eager"]
    verdicts = {c.backend: c.verdict for c in decision.candidates}
    assert verdicts == {"unsloth": "rejected", "flash_attention_3": "accepted", "flash_attention_4": "eligible",
                        "flash_attention_2": "eligible", "torch_varlen": "eligible", "xformers": "eligible",
                        "sdpa": "eligible",
                        "eager": "eligible", "flex_attention": "rejected"}


def test_forced_backend_never_swaps_and_lists_reasons():
    decision = choose(machine("linux", "T4", flash_attn="2.8.3", xformers="0.0.33"),
                      Request.from_names("flash_attention_2"))
    assert decision.chosen is None and decision.mode == "forced"
    assert [c.backend for c in decision.candidates] == ["flash_attention_2"]
    with pytest.raises(NoBackendError, match="compute capability >= 8.0, have 7.5") as info:
        decision.require()
    assert info.value.exit_code == 3


@pytest.mark.parametrize("names", [["flash_attention_2", "xformers"], ["flash_attention_2,xformers"]])
def test_two_backends_are_rejected(names):
    with pytest.raises(UsageError, match="one model uses exactly one attention backend") as info:
        Request.from_names(names)
    assert info.value.exit_code == 2


def test_unknown_backend_and_dtype_name_the_valid_ones():
    with pytest.raises(UsageError, match="Choose one of: auto, unsloth"):
        Request.from_names("xformer")
    with pytest.raises(UsageError, match="bfloat16, float16, float32"):
        Request.from_names("auto", dtype="fp8")


@pytest.mark.parametrize("facts, dtype", [
    (machine("linux"), "float32"),
    (machine("linux", "T4"), "float16"),
    (machine("linux", "A100"), "bfloat16"),
    (machine("darwin", device="mps"), "float16"),
])
def test_default_dtype(facts, dtype):
    assert default_dtype(facts) == dtype


@pytest.mark.parametrize("facts, kernel", [
    (machine("linux", "A100", unsloth="2026.10.9", flash_attn="2.8.3", xformers="0.0.33"), "flash_attention_2"),
    (machine("linux", "T4", unsloth="2026.10.9", flash_attn="2.8.3", xformers="0.0.33"), "xformers"),
    (machine("linux", "A100", unsloth="2026.10.9"), "sdpa"),
])
def test_the_loaders_own_kernel_is_reported(facts, kernel):
    decision = choose(facts)
    assert decision.chosen == "unsloth" and decision.loader_kernel == kernel
    assert decision.to_dict()["loader_kernel"] == decision.to_dict()["unsloth_kernel"] == kernel  # the old key too


def test_install_hints_follow_the_os():
    windows = choose(machine("windows", "RTX4090", torch="2.8.0+cu128"))
    assert [(h.backend, h.provider) for h in windows.install_hints] == [
        ("unsloth", "package"), ("xformers", "package"), ("flash_attention_2", "hub")]
    assert windows.install_hints[1].command == ("pip install --no-deps xformers==0.0.32.post2 --index-url "
                                                "https://download.pytorch.org/whl/cu128")
    assert "WSL 2" in windows.install_hints[2].note  # what the kernels docs say about Windows, not a promise
    linux_hopper = choose(machine("linux", "H100"))
    assert [(h.backend, h.provider) for h in linux_hopper.install_hints] == [
        ("unsloth", "package"), ("flash_attention_3", "hub"), ("flash_attention_3", "package"),
        ("flash_attention_2", "package")]
    assert linux_hopper.install_hints[1].command == "pip install kernels"
    assert "vllm-flash-attn3" in linux_hopper.install_hints[1].note
    later_torch = choose(machine("windows", "RTX4090", torch="2.11.0+cu130"))  # the stable-ABI build serves it
    assert later_torch.install_hints[1].command == ("pip install --no-deps xformers==0.0.35 --index-url "
                                                    "https://download.pytorch.org/whl/cu130")
    assert choose(machine("linux")).install_hints == ()


def test_an_xformers_built_for_another_torch_gets_its_reinstall_line():
    """issue 30: installed but unusable is advised like not installed, as a reinstall (Windows: the guide's pick)."""
    facts = machine("windows", "RTX4090", torch="2.8.0+cu128",
                    xformers={"version": "0.0.29", "importable": True, "details": {"built_for_torch": "2.6.0+cu124"}})
    decision = choose(facts)
    assert {r.code for r in decision.candidate("xformers").reasons} == {"torch_mismatch"}
    hint = next(h for h in decision.install_hints if h.backend == "xformers")
    assert hint.command == ("pip install --force-reinstall --no-deps xformers==0.0.32.post2 --index-url "
                            "https://download.pytorch.org/whl/cu128")


def test_decision_json_shape():
    data = choose(machine("linux")).to_dict()
    assert data["chosen"] == "sdpa" and data["mode"] == "auto"
    assert [c["backend"] for c in data["candidates"]] == list(ORDER)
    for cand in data["candidates"]:
        assert cand["verdict"] in {"accepted", "rejected", "eligible"}
        assert all({"code", "message"} <= set(r) for r in cand["reasons"])
    assert isinstance(data["install_hints"], list)


def test_disabled_backends_are_rejected_with_the_variable_named():
    decision = choose(machine("linux"), Request.from_names("auto", disabled=frozenset({"sdpa"})))
    assert decision.chosen == "eager"
    assert [r.code for r in decision.candidate("sdpa").reasons] == ["disabled"]
    assert "ATTNPICK_DISABLE_BACKENDS" in decision.candidate("sdpa").reasons[0].message


def test_rank_scoped_disable(monkeypatch):
    from attnpick.settings import disabled_backends

    monkeypatch.setenv("ATTNPICK_DISABLE_BACKENDS", "sdpa@1, xformers")
    monkeypatch.setenv("RANK", "0")
    assert disabled_backends() == {"xformers"}
    monkeypatch.setenv("RANK", "1")
    assert disabled_backends() == {"sdpa", "xformers"}


@pytest.mark.parametrize("facts, backend, chosen, codes", [
    (machine("linux", torch="2.13.0+cpu"), "sdpa_math", "sdpa_math", set()),
    (machine("linux", torch="2.13.0+cpu"), "sdpa_cudnn", None, {"device_unsupported", "dtype_unsupported"}),
    (machine("linux", "T4"), "sdpa_cudnn", None, {"capability_too_low"}),
    (machine("linux", "H100"), "sdpa_cudnn", "sdpa_cudnn", set()),
])
def test_pinned_sdpa_kernels(facts, backend, chosen, codes):
    decision = choose(facts, Request.from_names(backend))
    assert decision.chosen == chosen
    found = {r.code for r in decision.candidate(backend).reasons}
    assert codes <= found if codes else found == set()


def test_pinned_sdpa_kernel_missing_from_the_torch_build():
    facts = machine("linux", "A100").to_dict()
    facts["sdpa_kernels"] = ["efficient", "math"]
    from attnpick.decide.facts import EnvFacts

    cand = choose(EnvFacts.from_dict(facts), Request.from_names("sdpa_cudnn")).candidate("sdpa_cudnn")
    assert [r.code for r in cand.reasons] == ["sdpa_kernel_missing"]


# The pure rewrites of a decision: each one table-tested like choose().

CPU = machine("linux", torch="2.13.0+cpu")
H100_UNSLOTH = machine("linux", "H100", unsloth="2026.10.9", flash_attn="2.8.3")
PARITY = Reason("parity_failed", "need parity with eager float32, have logits 3e-1 > 1e-4")


def _order(decision):
    return [(c.backend, c.verdict) for c in decision.candidates if c.verdict != "rejected"]


@pytest.mark.parametrize("facts, failed, chosen, runnable", [
    (CPU, {"sdpa": PARITY}, "eager", ["eager"]),
    (CPU, {"eager": PARITY}, "sdpa", ["sdpa"]),
    (CPU, {"sdpa": PARITY, "eager": PARITY}, None, []),
    (CPU, {}, "sdpa", ["sdpa", "eager"]),
    (H100_UNSLOTH, {"unsloth": PARITY}, "flash_attention_2", ["flash_attention_2", "torch_varlen", "sdpa", "eager"]),
], ids=["chosen-fails", "fallback-fails", "all-fail", "none-fail", "unsloth-fails"])
def test_reject(facts, failed, chosen, runnable):
    before = choose(facts)
    after = reject(before, failed)
    assert after.chosen == chosen and list(after.runnable) == runnable
    assert [c.backend for c in after.candidates] == [c.backend for c in before.candidates]  # order kept
    for name in failed:
        cand = after.candidate(name)
        assert cand.verdict == "rejected" and cand.reasons[-1] == PARITY
    if chosen is None:
        with pytest.raises(NoBackendError, match="parity"):
            after.require()
    verdicts = [v for _, v in _order(after)]
    assert verdicts[:1] == (["accepted"] if chosen else []) and set(verdicts[1:]) <= {"eligible"}


@pytest.mark.parametrize("facts, times, rejected, chosen, order, rejected_codes", [
    (CPU, {"sdpa": 2.0, "eager": 1.0}, {}, "eager", ["eager", "sdpa"], {}),
    (CPU, {"sdpa": 1.0, "eager": 2.0, "sdpa_math": 0.5}, {"sdpa_math": PARITY}, "sdpa", ["sdpa", "eager"],
     {"sdpa_math": "parity_failed"}),
    (CPU, {"sdpa_fa": 0.4, "sdpa": 1.0, "eager": 2.0}, {}, "sdpa_fa", ["sdpa_fa", "sdpa", "eager"], {}),
    (H100_UNSLOTH, {"flash_attention_2": 1.0, "sdpa": 0.5}, {}, "unsloth", ["unsloth", "sdpa", "flash_attention_2"],
     {}),
    (CPU, {}, {"sdpa": Reason("not_measured", "need a measured run, have: timeout")}, None, [],
     {"sdpa": "not_measured"}),
], ids=["eager-faster", "parity-failure-out", "pinned-kernel-wins", "unsloth-keeps-front", "nothing-measured"])
def test_rank_by_times(facts, times, rejected, chosen, order, rejected_codes):
    measured = rank_by_times(choose(facts), times, rejected, {n: f"{t} s" for n, t in times.items()})
    assert measured.chosen == chosen and measured.chosen_by == "measured"
    assert [name for name, _ in _order(measured)] == order
    for name, code in rejected_codes.items():
        assert measured.candidate(name).verdict == "rejected" and measured.candidate(name).reasons[-1].code == code
    for name in order:
        if name in times:
            assert measured.candidate(name).note == f"{times[name]} s"
    names = [c.backend for c in measured.candidates]
    assert len(names) == len(set(names))  # each backend once


@pytest.mark.parametrize("per_rank, chosen, rejected, differing", [
    ([{"sdpa": None, "eager": None}] * 2, "sdpa", {}, []),
    ([{"sdpa": None, "eager": None}, {"sdpa": "disabled here", "eager": None}], "eager",
     {"sdpa": ["rank 1: disabled here"]}, [RankDifference(1, {"sdpa": "disabled here"})]),
    ([{"sdpa": None, "eager": None}, {"eager": None}], "eager", {"sdpa": ["rank 1: not reported"]}, []),
    ([{"sdpa": "no", "eager": None}, {"sdpa": None, "eager": "no"}], None,
     {"sdpa": ["rank 0: no"], "eager": ["rank 1: no"]},
     [RankDifference(0, {"sdpa": "no"}), RankDifference(1, {"eager": "no"})]),
], ids=["all-agree", "one-rank-lacks", "one-rank-silent", "nothing-common"])
def test_common_to_ranks(per_rank, chosen, rejected, differing):
    agreed, lacked = common_to_ranks(choose(CPU), per_rank)
    assert agreed.chosen == chosen and agreed.chosen_by == "agreed by every rank"
    for name, whys in rejected.items():
        cand = agreed.candidate(name)
        assert cand.verdict == "rejected" and cand.reasons
        assert [r.message.split("have ", 1)[1] for r in cand.reasons] == whys
        assert {r.code for r in cand.reasons} == {"not_on_every_rank"}
    assert list(lacked) == differing
