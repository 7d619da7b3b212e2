"""xFormers for real, on an NVIDIA GPU: parity with eager on a padded GQA batch in bf16, forward and backward.
Skipped without a GPU (tests/conftest.py); run by scripts/gpu-check.sh."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import FakeModule, causal_padded_mask, eager

pytestmark = pytest.mark.gpu



@pytest.fixture(scope="module")
def xformers_ops():
    return pytest.importorskip("xformers.ops")


@pytest.mark.parametrize("dtype, atol", [(torch.bfloat16, 2e-2), (torch.float16, 4e-3)])
def test_function_parity_forward_backward(xformers_ops, dtype, atol):
    from attnpick.backends import xformers as xf

    xf.register_xformers()
    gen = torch.Generator(device="cuda").manual_seed(0)
    batch, heads, kv_heads, seq, dim = 2, 32, 8, 256, 80  # EXAONE-3.5-2.4B's attention shapes
    q = torch.randn(batch, heads, seq, dim, device="cuda", generator=gen)
    k = torch.randn(batch, kv_heads, seq, dim, device="cuda", generator=gen)
    v = torch.randn(batch, kv_heads, seq, dim, device="cuda", generator=gen)
    mask = causal_padded_mask([0, 37], [11, 0], seq, seq).cuda()
    rows = mask[:, 0].any(-1)

    def run(fn, cast):
        qq, kk, vv = (t.detach().to(cast).requires_grad_() for t in (q, k, v))
        out = fn(qq, kk, vv)
        out[rows].float().square().mean().backward()
        return out[rows].float(), [t.grad.float() for t in (qq, kk, vv)]

    module = FakeModule().eval()
    ref_out, ref_grads = run(lambda a, b, c: eager(a, b, c, mask), torch.float32)
    out, grads = run(lambda a, b, c: xf.xformers_attention_forward(module, a, b, c, mask)[0], dtype)
    torch.testing.assert_close(out, ref_out, atol=atol, rtol=atol)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=atol, rtol=atol * 5)


def test_tiny_exaone_with_xformers_matches_eager_in_bf16(xformers_ops):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from attnpick.backends.xformers import register_xformers
    from attnpick.model import exaone, tiny

    register_xformers()
    folder = exaone.converted_folder(tiny.ensure())
    tok = AutoTokenizer.from_pretrained(folder)
    batch = tok(["어텐션은 질의와 키의 내적입니다", "hello"], return_tensors="pt", padding=True).to("cuda")
    keep = batch["attention_mask"].bool()
    logits = {}
    for attn in ("xformers", "eager"):
        model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attn, dtype=torch.bfloat16).cuda()
        out = model(**batch).logits
        out[keep].float().square().mean().backward()
        logits[attn] = out[keep].float()
    torch.testing.assert_close(logits["xformers"], logits["eager"], atol=5e-2, rtol=5e-2)


def test_load_model_picks_and_confirms_xformers_when_it_is_the_best(xformers_ops):
    from attnpick.loading import load_model

    _, _, report = load_model("tiny-exaone", backend="xformers", dtype="bfloat16")
    assert report.chosen == "xformers" and report.confirmation.ok
    assert any("xformers_attention_forward" in name for name in report.confirmation.calls)
