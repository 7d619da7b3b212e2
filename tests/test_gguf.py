"""GGUF export: the files' metadata, tokenizer and weights read back with gguf's own reader (every lane), and the
files run in llama.cpp itself with transformers' greedy tokens (the llama.cpp lane, marked `llama_cpp`)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from attnpick.errors import UsageError
from attnpick.export import gguf_file
from attnpick.export.merged import merged_state_dict
from tests import llama_cpp_run

PROMPT = [{"role": "user", "content": "서울은 어떤 곳인가요? 한 문장으로 답해 주세요."}]
NEW_TOKENS = 16


def _fields(path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    return reader, {name: field.contents() for name, field in reader.fields.items()}


def _dequantized(reader):
    import gguf

    return {t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
            for t in reader.tensors}


def test_q8_0_f16_bf16_carry_exaone_its_tokenizer_and_the_merged_weights(tuned, tmp_path):
    model, tokenizer = tuned
    written = model.save_pretrained_gguf(str(tmp_path), tokenizer, quantization_method=["q8_0", "f16", "bf16"])
    assert [p.rsplit("/", 1)[-1] for p in written] == ["tiny-exaone.Q8_0.gguf", "tiny-exaone.F16.gguf",
                                                       "tiny-exaone.BF16.gguf"]
    merged = {k: v.float().numpy() for k, v in merged_state_dict(model, "float32").items()}
    q_proj = merged["model.layers.1.self_attn.q_proj.weight"]  # LoRA merged in: not the base weight
    for path, bound in zip(written, (0.02, 1e-3, 1e-2), strict=True):
        reader, meta = _fields(path)
        assert meta["general.architecture"] == "exaone" and meta["tokenizer.ggml.model"] == "gpt2"
        assert meta["tokenizer.ggml.pre"] == "gpt-2" and len(meta["tokenizer.ggml.tokens"]) == len(tokenizer)
        assert meta["tokenizer.chat_template"] == tokenizer.chat_template
        assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.convert_tokens_to_ids("[|endofturn|]")
        assert meta["tokenizer.ggml.token_type"][tokenizer.convert_tokens_to_ids("[|assistant|]")] == 3  # CONTROL
        assert meta["exaone.attention.head_count_kv"] == 2 and meta["exaone.block_count"] == 2
        weights = _dequantized(reader)
        assert "output.weight" not in weights  # tied to the embeddings, as EXAONE-3.5-2.4B is
        error = np.abs(weights["blk.1.attn_q.weight"] - q_proj).max() / np.abs(q_proj).max()
        assert error < bound, (path, error)
        assert np.abs(weights["token_embd.weight"] - merged["model.embed_tokens.weight"]).max() < 0.02
    types = {t.name: t.tensor_type.name for t in _fields(written[0])[0].tensors}
    assert types["blk.0.ffn_down.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"


def test_llama3_rope_scaling_is_the_rope_freqs_transformers_computes(tuned, tmp_path):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    model, tokenizer = tuned
    path = model.save_pretrained_gguf(str(tmp_path), tokenizer, quantization_method="f16")[0]
    reader, _ = _fields(path)
    factors = _dequantized(reader)["rope_freqs.weight"]
    config = model.get_base_model().config
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    base = config.rope_parameters["rope_theta"] if hasattr(config, "rope_parameters") else config.rope_theta
    dim = config.head_dim
    plain = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    np.testing.assert_allclose(factors, (plain / scaled).numpy(), rtol=1e-5)


def test_quantization_names_resolve_as_unslothss_do_and_unknown_ones_are_refused():
    assert gguf_file.quantization_methods(None) == ["q8_0"]
    assert gguf_file.quantization_methods("not_quantized") == ["f16"]
    assert gguf_file.quantization_methods(["Q4_K_M", "q8_0"]) == ["f16", "q4_k_m", "q8_0"]  # f16 feeds llama.cpp
    assert gguf_file.quantization_methods(["quantized", "f16"]) == ["q4_k_m", "f16"]
    with pytest.raises(UsageError, match="Unknown quantization_method 'q9'"):
        gguf_file.quantization_methods("q9")


@pytest.mark.parametrize("pre, expected", [
    ({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}, "gpt-2"),
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                            {"type": "ByteLevel", "use_regex": True}]}, "exaone"),
    ({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": gguf_file._LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "use_regex": False}]}, "llama-bpe"),
    ({"type": "Metaspace", "replacement": "▁"}, None),
])
def test_the_pre_tokenizer_is_named_as_llama_cpp_names_it(pre, expected):
    assert gguf_file.PRE_TOKENIZERS.get(gguf_file._pre_tokenizer_shape(pre)) == expected


def test_a_k_quant_without_llama_cpp_keeps_the_f16_file_and_names_the_install(tuned, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp raises ImportError
    model, tokenizer = tuned
    with pytest.raises(UsageError, match="pip install llama-cpp-python.*f16 file is kept"):
        model.save_pretrained_gguf(str(tmp_path), tokenizer, quantization_method="q4_k_m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-exaone.F16.gguf"]


@pytest.mark.llama_cpp
def test_llama_cpp_runs_the_gguf_with_the_merged_models_greedy_tokens(tuned, tmp_path):
    """The merged folder in plain transformers and the f16 GGUF in llama.cpp give the same greedy tokens; q8_0 is
    held to its logit bound (`llama_cpp_run.check_against_merged`)."""
    from transformers import AutoTokenizer

    model, tokenizer = tuned
    merged = model.save_pretrained_merged(str(tmp_path / "merged"), tokenizer, save_method="merged_16bit")
    f16, q8_0 = model.save_pretrained_gguf(str(tmp_path / "gguf"), tokenizer, quantization_method=["f16", "q8_0"])
    tok = AutoTokenizer.from_pretrained(merged)
    ids = tok.apply_chat_template(PROMPT, tokenize=True, add_generation_prompt=True, return_dict=False)
    assert llama_cpp_run.tokenize(f16, tok.decode(ids)) == ids  # llama.cpp's tokenizer agrees
    expected = llama_cpp_run.check_against_merged({"f16": f16, "q8_0": q8_0}, merged, ids, NEW_TOKENS)
    assert len(set(expected)) > 1, expected  # a model that only repeats one token would prove little


@pytest.mark.llama_cpp
def test_a_llama_model_gguf_matches_transformers_logits(tmp_path):
    """Llama's query/key rows are reordered for llama.cpp's rotary layout; wrong, every logit after the first
    position would differ."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from attnpick.model import exaone, tiny

    folder = exaone.converted_folder(tiny.ensure())  # tiny-exaone as a plain Llama checkpoint
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(folder))
    path = gguf_file.save_gguf(model, tok, tmp_path, "f32", source_folder=str(folder), name="tiny-llama")[0]
    assert _fields(path)[1]["general.architecture"] == "llama"
    ids = tok.apply_chat_template(PROMPT, tokenize=True, add_generation_prompt=True, return_dict=False)
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
    got = llama_cpp_run.logits(path, ids)
    assert np.abs(got - expected).max() < 1e-3 * np.abs(expected).max()  # f32 both sides: summation order only


@pytest.mark.llama_cpp
def test_q4_k_m_goes_through_llama_cpps_quantizer_and_runs(tuned, tmp_path):
    model, tokenizer = tuned
    written = model.save_pretrained_gguf(str(tmp_path), tokenizer, quantization_method="q4_k_m")
    assert [p.rsplit("/", 1)[-1] for p in written] == ["tiny-exaone.F16.gguf", "tiny-exaone.Q4_K_M.gguf"]
    _, meta = _fields(written[1])
    import gguf

    assert meta["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q4_K_M
    ids = tokenizer.apply_chat_template(PROMPT, tokenize=True, add_generation_prompt=True, return_dict=False)
    assert len(llama_cpp_run.greedy(written[1], ids, 4)) == 4
    assert json.dumps(meta["tokenizer.chat_template"]) == json.dumps(tokenizer.chat_template)
