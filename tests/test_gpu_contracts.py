"""Every GPU backend's glue against its library's contract, on a CPU: attnpick's own code runs for real and hands its
tensors to stand-ins that refuse what the real kernels refuse (tests/stand_ins.py; xFormers' own operator checks run
for real). The QLoRA path (4-bit weights, LoRA, peft's k-bit preparation, bf16 autocast; eval and train) goes through
each attention backend's glue. What only a GPU can show (the kernels' numbers and speed) is in tests/gpu/ and
scripts/gpu-check.sh."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import SimpleNamespace

import pytest
import torch

from attnpick.backends import sdpa_pinned
from attnpick.backends import torch_varlen as tv
from attnpick.backends import xformers as xf
from attnpick.backends.registry import ensure_registered
from tests import stand_ins
from tests.helpers import machine
from tests.stand_ins import CALLS, Refused

GQA = {"heads": 8, "kv_heads": 2}


@pytest.fixture(autouse=True)
def _fresh_calls():
    CALLS.clear()
    yield
    CALLS.clear()


@pytest.fixture(scope="module")
def xformers_lib():
    """xFormers' Python package (it imports on a CPU: only its compiled kernels need CUDA)."""
    added = None
    if importlib.util.find_spec("xformers") is None:
        site = stand_ins.xformers_site()
        if site is None:
            if os.environ.get("ATTNPICK_REQUIRE_XFORMERS") == "1":
                pytest.fail("xFormers' Python package is missing: ./dev installs it into .venv/contracts")
            pytest.skip("xFormers' Python package is not here (./dev installs it into .venv/contracts)")
        added = str(site)
        sys.path.insert(0, added)
    import xformers.ops  # noqa: F401

    yield
    if added:  # attnpick's probe must not count it installed in the tests that follow in this process
        sys.path.remove(added)
        for name in [m for m in sys.modules if m == "xformers" or m.startswith("xformers.")]:
            del sys.modules[name]


@pytest.fixture
def varlen_api(monkeypatch):
    """`varlen_attn` replaced by the stand-in of one torch release; attnpick's real kernel wrapper calls it."""
    from torch.nn.attention import varlen

    def use(api: str) -> None:
        monkeypatch.setattr(varlen, "varlen_attn", stand_ins.varlen_attn(api))
        tv._parameters.cache_clear()
        monkeypatch.setattr(tv, "KERNEL", tv._varlen_kernel)
        monkeypatch.setattr(tv, "_LAST", None)
        ensure_registered("torch_varlen")

    yield use
    tv._parameters.cache_clear()


def quantized_module(dtype=torch.bfloat16):
    """An attention module of a 4-bit model as transformers sees it: config marked quantized, compute dtype `dtype`."""
    module = torch.nn.Module()
    module.is_causal = True
    module.config = SimpleNamespace(_is_quantized=True, dtype=dtype, _attn_implementation="x")
    return module.eval()


def qkv(batch=2, heads=8, kv_heads=2, length=6, dim=16, dtype=torch.float32, grad=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, h, length, dim, generator=gen).to(dtype).requires_grad_(grad)
                 for h in (heads, kv_heads, kv_heads))


def sdpa_causal(q, k, v, mask2d=None):
    mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()[None, None]
    if mask2d is not None:
        mask = mask & mask2d[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask,
                                                           enable_gqa=True)
    return out.transpose(1, 2)


# --- PyTorch's varlen FlashAttention (torch_varlen) -------------------------------------------------------------

@pytest.mark.parametrize("api", ["2.10", "2.11", "2.13"])
def test_varlen_gqa_runs_on_every_torch_with_varlen(varlen_api, api):
    """torch 2.10-2.11 have no `enable_gqa`: key/value are repeated to the query heads there."""
    varlen_api(api)
    q, k, v = qkv(dtype=torch.bfloat16)
    out, _ = tv.varlen_attention_forward(quantized_module(), q, k, v, None)
    (call,) = CALLS
    assert call["api"] == api and call["heads"] == 8
    assert (call["kv_heads"], call["enable_gqa"]) == ((2, True) if api == "2.13" else (8, False))
    torch.testing.assert_close(out.double(), sdpa_causal(q, k, v), atol=2e-2, rtol=2e-2)


