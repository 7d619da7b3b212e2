"""PyTorch's varlen FlashAttention backend's glue, on CPU, with `varlen_attn` replaced by a reference that follows its
contract: `[tokens, heads, head_dim]` tensors, cumulative sequence offsets, causal as `window_size=(-1, 0)` aligned
bottom-right, GQA with key/value at their own head count. (The real kernel has no CPU implementation; the GPU test
in tests/gpu/ runs it.)"""

from __future__ import annotations

import pytest
import torch

from attnpick.backends import torch_varlen as tv
from attnpick.backends.registry import CATALOG, ensure_registered
from attnpick.decide.decision import choose
from tests.helpers import FakeModule, causal_4d, machine, padding, tiny_model


def reference_kernel(q, k, v, cu_q, cu_k, max_q, max_k, scale, window, gqa):
    assert q.dim() == 3 and k.dim() == 3, "varlen takes [tokens, heads, head_dim]"
    assert cu_q.dtype == torch.int32 and cu_k.dtype == torch.int32
    assert gqa == (q.shape[1] != k.shape[1])
    out = torch.zeros_like(q)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    for i in range(len(cu_q) - 1):
        qs, qe, ks, ke = int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i]), int(cu_k[i + 1])
        assert qe - qs <= max_q and ke - ks <= max_k
        qi, ki, vi = (t.transpose(0, 1).double() for t in (q[qs:qe], k[ks:ke], v[ks:ke]))
        ki = ki.repeat_interleave(qi.shape[0] // ki.shape[0], dim=0)
        vi = vi.repeat_interleave(qi.shape[0] // vi.shape[0], dim=0)
        scores = qi @ ki.transpose(-1, -2) * scale
        rows = torch.arange(qe - qs).unsqueeze(1) + (ke - ks) - (qe - qs)
        cols = torch.arange(ke - ks).unsqueeze(0)
        allowed = torch.ones_like(scores[0], dtype=torch.bool)
        left, right = window
        if right >= 0:
            allowed &= cols <= rows + right
        if left >= 0:
            allowed &= cols >= rows - left
        attn = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        out[qs:qe] = (attn @ vi).transpose(0, 1).to(q.dtype)
    return out


@pytest.fixture
def reference(monkeypatch):
    calls = []

    def counted(*args):
        calls.append(args)
        return reference_kernel(*args)

    monkeypatch.setattr(tv, "KERNEL", counted)
    ensure_registered("torch_varlen")
    return calls


def sdpa(query, key, value, mask4d, scaling=None):
    out = torch.nn.functional.scaled_dot_product_attention(query.double(), key.double(), value.double(),
                                                           attn_mask=mask4d, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).to(query.dtype)


def qkv(batch=2, heads=4, kv_heads=2, q_len=6, kv_len=6, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, heads, q_len, dim, generator=gen),
            torch.randn(batch, kv_heads, kv_len, dim, generator=gen),
            torch.randn(batch, kv_heads, kv_len, dim, generator=gen))


def test_registered_in_both_interfaces():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    ensure_registered("torch_varlen")
    assert AttentionInterface()["torch_varlen"] is tv.varlen_attention_forward
    assert AttentionMaskInterface()["torch_varlen"] is flash_attention_mask
    assert "flash" not in CATALOG["torch_varlen"].hf_name  # transformers would take it for a hub kernel


def test_a_backend_is_one_unit():
    spec = CATALOG["torch_varlen"]
    assert spec.provider == "torch" and spec.register is tv.register_varlen and spec.distribution is None


@pytest.mark.parametrize("pad_left, pad_right", [([0, 3], [0, 0]), ([0, 0], [2, 0]), ([2, 0], [0, 1])])
def test_padded_gqa_batch_matches_sdpa(reference, pad_left, pad_right):
    q, k, v = qkv()
    mask = padding(pad_left, pad_right, 6)
    out, weights = tv.varlen_attention_forward(FakeModule().eval(), q, k, v, mask)
    assert weights is None and out.shape == (2, 6, 4, 16)
    torch.testing.assert_close(out[mask], sdpa(q, k, v, causal_4d(mask, 6))[mask], atol=1e-5, rtol=1e-5)
    assert (out[~mask] == 0).all()  # padding positions: zeros, as FlashAttention's unpadded kernels give
    (args,) = reference
    assert args[0].shape[0] == int(mask.sum())  # only the real tokens reach the kernel


def test_gqa_passes_kv_at_their_own_head_count(reference):
    tv.varlen_attention_forward(FakeModule().eval(), *qkv(heads=8, kv_heads=2), None)
    (args,) = reference
    assert args[0].shape[1] == 8 and args[1].shape[1] == 2 and args[2].shape[1] == 2 and args[-1] is True


def test_no_mask_no_positions_is_one_causal_sequence_per_row(reference):
    q, k, v = qkv()
    out, _ = tv.varlen_attention_forward(FakeModule().eval(), q, k, v, None)
    torch.testing.assert_close(out, sdpa(q, k, v, causal_4d(torch.ones(2, 6, dtype=torch.bool), 6)),
                               atol=1e-5, rtol=1e-5)
    assert reference[0][3].tolist() == [0, 6, 12]


def test_packed_row_from_position_ids_attends_within_each_sample(reference):
    lengths = [3, 5, 2]
    q, k, v = qkv(batch=1, q_len=sum(lengths), kv_len=sum(lengths))
    position_ids = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    out, _ = tv.varlen_attention_forward(FakeModule().eval(), q, k, v, None, position_ids=position_ids)
    start = 0
    for n in lengths:
        alone = sdpa(q[:, :, start:start + n], k[:, :, start:start + n], v[:, :, start:start + n],
                     causal_4d(torch.ones(1, n, dtype=torch.bool), n))
        torch.testing.assert_close(out[:, start:start + n], alone, atol=1e-5, rtol=1e-5)
        start += n
    cu, longest = reference[0][3], reference[0][5]
    assert cu.tolist() == [0, 3, 8, 10] and longest == 5


def test_flattening_collators_offsets_are_taken_as_given(reference):
    q, k, v = qkv(batch=1, q_len=7, kv_len=7)
    cu = torch.tensor([0, 4, 7], dtype=torch.int32)
    tv.varlen_attention_forward(FakeModule().eval(), q, k, v, None, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                                max_length_q=4, max_length_k=4)
    assert reference[0][3].tolist() == [0, 4, 7] and reference[0][5] == 4


def test_sliding_window_reaches_the_kernel(reference):
    q, k, v = qkv()
    out, _ = tv.varlen_attention_forward(FakeModule().eval(), q, k, v, None, sliding_window=3)
    assert reference[0][8] == (2, 0)
    allowed = torch.ones(6, 6, dtype=torch.bool).tril() & ~torch.ones(6, 6, dtype=torch.bool).tril(-3)
    torch.testing.assert_close(out, sdpa(q, k, v, allowed[None, None]), atol=1e-5, rtol=1e-5)


def test_decoding_with_a_cache_falls_back_to_sdpa_aligned_bottom_right(reference):
    q, k, v = qkv(q_len=2, kv_len=7)
    mask = padding([2, 0], [0, 0], 7)
    out, _ = tv.varlen_attention_forward(FakeModule().eval(), q, k, v, mask)
    torch.testing.assert_close(out, sdpa(q, k, v, causal_4d(mask, 2)), atol=1e-5, rtol=1e-5)
    assert reference == []  # documented fallback: decode steps do not call the varlen kernel


def test_rejects_softcap_sinks_and_dropout(reference):
    with pytest.raises(ValueError, match="softcapping"):
        tv.varlen_attention_forward(FakeModule(), *qkv(), None, softcap=30.0)
    with pytest.raises(ValueError, match="sinks"):
        tv.varlen_attention_forward(FakeModule(), *qkv(), None, s_aux=torch.zeros(4))
    with pytest.raises(ValueError, match="dropout"):
        tv.varlen_attention_forward(FakeModule().train(), *qkv(), None, dropout=0.1)
    tv.varlen_attention_forward(FakeModule().eval(), *qkv(), None, dropout=0.1)  # no dropout at eval


def test_the_real_kernel_is_called_with_this_torchs_keywords(monkeypatch):
    """The torch 2.13 API: causal is `window_size=(-1, 0)`, GQA `enable_gqa=True`."""
    from torch.nn.attention import varlen

    seen = {}
    assert {"window_size", "enable_gqa"} <= tv._parameters()  # read (and cached) from the real varlen_attn

    def fake(query, key, value, cu_q, cu_k, max_q, max_k, **kwargs):
        seen.update(kwargs)
        return torch.zeros_like(query)

    monkeypatch.setattr(varlen, "varlen_attn", fake)
    tv.varlen_attention_forward(FakeModule().eval(), *qkv(), None, scaling=0.1)
    assert seen == {"scale": 0.1, "window_size": (-1, 0), "enable_gqa": True}


def test_the_real_kernel_has_no_cpu_implementation():
    """Why the glue is tested with a reference: torch's varlen kernel refuses CPU tensors."""
    q, k, v = (t[0].transpose(0, 1).contiguous().half() for t in qkv(kv_heads=4))
    cu = torch.tensor([0, 6], dtype=torch.int32)
    with pytest.raises((RuntimeError, NotImplementedError)):
        tv._varlen_kernel(q, k, v, cu, cu, 6, 6, None, (-1, 0), False)


def test_model_gives_sdpas_logits_on_a_padded_batch(reference):
    model_v, tok = tiny_model("torch_varlen")
    model_s, _ = tiny_model("sdpa")
    batch = tok(["어텐션은 질의와 키의 내적입니다", "hello"], return_tensors="pt", padding=True)
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        lv, ls = model_v(**batch).logits, model_s(**batch).logits
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(lv[keep], ls[keep], atol=1e-4, rtol=1e-4)
    assert len(reference) == model_v.config.num_hidden_layers


def test_generation_with_cache_matches_sdpa(reference):
    model_v, tok = tiny_model("torch_varlen")
    model_s, _ = tiny_model("sdpa")
    tok.padding_side = "left"
    batch = tok(["서울은 대한민국의", "Attention builds weights from"], return_tensors="pt", padding=True)
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": tok.pad_token_id}
    with torch.no_grad():
        assert torch.equal(model_v.generate(**batch, **kwargs), model_s.generate(**batch, **kwargs))


def test_packing_check_accepts_it_through_the_training_collator(reference):
    """The check `attnpick train` runs before it packs: the padding-free collator's position_ids become sequences."""
    from transformers import DataCollatorWithFlattening

    from attnpick.training.data import Example
    from attnpick.training.packing import packing_check

    model, tok = tiny_model("torch_varlen")
    texts = ["서울은 대한민국의 수도입니다.", "Attention builds weights", "어텐션", "FlashAttention is fast here"]
    examples = [Example(ids, ids) for ids in (tok(t, add_special_tokens=False)["input_ids"] for t in texts)]
    ok, diff, tol = packing_check(model, examples, DataCollatorWithFlattening(return_position_ids=True), "float32")
    assert ok, (diff, tol)
    assert any(len(call[3]) > 2 for call in reference)  # a packed row of several sequences reached the kernel


def test_cpu_and_t4_reject_it_with_reasons():
    cpu = choose(machine("linux", torch="2.13.0")).candidate("torch_varlen")
    t4 = choose(machine("linux", "T4", torch="2.13.0+cu130")).candidate("torch_varlen")
    assert {r.code for r in cpu.reasons} == {"device_unsupported", "dtype_unsupported"}
    assert [r.code for r in t4.reasons] == ["capability_too_low"]
