"""FlashAttention from the Hugging Face kernels hub: the second provider of every FlashAttention backend, decided
for described machines (no GPU, no network needed)."""

from __future__ import annotations

import json
import subprocess

import pytest

from attnpick.decide.decision import Request, choose
from tests.helpers import machine, run_cli

RANGE = {"kernels_range": ">=0.18.2,<0.19.0"}
OFFLINE = {"offline": True, **RANGE}
FA2, FA3, FA4 = "kernels-community/flash-attn2", "kernels-community/vllm-flash-attn3", "kernels-community/flash-attn4"


def fetch_hint(repo: str, version: int) -> str:
    return f"hf download {repo} --repo-type kernel --revision v{version}"


# (id, facts, chosen, provider, attn_implementation, {backend: reason codes})
CASES = [
    ("a100-kernels-online", machine("linux", "A100", kernels="0.18.2", hub=RANGE), "flash_attention_2", "hub", FA2,
     {}),
    ("h100-kernels-online", machine("linux", "H100", kernels="0.18.2", hub=RANGE), "flash_attention_3", "hub", FA3, {}),
    ("h100-offline-empty-cache", machine("linux", "H100", kernels="0.18.2", hub=OFFLINE), "torch_varlen", "torch",
     "torch_varlen", {"flash_attention_3": {"hub_offline_not_cached"}, "flash_attention_4": {"hub_offline_not_cached"},
      "flash_attention_2": {"hub_offline_not_cached"}}),
    ("h100-offline-fa2-cached", machine("linux", "H100", kernels="0.18.2", hub={**OFFLINE, "cached": {FA2: [4]}}),
     "flash_attention_2", "hub", FA2, {"flash_attention_3": {"hub_offline_not_cached"}}),
    ("h100-offline-wrong-version-cached", machine("linux", "H100", kernels="0.18.2",
                                                  hub={**OFFLINE, "cached": {FA2: [3]}}),
     "torch_varlen", "torch", "torch_varlen", {"flash_attention_2": {"hub_offline_not_cached"}}),
    ("a100-offline-local-kernel", machine("linux", "A100", kernels="0.18.2", hub={**OFFLINE, "local": {FA2: "/k"}}),
     "flash_attention_2", "hub", FA2, {}),
    ("a100-unreachable", machine("linux", "A100", kernels="0.18.2", hub={"reachable": False, **RANGE}), "torch_varlen",
     "torch", "torch_varlen", {"flash_attention_2": {"hub_unreachable"}}),
    ("a100-bare", machine("linux", "A100"), "torch_varlen", "torch", "torch_varlen",
     {"flash_attention_2": {"not_installed"}}),
    ("a100-kernels-too-old-for-transformers", machine("linux", "A100", kernels="0.17.2", hub=RANGE), "torch_varlen",
     "torch", "torch_varlen", {"flash_attention_2": {"kernels_version_unsupported"}}),
    ("a100-package-wins", machine("linux", "A100", flash_attn="2.8.3", kernels="0.18.2", hub=RANGE),
     "flash_attention_2", "package", "flash_attention_2", {}),
    ("a100-broken-package-hub-next", machine("linux", "A100", kernels="0.18.2", hub=RANGE, flash_attn={
        "version": "2.8.3", "importable": False, "error": "ImportError: undefined symbol: _ZN3c10"}),
     "flash_attention_2", "hub", FA2, {}),
    ("a100-old-facts-file", machine("linux", "A100", kernels="0.18.2"), "flash_attention_2", "hub", FA2, {}),
    ("rtx4090-kernels", machine("linux", "RTX4090", kernels="0.18.2", hub=RANGE), "flash_attention_2", "hub", FA2,
     {"flash_attention_3": {"capability_unsupported"}, "flash_attention_4": {"capability_too_low"}}),
    ("t4-kernels", machine("linux", "T4", kernels="0.18.2", hub=RANGE), "sdpa", "torch", "sdpa",
     {"flash_attention_2": {"capability_too_low"}}),
    ("mi300-kernels", machine("linux", "MI300", torch="2.11.0+rocm7.1", kernels="0.18.2", hub=RANGE),
     "flash_attention_3", "hub", "kernels-community/aiter-flash-attn", {"flash_attention_4": {"device_unsupported"}}),
    ("apple-kernels", machine("darwin", device="mps", torch="2.11.0", kernels="0.18.2", hub=RANGE), "sdpa", "torch",
     "sdpa", {"flash_attention_2": {"device_unsupported"}}),
    ("rocm-table-without-a-rocm-build", machine("linux", "MI300", torch="2.11.0+rocm7.1", kernels="0.18.2", hub={
        **RANGE, "flash_kernels": {"flash_attention_2": {"repo": FA2, "version": 4, "devices": ["cuda", "xpu"]}}}),
     "flash_attention_3", "hub", "kernels-community/aiter-flash-attn",
     {"flash_attention_2": {"not_installed", "no_hub_build"}}),
    ("intel-xpu-kernels", machine("linux", device="xpu", torch="2.11.0+xpu", kernels="0.18.2", hub=RANGE),
     "flash_attention_2", "hub", FA2, {"flash_attention_3": {"device_unsupported"}}),
]


