"""PyTorch's varlen FlashAttention for real, on an NVIDIA GPU (sm80+, torch >= 2.12 for GQA): parity with SDPA on a
padded GQA batch and a packed row at EXAONE-3.5-2.4B's shapes in bf16, forward and backward, and a load through the
proven chain whose confirmation names the kernel. Skipped without a GPU (tests/conftest.py); run by
scripts/gpu-check.sh."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import FakeModule, causal_4d, padding

pytestmark = pytest.mark.gpu



def _sdpa(q, k, v, mask):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True).transpose(1, 2)


def test_padded_gqa_batch_forward_backward_matches_sdpa():
    from attnpick.backends import torch_varlen as tv

    gen = torch.Generator(device="cuda").manual_seed(0)
    batch, heads, kv_heads, seq, dim = 2, 32, 8, 256, 80  # EXAONE-3.5-2.4B's attention shapes
    q, k, v = (torch.randn(batch, h, seq, dim, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()
               for h in (heads, kv_heads, kv_heads))
    mask = padding([0, 37], [11, 0], seq).cuda()
    out, _ = tv.varlen_attention_forward(FakeModule().eval(), q, k, v, mask)
    ref = _sdpa(q, k, v, causal_4d(mask, seq))
    torch.testing.assert_close(out[mask].float(), ref[mask].float(), atol=2e-2, rtol=2e-2)
    grads = torch.autograd.grad(out[mask].float().square().sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref[mask].float().square().sum(), (q, k, v))
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got.float(), want.float(), atol=5e-2, rtol=5e-2)


def test_packed_row_matches_each_sample_alone():
    from attnpick.backends import torch_varlen as tv

    lengths = [100, 31, 125]
    gen = torch.Generator(device="cuda").manual_seed(1)
    q, k, v = (torch.randn(1, h, sum(lengths), 80, device="cuda", dtype=torch.bfloat16, generator=gen)
               for h in (32, 8, 8))
    position_ids = torch.cat([torch.arange(n, device="cuda") for n in lengths]).unsqueeze(0)
    out, _ = tv.varlen_attention_forward(FakeModule().eval(), q, k, v, None, position_ids=position_ids)
    start = 0
    for n in lengths:
        part = slice(start, start + n)
        alone = _sdpa(q[:, :, part], k[:, :, part], v[:, :, part], None if n == 0 else
                      torch.ones(n, n, dtype=torch.bool, device="cuda").tril())
        torch.testing.assert_close(out[:, part].float(), alone.float(), atol=2e-2, rtol=2e-2)
        start += n


def test_load_names_the_varlen_kernel():
    from attnpick import load_model

    _, _, report = load_model("tiny-exaone", backend="torch_varlen", dtype="bfloat16", max_seq_length=256)
    assert report.chosen == "torch_varlen" and report.confirmation.ok
    assert set(report.confirmation.kernels) == {"torch_attn::_varlen_attn"}
