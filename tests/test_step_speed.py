"""What makes attnpick's training step faster, each checked to change nothing it computes: SDPA on each packed
sequence alone, logits only where an answer token follows, and bfloat16 autocast on a CPU that computes it."""

from __future__ import annotations

import pytest


def test_sdpa_on_each_packed_sequence_equals_the_block_mask_and_leaves_other_batches_alone():
    """`sdpa_packed` against transformers' SDPA with the block-diagonal causal mask it builds for a packed row,
    forward and backward, with grouped-query attention; a padded batch goes to transformers' SDPA as it is."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from attnpick.backends.sdpa import packed_attention_forward

    class Module:
        is_causal, num_key_value_groups, training = True, 2, True

    torch.manual_seed(0)
    lengths = [5, 9, 3, 7]
    total = sum(lengths)
    q = torch.randn(1, 4, total, 8, requires_grad=True)
    k = torch.randn(1, 2, total, 8, requires_grad=True)
    v = torch.randn(1, 2, total, 8, requires_grad=True)
    bounds = torch.tensor([0, 5, 14, 17, 24], dtype=torch.int32)
    seq = torch.repeat_interleave(torch.arange(4), torch.tensor(lengths))
    mask = (seq[:, None] == seq[None, :]) & torch.ones(total, total, dtype=torch.bool).tril()
    ours, _ = packed_attention_forward(Module(), q, k, v, mask[None, None], cu_seq_lens_q=bounds, cu_seq_lens_k=bounds)
    theirs, _ = sdpa_attention_forward(Module(), q, k, v, mask[None, None])
    assert ours.shape == theirs.shape == (1, total, 4, 8)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(ours.sum(), (q, k, v))
    torch.testing.assert_close(grads, torch.autograd.grad(theirs.sum(), (q, k, v)), atol=1e-5, rtol=1e-5)

    padded = torch.ones(2, 1, 6, 6, dtype=torch.bool).tril()
    qp, kp, vp = torch.randn(2, 4, 6, 8), torch.randn(2, 2, 6, 8), torch.randn(2, 2, 6, 8)
    torch.testing.assert_close(packed_attention_forward(Module(), qp, kp, vp, padded)[0],
                               sdpa_attention_forward(Module(), qp, kp, vp, padded)[0])
    with pytest.raises(ValueError, match="do not cover"):
        packed_attention_forward(Module(), q, k, v, None, cu_seq_lens_q=torch.tensor([0, 5, 20]))


@pytest.fixture(scope="module")
def tiny_lora():
    from attnpick.load.lora import attach
    from attnpick.loading import load_model
    from attnpick.training.data import examples_of, load_examples

    model, tokenizer, _ = load_model("tiny-exaone", max_seq_length=256)
    model = attach(model, "sdpa", r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0)
    model.config.use_cache = False
    examples, _ = load_examples("embedded", tokenizer, 256)
    return model, [{"input_ids": e.input_ids, "labels": e.labels} for e in examples_of(examples, 8)]


def test_logits_only_where_an_answer_follows_give_the_same_loss_and_gradients(tiny_lora):
    import torch
    from transformers import DataCollatorWithFlattening

    from attnpick.training.answer_logits import AnswerLogits, takes_kept_logits

    model, features = tiny_lora
    assert takes_kept_logits(model)
    flat = DataCollatorWithFlattening(return_position_ids=True)
    results = []
    for collator in (flat, AnswerLogits(flat)):
        batch = collator(features)
        model.zero_grad()
        out = model(**batch)
        out.loss.backward()
        results.append((out.loss.detach(), out.logits.shape[1],
                        [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (full, all_positions, full_grads), (kept, kept_positions, kept_grads) = results
    answers = int((batch["labels"][0, 1:] != -100).sum())
    assert kept_positions == answers < all_positions
    torch.testing.assert_close(kept, full)
    torch.testing.assert_close(kept_grads, full_grads)


def test_answer_logits_leave_padded_and_answerless_batches_alone():
    import torch

    from attnpick.training.answer_logits import AnswerLogits

    padded = {"input_ids": torch.ones(2, 4, dtype=torch.long), "labels": torch.ones(2, 4, dtype=torch.long)}
    assert "logits_to_keep" not in AnswerLogits(lambda f: dict(padded))([])
    answerless = {"input_ids": torch.ones(1, 4, dtype=torch.long), "labels": torch.full((1, 4), -100)}
    assert "logits_to_keep" not in AnswerLogits(lambda f: dict(answerless))([])


@pytest.mark.parametrize(("device", "native", "dtype", "four_bit", "heads", "expected"), [
    ("cpu", True, "float32", False, 9, "bfloat16"),  # SmolLM2-135M: 9 heads x 64
    ("cpu", True, "float32", False, 4, "bfloat16"),  # 256 wide: the smallest that gains
    ("cpu", True, "float32", False, 1, None),  # 64 wide (tiny-exaone's width): converting costs more than it saves
    ("cpu", True, "float32", False, None, None),  # no model facts: unknown width
    ("cpu", False, "float32", False, 9, None),  # emulated bfloat16 is slower than float32
    ("cpu", None, "float32", False, 9, None),  # unknown: as not native
    ("cpu", True, "float32", True, 9, None),  # 4-bit: bitsandbytes' own compute dtype
    ("cpu", True, "bfloat16", False, 9, None),  # bfloat16 weights already
    ("cuda", True, "float32", False, 9, None),  # a GPU: default_dtype's choice
])
def test_cpu_autocast_is_a_function_of_the_facts(device, native, dtype, four_bit, heads, expected):
    from attnpick.decide.decision import cpu_autocast
    from attnpick.decide.facts import DeviceFacts, EnvFacts, ModelFacts

    facts = EnvFacts(os="linux", python="3.11", torch="2.13.0", cuda=None,
                     device=DeviceFacts(device, bf16_native=native), packages={})
    model = ModelFacts(head_dim=64, num_attention_heads=heads, num_key_value_heads=1) if heads else None
    assert cpu_autocast(facts, dtype, four_bit, model) == expected


def test_a_facts_file_carries_the_cpus_bfloat16_and_an_older_one_reads_as_unknown(facts):
    from attnpick.decide.facts import EnvFacts
    from attnpick.errors import UsageError

    doc = facts.to_dict()
    doc["device"] = {**doc["device"], "type": "cpu", "bf16_native": True}
    assert EnvFacts.from_dict(doc, where="f.json").device.bf16_native is True
    del doc["device"]["bf16_native"]
    assert EnvFacts.from_dict(doc, where="f.json").device.bf16_native is None
    doc["device"]["bf16_native"] = "yes"
    with pytest.raises(UsageError, match="device.bf16_native"):
        EnvFacts.from_dict(doc, where="f.json")


def test_this_machines_probe_says_whether_its_cpu_computes_bfloat16(facts):
    import torch

    if facts.device.type != "cpu":
        pytest.skip("a GPU machine: the CPU's bfloat16 is not probed")
    assert facts.device.bf16_native == (torch.cpu._is_avx512_bf16_supported()
                                        or torch.cpu._is_amx_tile_supported())