def test_varlen_float32_qlora_inputs_reach_the_kernel_in_half(varlen_api):
    """peft's k-bit preparation leaves q/k/v in float32; the flash kernel takes only fp16/bf16."""
    varlen_api("2.13")
    q, k, v = qkv()
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, :2] = False
    out, _ = tv.varlen_attention_forward(quantized_module(torch.bfloat16), q, k, v, mask)
    assert CALLS[-1]["dtype"] == torch.bfloat16
    keep = mask
    torch.testing.assert_close(out[keep].double(), sdpa_causal(q, k, v, mask)[keep], atol=3e-2, rtol=3e-2)
    with torch.autocast("cpu", dtype=torch.float16):  # autocast's dtype wins, as in transformers' rule
        tv.varlen_attention_forward(quantized_module(torch.bfloat16), q, k, v, None)
    assert CALLS[-1]["dtype"] == torch.float16


def test_varlen_refuses_what_the_kernel_refuses(varlen_api):
    """The stand-in is strict: float32 without a model to say the compute dtype is refused as the kernel would."""
    varlen_api("2.13")
    module = torch.nn.Module()
    module.is_causal = True
    with pytest.raises(Refused, match="fp16 and bf16"):
        tv.varlen_attention_forward(module.eval(), *qkv(), None)


def test_varlen_sequences_are_worked_out_once_per_forward(varlen_api, monkeypatch):
    """Every layer gets the same mask tensor: its offsets (and their device-to-host reads) are computed once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from attnpick.model import exaone, tiny

    varlen_api("2.13")
    computed = []
    real = tv._compute
    monkeypatch.setattr(tv, "_compute", lambda *a: computed.append(1) or real(*a))
    folder = exaone.converted_folder(tiny.ensure())
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="torch_varlen",
                                                 dtype=torch.bfloat16).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    batch = tok(["어텐션은 질의와 키의 내적입니다", "hello"], return_tensors="pt", padding=True)
    with torch.no_grad():
        model(**batch)
        model(**batch)  # a second forward: a new mask tensor, worked out again
    layers = model.config.num_hidden_layers
    assert len(CALLS) == 2 * layers and len(computed) == 2


def test_varlen_collator_offsets_need_no_host_read(varlen_api, monkeypatch):
    varlen_api("2.13")
    monkeypatch.setattr(tv, "_compute", lambda *a: pytest.fail("offsets given by the collator were recomputed"))
    q, k, v = qkv(batch=1, length=7, dtype=torch.bfloat16)
    cu = torch.tensor([0, 4, 7], dtype=torch.int32)
    tv.varlen_attention_forward(quantized_module(), q, k, v, None, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                                max_length_q=4, max_length_k=4)
    assert CALLS[-1]["cu"] == [0, 4, 7] and CALLS[-1]["max_q"] == 4


# --- xFormers ----------------------------------------------------------------------------------------------------

@pytest.fixture
def xformers_checked(xformers_lib, monkeypatch):
    """attnpick's real xFormers kernel call, with `memory_efficient_attention` stood in (checked by xFormers)."""
    import xformers.ops

    monkeypatch.setattr(xformers.ops, "memory_efficient_attention", stand_ins.memory_efficient_attention)
    monkeypatch.setattr(xf, "KERNEL", xf._xformers_kernel)
    xf.register_xformers()


@pytest.mark.parametrize("heads, kv_heads", [(8, 2), (4, 4)])
def test_xformers_training_inputs_have_a_backward_operator(xformers_checked, heads, kv_heads):
    """Inputs that need gradients go as 4-D BMHK: xFormers 0.0.35 has no backward operator for 5-D BMGHK."""
    q, k, v = qkv(heads=heads, kv_heads=kv_heads, dtype=torch.bfloat16, grad=True)
    out, _ = xf.xformers_attention_forward(quantized_module().train(), q, k, v, None)
    out.float().square().mean().backward()
    (call,) = CALLS
    assert call["dims"] == 4 and call["backward"], call
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))
    torch.testing.assert_close(out.double(), sdpa_causal(q, k, v), atol=3e-2, rtol=3e-2)


def test_xformers_5d_gqa_is_forward_only_by_xformers_own_checks(xformers_lib):
    """Why: xFormers' own operator checks refuse BMGHK inputs that need gradients."""
    b, s, g, h, d = 2, 16, 2, 4, 64
    q = torch.randn(b, s, g, h, d, dtype=torch.bfloat16)
    k = torch.randn(b, s, g, 1, d, dtype=torch.bfloat16).expand(b, s, g, h, d)
    assert stand_ins.xformers_reasons(q, k, k, None, 0.0, None, needs_gradient=False)[0]
    with pytest.raises(Refused, match="BMGHK"):
        stand_ins.xformers_reasons(q, k, k, None, 0.0, None, needs_gradient=True)


