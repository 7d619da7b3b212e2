"""The xFormers backend's glue, on CPU, with xformers' kernel replaced by a reference that follows its
contract (5-D BMGHK tensors, bottom-right causal mask, additive bias whose rows are 8-aligned)."""

from __future__ import annotations

import pytest
import torch

from attnpick.backends import xformers as xf
from attnpick.decide.decision import choose
from tests.helpers import FakeModule, causal_padded_mask, eager, machine, tiny_model


def reference_kernel(q, k, v, bias, p, scale):
    batch, q_len, groups, heads, dim = q.shape
    kv_len = k.shape[1]
    scale = dim**-0.5 if scale is None else scale
    scores = torch.einsum("bqghd,bkghd->bghqk", q.double(), k.double()) * scale
    kind, tensor = bias
    if kind == "causal":
        allowed = torch.ones(q_len, kv_len, dtype=torch.bool).tril(diagonal=kv_len - q_len)
        scores = scores.masked_fill(~allowed, float("-inf"))
    elif kind == "bias":
        assert tensor.shape == (batch, groups, heads, q_len, kv_len)
        assert tensor.stride(-1) == 1 and tensor.stride(-2) % 8 == 0, "xformers needs 8-aligned bias rows"
        assert tensor.dtype == q.dtype
        scores = scores + tensor.double()
    attn = scores.softmax(-1)
    if p:
        attn = torch.nn.functional.dropout(attn, p)
    return torch.einsum("bghqk,bkghd->bqghd", attn, v.double()).to(q.dtype)


@pytest.fixture
def reference(monkeypatch):
    calls = []

    def counted(*args):
        calls.append(args[3][0])
        return reference_kernel(*args)

    monkeypatch.setattr(xf, "KERNEL", counted)
    xf.register_xformers()
    return calls


def qkv(batch=2, heads=4, kv_heads=2, q_len=6, kv_len=6, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, q_len, dim, generator=gen)
    k = torch.randn(batch, kv_heads, kv_len, dim, generator=gen)
    v = torch.randn(batch, kv_heads, kv_len, dim, generator=gen)
    return q, k, v


def test_registered_in_both_interfaces():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    xf.register_xformers()
    assert AttentionInterface()["xformers"] is xf.xformers_attention_forward
    assert AttentionMaskInterface()["xformers"] is xf.xformers_mask


def test_decision_rejects_xformers_without_cuda():
    cand = choose(machine("linux", xformers="0.0.33")).candidate("xformers")
    assert cand.verdict == "rejected"
    assert [r.code for r in cand.reasons] == ["device_unsupported"]


@pytest.mark.parametrize("pad_left, pad_right", [([0, 3], [0, 0]), ([0, 0], [2, 0]), ([2, 0], [0, 1])])
def test_gqa_and_padding_match_eager(reference, pad_left, pad_right):
    q, k, v = qkv()
    mask = causal_padded_mask(pad_left, pad_right, 6, 6)
    out, weights = xf.xformers_attention_forward(FakeModule().eval(), q, k, v, mask)
    assert weights is None
    assert out.shape == (2, 6, 4, 16)  # [B, S, Hq, D]
    expected = eager(q, k, v, mask)
    rows = mask[:, 0].any(-1)  # query rows that attend to something
    torch.testing.assert_close(out[rows], expected[rows], atol=1e-5, rtol=1e-5)


def test_no_mask_means_causal(reference):
    q, k, v = qkv()
    out, _ = xf.xformers_attention_forward(FakeModule().eval(), q, k, v, None)
    torch.testing.assert_close(out, eager(q, k, v, causal_padded_mask([0, 0], [0, 0], 6, 6)), atol=1e-5, rtol=1e-5)


def test_causal_is_bottom_right_when_query_is_shorter_than_key(reference):
    q, k, v = qkv(q_len=2, kv_len=7)
    out, _ = xf.xformers_attention_forward(FakeModule().eval(), q, k, v, None)
    expected = eager(q, k, v, causal_padded_mask([0, 0], [0, 0], 2, 7))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # the last query sees every key; the first sees all but the last
    assert causal_padded_mask([0], [0], 2, 7)[0, 0].sum(-1).tolist() == [6, 7]


def test_single_query_decoding_sees_every_key(reference):
    q, k, v = qkv(q_len=1, kv_len=5)
    out, _ = xf.xformers_attention_forward(FakeModule().eval(), q, k, v, None)
    torch.testing.assert_close(out, eager(q, k, v, None), atol=1e-5, rtol=1e-5)