@pytest.mark.parametrize("facts, chosen, provider, impl, reasons", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hub_provider(facts, chosen, provider, impl, reasons):
    decision = choose(facts)
    assert decision.chosen == chosen
    accepted = decision.candidate(chosen)
    assert (accepted.provider, accepted.attn_implementation) == (provider, impl)
    for backend, codes in reasons.items():
        cand = decision.candidate(backend)
        assert cand.verdict == "rejected" and codes <= {r.code for r in cand.reasons}, (backend, cand.reasons)
    for cand in decision.candidates:
        assert (cand.provider is None) == (cand.verdict == "rejected")
        for reason in cand.reasons:
            assert reason.message.startswith("need ") or reason.code == "request_only", reason


def test_the_candidate_json_names_provider_implementation_and_pinned_version():
    data = choose(machine("linux", "A100", kernels="0.18.2", hub=RANGE)).to_dict()
    fa2 = next(c for c in data["candidates"] if c["backend"] == "flash_attention_2")
    assert fa2["provider"] == "hub" and fa2["attn_implementation"] == FA2
    assert fa2["kernel"] == {"repo": FA2, "version": 4}


def test_offline_reason_says_how_to_fetch_each_repo_and_version():
    decision = choose(machine("linux", "H100", kernels="0.18.2", hub=OFFLINE))
    for backend, repo, version in (("flash_attention_3", FA3, 1), ("flash_attention_2", FA2, 4),
                                   ("flash_attention_4", FA4, 0)):
        [reason] = [r for r in decision.candidate(backend).reasons if r.code == "hub_offline_not_cached"]
        assert repo in reason.message and fetch_hint(repo, version) in reason.fix
        assert "KERNELS_CACHE" in reason.fix and "LOCAL_KERNELS" in reason.fix


def test_a_bare_a100_gets_pip_install_kernels_first():
    decision = choose(machine("linux", "A100"))
    fa2 = decision.candidate("flash_attention_2")
    assert [r.code for r in fa2.reasons] == ["not_installed"]
    assert fa2.reasons[0].fix == "pip install kernels" and "kernels" in fa2.reasons[0].message
    hints = [(h.provider, h.command) for h in decision.install_hints]
    assert hints.index(("hub", "pip install kernels")) < hints.index(
        ("package", "pip install flash-attn --no-build-isolation"))


def test_kernels_hint_respects_the_range_transformers_accepts():
    decision = choose(machine("linux", "A100", hub=RANGE))
    assert ("hub", "pip install 'kernels>=0.18.2,<0.19.0'") in [(h.provider, h.command) for h in decision.install_hints]


def test_no_kernels_hint_where_no_hub_build_exists_or_kernels_is_usable():
    assert all(h.provider != "hub" for h in choose(machine("linux", "T4")).install_hints)
    assert all(h.provider != "hub" for h in choose(machine("darwin", device="mps", torch="2.11.0")).install_hints)
    usable = choose(machine("linux", "A100", kernels="0.18.2", hub=OFFLINE))
    assert all(h.provider != "hub" for h in usable.install_hints)


def test_flash_attn2_version_follows_torch_like_transformers():
    old = choose(machine("linux", "A100", torch="2.8.0+cu128", kernels="0.18.2")).candidate("flash_attention_2")
    new = choose(machine("linux", "A100", torch="2.11.0+cu130", kernels="0.18.2")).candidate("flash_attention_2")
    assert old.kernel.version == 3 and new.kernel.version == 4


def test_the_installed_transformers_table_wins_over_the_catalogs():
    hub = {**RANGE, "flash_kernels": {"flash_attention_2": {"repo": "kernels-community/flash-attn2", "version": 5,
                                                            "devices": ["cuda"]}}}
    fa2 = choose(machine("linux", "A100", kernels="0.18.2", hub=hub)).candidate("flash_attention_2")
    assert fa2.kernel.version == 5


def test_forced_flash_attention_reports_both_providers():
    decision = choose(machine("linux", "A100", flash_attn={"version": "2.8.3", "importable": False,
                                                           "error": "ImportError: undefined symbol: x"}),
                      Request.from_names("flash_attention_2"))
    assert decision.chosen is None
    assert {"abi_mismatch", "kernels_missing"} <= {r.code for r in decision.candidate("flash_attention_2").reasons}


def _plan(facts) -> subprocess.CompletedProcess[str]:
    return run_cli("plan", "--env", "-", "--json", input=json.dumps(facts.to_dict()), timeout=120)


def test_plan_on_h100_and_a100_with_kernels_chooses_a_hub_repo_and_offline_says_why():
    for gpu in ("H100", "A100"):
        online = _plan(machine("linux", gpu, kernels="0.18.2", hub=RANGE))
        assert online.returncode == 0, online.stderr
        data = json.loads(online.stdout)
        chosen = next(c for c in data["candidates"] if c["verdict"] == "accepted")
        assert chosen["backend"].startswith("flash_attention_") and chosen["attn_implementation"].startswith(
            "kernels-community/")
        offline = json.loads(_plan(machine("linux", gpu, kernels="0.18.2", hub=OFFLINE)).stdout)
        assert offline["chosen"] == "torch_varlen"  # PyTorch's own varlen FlashAttention: nothing to fetch
        fa2 = next(c for c in offline["candidates"] if c["backend"] == "flash_attention_2")
        [offline_reason] = [r for r in fa2["reasons"] if r["code"] == "hub_offline_not_cached"]
        assert "hf download kernels-community/flash-attn2" in offline_reason["fix"]