def test_xformers_inference_keeps_gqa_kv_unrepeated(xformers_checked):
    q, k, v = qkv(dtype=torch.bfloat16)
    with torch.no_grad():
        out, _ = xf.xformers_attention_forward(quantized_module(), q, k, v, None)
    assert CALLS[0]["dims"] == 5 and not CALLS[0]["backward"]
    torch.testing.assert_close(out.double(), sdpa_causal(q, k, v), atol=3e-2, rtol=3e-2)


def test_xformers_padded_training_batch_uses_an_aligned_bias(xformers_checked):
    q, k, v = qkv(length=11, dtype=torch.bfloat16, grad=True)
    mask2d = torch.ones(2, 11, dtype=torch.bool)
    mask2d[1, :3] = False
    mask = torch.ones(11, 11, dtype=torch.bool).tril()[None, None] & mask2d[:, None, None, :]
    out, _ = xf.xformers_attention_forward(quantized_module().train(), q, k, v, mask)
    out.float().sum().backward()
    assert CALLS[0]["bias"] == "bias" and CALLS[0]["dims"] == 4 and CALLS[0]["backward"]
    rows = mask2d  # padding rows attend to nothing: left out, as parity leaves them out
    torch.testing.assert_close(out[rows].double(), sdpa_causal(q, k, v, mask2d)[rows], atol=3e-2, rtol=3e-2)


def test_xformers_float32_qlora_inputs_go_in_half_to_the_flash_operators(xformers_checked):
    q, k, v = qkv()
    with torch.no_grad():
        xf.xformers_attention_forward(quantized_module(torch.bfloat16), q, k, v, None)
    assert CALLS[0]["dtype"] == torch.bfloat16
    assert any(name.startswith("fa") for name in CALLS[0]["forward"]), CALLS[0]


# --- SDPA pinned to its memory-efficient kernel -----------------------------------------------------------------

def test_sdpa_efficient_with_gqa_and_no_mask_repeats_kv(monkeypatch):
    """transformers passes enable_gqa=True when there is no mask; the memory-efficient kernel has no GQA."""
    from transformers.integrations import sdpa_attention

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        stand_ins.efficient_sdpa(torch.nn.functional.scaled_dot_product_attention))
    sdpa_pinned.register_pinned_sdpa()
    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups = True, 4
    q, k, v = qkv()
    out, _ = sdpa_pinned._pinned("EFFICIENT_ATTENTION")(module.eval(), q, k, v, None)
    assert CALLS == [{"kernel": "sdpa_efficient", "heads": 8, "kv_heads": 8}]
    torch.testing.assert_close(out.double(), sdpa_causal(q, k, v), atol=1e-5, rtol=1e-5)
    pinned = torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION])
    with pytest.raises(Refused, match="no GQA"), pinned:  # transformers' own call, unrepeated, is what it refuses
        sdpa_attention.sdpa_attention_forward(module, q, k, v, None)


# --- FlashAttention through transformers' own glue --------------------------------------------------------------

@pytest.fixture
def flash_glue(monkeypatch):
    """transformers' FlashAttention path (`flash_attention_forward`: unpadding, varlen for packed rows, the dtype
    rule) with flash-attn 2.8.3's functions stood in: what attnpick runs as attn_implementation="flash_attention_2"."""
    from transformers import AttentionInterface
    from transformers import modeling_flash_attention_utils as fau
    from transformers.integrations.flash_attention import flash_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    monkeypatch.setattr(fau, "_lazy_imports", lambda *a, **k: (stand_ins.flash_attn_func,
                                                               stand_ins.flash_attn_varlen_func, None,
                                                               fau._pad_input, fau._unpad_input))
    monkeypatch.setattr(fau, "_loaded_implementation", None)
    AttentionInterface.register("fa2_contract", flash_attention_forward)
    AttentionMaskInterface.register("fa2_contract", flash_attention_mask)
    yield "fa2_contract"
    AttentionInterface._global_mapping.pop("fa2_contract", None)
    AttentionMaskInterface._global_mapping.pop("fa2_contract", None)