def test_scaling_is_the_modules(reference):
    q, k, v = qkv()
    out, _ = xf.xformers_attention_forward(FakeModule().eval(), q, k, v, None, scaling=0.05)
    expected = eager(q, k, v, causal_padded_mask([0, 0], [0, 0], 6, 6), scaling=0.05)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training(monkeypatch):
    seen = []

    def spy(q, k, v, bias, p, scale):
        seen.append(p)
        return reference_kernel(q, k, v, bias, 0.0, scale)

    monkeypatch.setattr(xf, "KERNEL", spy)
    q, k, v = qkv()
    module = FakeModule()
    xf.xformers_attention_forward(module.eval(), q, k, v, None, dropout=0.3)
    xf.xformers_attention_forward(module.train(), q, k, v, None, dropout=0.3)
    assert seen == [0.0, 0.3]


def test_expanded_kv_is_not_copied(monkeypatch):
    def check(q, k, v, bias, p, scale):
        assert k.stride(3) == 0 and v.stride(3) == 0  # the H axis is a broadcast, GQA without repeat_kv
        return reference_kernel(q, k, v, bias, p, scale)

    monkeypatch.setattr(xf, "KERNEL", check)
    xf.xformers_attention_forward(FakeModule().eval(), *qkv(), None)


def test_rejects_softcap_and_sinks(reference):
    with pytest.raises(ValueError, match="softcapping"):
        xf.xformers_attention_forward(FakeModule(), *qkv(), None, softcap=30.0)
    with pytest.raises(ValueError, match="sinks"):
        xf.xformers_attention_forward(FakeModule(), *qkv(), None, s_aux=torch.zeros(4))


def test_decision_rejects_softcap_and_sinks_models():
    from attnpick.decide.facts import ModelFacts

    gpu = machine("linux", "RTX4090", xformers="0.0.33")
    softcap = choose(gpu, model_facts=ModelFacts(head_dim=128, softcapping=30.0)).candidate("xformers")
    sinks = choose(gpu, model_facts=ModelFacts(model_type="gpt_oss", head_dim=64, has_sinks=True)).candidate("xformers")
    assert [r.code for r in softcap.reasons] == ["softcapping_unsupported"]
    assert [r.code for r in sinks.reasons] == ["sinks_unsupported"]


def test_model_with_xformers_gives_eagers_logits_on_a_padded_batch(reference):
    model_x, tok = tiny_model("xformers")
    model_e, _ = tiny_model("eager")
    assert model_x.config._attn_implementation == "xformers"
    batch = tok(["어텐션은 질의와 키의 내적입니다", "hello"], return_tensors="pt", padding=True)
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        lx, le = model_x(**batch).logits, model_e(**batch).logits
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(lx[keep], le[keep], atol=1e-4, rtol=1e-4)
    assert reference == ["bias"] * model_x.config.num_hidden_layers  # the padded batch went through the bias path


def test_without_the_mask_registration_padding_leaks(monkeypatch):
    """Why AttentionMaskInterface matters: registered in AttentionInterface only, the function gets
    attention_mask=None and a left-padded row attends to its padding."""
    from transformers import AttentionInterface

    monkeypatch.setattr(xf, "KERNEL", reference_kernel)
    AttentionInterface.register("xformers_no_mask", xf.xformers_attention_forward)
    try:
        model_bad, tok = tiny_model("xformers_no_mask")
        model_e, _ = tiny_model("eager")
        batch = tok(["어텐션은 질의와 키의 내적입니다", "hello"], return_tensors="pt", padding=True)
        with torch.no_grad():
            bad, good = model_bad(**batch).logits, model_e(**batch).logits
        keep = batch["attention_mask"].bool()
        assert (bad[keep] - good[keep]).abs().max() > 1e-2
    finally:
        AttentionInterface._global_mapping.pop("xformers_no_mask", None)


def test_generation_with_cache_matches_eager(reference):
    model_x, tok = tiny_model("xformers")
    model_e, _ = tiny_model("eager")
    batch = tok(["서울은 대한민국의", "Attention builds weights from"], return_tensors="pt", padding=True)
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": tok.pad_token_id}
    with torch.no_grad():
        assert torch.equal(model_x.generate(**batch, **kwargs), model_e.generate(**batch, **kwargs))


def test_the_mask_is_materialized_when_lengths_differ():
    q_len, kv_len = 3, 8
    mask = xf.xformers_mask(batch_size=1, q_length=q_len, kv_length=kv_len, q_offset=kv_len - q_len,
                            attention_mask=torch.ones(1, kv_len, dtype=torch.bool))
    assert mask is not None and mask.shape == (1, 1, q_len, kv_len)
    assert mask[0, 0].sum(-1).tolist() == [6, 7, 8]
    assert xf.xformers_mask(batch_size=1, q_length=4, kv_length=4, attention_mask=torch.ones(1, 4).bool()) is None
