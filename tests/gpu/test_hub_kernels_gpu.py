"""The real FlashAttention hub kernels on an NVIDIA GPU, loaded offline from a kernels cache carried to the machine
(KERNELS_CACHE; see docs/hub-kernels.md for how to fill one on a connected machine)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def facts():
    from attnpick.decide.probe import collect_facts

    facts = collect_facts(fresh=True)
    if facts.package("kernels").version is None:
        pytest.skip("kernels is not installed on this GPU machine")
    return facts


@pytest.mark.parametrize("backend", ["flash_attention_2", "flash_attention_3"])
def test_hub_kernel_loads_confirms_and_matches_eager(facts, backend):
    from attnpick.decide.decision import Request, choose
    from attnpick.loading import load_model
    from attnpick.measure.parity import verify

    cand = choose(facts, Request.from_names(backend, "bfloat16")).candidate(backend)
    if cand.provider != "hub":
        pytest.skip(f"{backend} does not run through the hub here: " + "; ".join(r.message for r in cand.reasons))
    _, _, report = load_model("tiny-exaone", max_seq_length=256, dtype="bfloat16", backend=backend, facts=facts)
    assert report.confirmation.ok and report.confirmation.attn_implementation == cand.kernel.repo
    result = verify("tiny-exaone", backends=[backend], dtype="bfloat16", facts=facts).results[0]
    assert result.ok, result.to_dict()