# --- The QLoRA path through every attention backend's glue ------------------------------------------------------

BACKENDS = ["torch_varlen", "xformers", "flash_attention_2", "sdpa", "eager", "sdpa_efficient"]


@pytest.fixture
def attention(request, monkeypatch, varlen_api):
    """The attn_implementation string for a backend, its kernel stood in where it has no CPU implementation."""
    name = request.param
    if name == "torch_varlen":
        varlen_api("2.13")
    elif name == "xformers":
        request.getfixturevalue("xformers_checked")
    elif name == "flash_attention_2":
        return request.getfixturevalue("flash_glue")
    elif name == "sdpa_efficient":
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                            stand_ins.efficient_sdpa(torch.nn.functional.scaled_dot_product_attention))
    ensure_registered(name)
    return name


def qlora_model(attn: str):
    """tiny-exaone (Llama names) in 4-bit NF4 computing in bfloat16, LoRA on q/v attached the way `attnpick train`
    attaches it (peft's k-bit preparation: every parameter that is not 4-bit goes to float32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from attnpick.load.lora import attach_lora
    from attnpick.load.quantization import keep_trainable, nf4_config
    from attnpick.model import exaone, tiny

    folder = exaone.converted_folder(tiny.ensure())
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attn, dtype=torch.bfloat16,
                                                 quantization_config=nf4_config(torch.bfloat16))
    keep_trainable(model)  # as attnpick's loader does: no CPU inference repacking of the 4-bit weights
    model = attach_lora(model, r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0,
                        gradient_checkpointing=True)
    return model, AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("attention", BACKENDS, indirect=True)
def test_qlora_eval_and_train_through_the_glue(attention):
    model, tok = qlora_model(attention)
    assert model.get_input_embeddings().weight.dtype == torch.float32  # k-bit preparation: q/k/v arrive in float32
    padded = tok(["어텐션은 질의와 키의 내적입니다", "hello"], return_tensors="pt", padding=True)
    ids = tok("서울은 대한민국의 수도입니다. Attention", return_tensors="pt")["input_ids"][0]
    packed = {"input_ids": ids.repeat(2).unsqueeze(0),
              "position_ids": torch.cat([torch.arange(len(ids))] * 2).unsqueeze(0)}
    model.eval()
    with torch.no_grad():  # the packing check and eval: no autocast
        for batch in (padded, packed):
            assert torch.isfinite(model(**batch, use_cache=False).logits).all()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the Trainer's bf16
        loss = model(**padded, labels=padded["input_ids"].masked_fill(padded["attention_mask"] == 0, -100)).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert torch.isfinite(loss) and grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    kernels = [c for c in CALLS if c["kernel"] != "sdpa_efficient"]
    assert all(c["dtype"] in (torch.bfloat16, torch.float16) for c in kernels), kernels
    if attention in ("torch_varlen", "xformers", "fa2_contract"):
        assert any(c["grad"] for c in kernels) and any(not c["grad"] for c in kernels)


# --- xFormers builds: which torch they run on, and the install hints ---------------------------------------------

def test_xformers_build_metadata_is_read_from_the_wheel(xformers_lib):
    """The import check records what the wheel was built for from its own cpp_lib.json, also where its kernels do not
    load (this CPU torch)."""
    details = xf.probe_details()
    assert details["built_for_torch"].startswith("2.10.0") and details["built_for_cuda"] == "12.8"
    assert details["cpp_library"] is False and "xFormers can't load" in details["load_error"]


def _xformers_machine(os_name, torch_version, release, built_for=None):

    built = built_for or xf.BUILT_FOR_TORCH.get(release, "2.10.0") + "+cu128"
    return machine(os_name, "RTX4090", torch=torch_version,
                   xformers={"version": release, "importable": True, "error": None,
                             "details": {"cpp_library": True, "built_for_torch": built}})


@pytest.mark.parametrize("torch_version", ["2.10.0+cu128", "2.11.0+cu130", "2.13.0+cu130"])
def test_a_stable_abi_build_runs_on_later_torch(torch_version):
    from attnpick.decide.decision import choose

    cand = choose(_xformers_machine("linux", torch_version, "0.0.35")).candidate("xformers")
    assert cand.verdict != "rejected", cand.reasons


def test_a_build_before_the_stable_abi_needs_its_own_torch():
    from attnpick.decide.decision import choose

    cand = choose(_xformers_machine("windows", "2.9.1+cu128", "0.0.32.post2")).candidate("xformers")
    (reason,) = cand.reasons
    assert reason.code == "torch_mismatch" and "0.0.33.post2" in reason.fix
    old_torch = choose(_xformers_machine("linux", "2.9.1+cu128", "0.0.35")).candidate("xformers")
    assert [r.code for r in old_torch.reasons] == ["torch_mismatch"]  # 0.0.35 needs torch >= 2.10


@pytest.mark.parametrize("os_name", ["linux", "windows"])
@pytest.mark.parametrize("torch_version", ["2.4.1+cu124", "2.7.1+cu128", "2.8.0+cu128", "2.9.0+cu128", "2.9.1+cu130",
                                           "2.10.0+cu128", "2.11.0+cu130", "2.13.0+cu126"])
def test_the_install_hint_names_a_build_that_is_then_accepted(os_name, torch_version):
    """Install what the hint says (the release it pins, built for the torch its release notes name): accepted."""
    import re

    from attnpick.decide.decision import choose

    gpu = machine(os_name, "T4", torch=torch_version)  # sm75: xFormers is the hint on Linux and Windows
    hint = next(h for h in choose(gpu).install_hints if h.backend == "xformers")
    release = re.search(r"xformers==(\S+)", hint.command).group(1)
    assert "--no-deps" in hint.command  # never replaces the user's torch
    cuda = torch_version.partition("+cu")[2]
    assert (f"/whl/cu{cuda}" in hint.command) == (cuda in ("126", "128", "130"))
    cand = choose(_xformers_machine(os_name, torch_version, release)).candidate("xformers")
    assert cand.verdict != "rejected", (hint.command, cand.reasons)


# --- bfloat16 and devices -----------------------------------------------------------------------------------------

def test_bfloat16_is_not_supported_on_a_t4(monkeypatch):
    """torch.cuda.is_bf16_supported() counts emulation (True on a T4); Unsloth's notebooks mean native bf16."""
    from attnpick.compat import precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _: SimpleNamespace(major=7, minor=5))
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda _: True)  # emulated bf16 works
    assert torch.cuda.is_bf16_supported() is True
    assert precision.is_bfloat16_supported() is False
    assert precision.machine_precision() == {"bf16": False, "fp16": True}
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _: SimpleNamespace(major=8, minor=0))
    assert precision.is_bfloat16_supported() is True


def test_every_torchrun_rank_gets_its_own_gpu(monkeypatch):
    from attnpick.decide.decision import Request, choose
    from attnpick.load.smoke import smoke_job
    from attnpick.model.resolve import device_map, torch_device

    gpu = machine("linux", "H100")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert torch_device(gpu) == "cuda:3" and device_map(gpu) == {"": "cuda:3"}
    cand = choose(gpu, Request.from_names("sdpa")).candidate("sdpa")
    assert smoke_job(cand, gpu, None, "bfloat16")["device"] == "cuda:3"  # the smoke child too
    assert torch_device(machine("linux")) == "cpu"
    monkeypatch.delenv("LOCAL_RANK")
    assert torch_device(gpu) == "cuda:0"


def test_a_bad_local_rank_is_refused_like_an_option(monkeypatch):
    from attnpick import settings
    from attnpick.errors import UsageError

    monkeypatch.setenv("LOCAL_RANK", "one")
    with pytest.raises(UsageError, match="LOCAL_RANK"):
        settings.check_environment(["sdpa"])


# --- the kernel bench times what it credits -----------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["flex_attention", "eager"])
def test_every_kernel_row_is_causal(backend):
    """A row is credited causal FLOPs (half the full count): FlexAttention with no mask attends to every key, so
    its row gets a causal BlockMask."""
    from attnpick.measure._bench_child import attention_call

    _, mask = attention_call(backend, backend, 256, torch.device("cpu"), torch.float32)
    if backend == "flex_attention":  # a BlockMask's dense form is per 128-token block: ask its mask function
        rows, cols = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
        allowed = mask.mask_mod(0, 0, rows, cols)
    else:
        allowed = mask[0, 0] == 0
    assert torch.equal(allowed, torch.ones(256, 256, dtype=torch.bool).tril())
    ensure_registered("sdpa")
    assert attention_call("sdpa", "sdpa", 256, torch.device("cpu"), torch.float32)[1] is None  # causal via is_causal
