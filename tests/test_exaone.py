"""EXAONE 3.x without repository code: native on transformers >= 5.24, attnpick's Llama mapping otherwise."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from packaging.version import Version
from safetensors.torch import load_file, save_file

from attnpick.errors import UsageError
from attnpick.loading import load_model
from attnpick.model import exaone, tiny
from attnpick.model.resolve import architecture
from tests.helpers import run_cli

TRANSFORMERS = Version(__import__("transformers").__version__)


@pytest.fixture
def hub_folder(tmp_path):
    """tiny-exaone copied into a user's folder, laid out like the hub."""
    dst = tmp_path / "EXAONE-3.5-tiny"
    shutil.copytree(tiny.ensure(), dst)
    return dst


def test_tiny_exaone_is_laid_out_like_the_hub():
    folder = tiny.ensure()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "exaone" and config["tie_word_embeddings"] is True
    assert {"num_layers", "layer_norm_epsilon", "activation_function", "auto_map"} <= set(config)
    keys = set(load_file(folder / "model.safetensors"))
    assert "transformer.h.0.attn.attention.q_proj.weight" in keys and "lm_head.weight" not in keys
    assert config["num_key_value_heads"] < config["num_attention_heads"]


def test_tiny_exaone_is_deterministic(tmp_path):
    a = tiny.build(tmp_path / "a")
    b = tiny.build(tmp_path / "b")
    ta, tb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_chat_template_is_exaones():
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(tiny.ensure())
    text = tok.apply_chat_template([{"role": "user", "content": "안녕?"}, {"role": "assistant", "content": "네."}],
                                   tokenize=False)
    assert text == "[|system|][|endofturn|]\n[|user|]안녕?\n[|assistant|]네.[|endofturn|]\n"
    assert tok.decode(tok("서울은 수도입니다")["input_ids"]) == "서울은 수도입니다"


def test_config_and_key_translation():
    cfg = exaone.llama_config(json.loads((tiny.ensure() / "config.json").read_text()))
    assert cfg["model_type"] == "llama" and cfg["num_hidden_layers"] == 2 and cfg["rms_norm_eps"] == 1e-5
    assert cfg["hidden_act"] == "silu" and "auto_map" not in cfg and "num_layers" not in cfg
    out_proj = "transformer.h.3.attn.attention.out_proj.weight"
    assert exaone.llama_key(out_proj) == "model.layers.3.self_attn.o_proj.weight"
    assert exaone.llama_key("transformer.h.0.mlp.c_fc_1.weight") == "model.layers.0.mlp.up_proj.weight"
    assert exaone.llama_key("transformer.ln_f.weight") == "model.norm.weight"


@pytest.mark.skipif(Version("5.24") > TRANSFORMERS, reason="native EXAONE needs transformers >= 5.24")
def test_native_and_mapped_loads_give_identical_logits_with_the_checkpoints_weights(hub_folder, facts):
    native, tok, native_report = load_model(str(hub_folder), facts=facts)
    mapped, _, mapped_report = load_model(str(hub_folder), facts=facts, force_llama_mapping=True)
    assert native_report.architecture == "native" and mapped_report.architecture == "llama_mapping"
    assert type(native).__name__ == type(mapped).__name__ == "LlamaForCausalLM"
    original = load_file(hub_folder / "model.safetensors")
    for model in (native, mapped):
        assert torch.equal(model.model.layers[1].self_attn.q_proj.weight,
                           original["transformer.h.1.attn.attention.q_proj.weight"])
        assert torch.equal(model.model.layers[0].mlp.down_proj.weight, original["transformer.h.0.mlp.c_proj.weight"])
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    batch = tok(["EXAONE 어텐션 테스트입니다", "hi"], return_tensors="pt", padding=True)
    with torch.no_grad():
        a = native(**batch).logits
        b = mapped(**batch).logits
    assert torch.equal(a, b)


def test_mapping_is_used_where_transformers_has_no_exaone(monkeypatch):
    from transformers.models.auto import configuration_auto

    names = dict(configuration_auto.CONFIG_MAPPING_NAMES)
    names.pop("exaone", None)
    monkeypatch.setattr(configuration_auto, "CONFIG_MAPPING_NAMES", names)
    assert architecture({"model_type": "exaone", "auto_map": {"AutoConfig": "x.Y"}}, False) == "llama_mapping"


def test_mapping_refuses_a_checkpoint_that_does_not_fit(hub_folder, tmp_path):
    tensors = load_file(hub_folder / "model.safetensors")
    del tensors["transformer.h.1.mlp.c_fc_0.weight"]
    tensors["transformer.h.1.extra.weight"] = torch.zeros(2)
    save_file(tensors, str(hub_folder / "model.safetensors"))
    with pytest.raises(UsageError, match=r"missing \['model.layers.1.mlp.gate_proj.weight'\].*unexpected"):
        exaone.convert(hub_folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_sharded_checkpoint_converts(hub_folder, tmp_path):
    tensors = load_file(hub_folder / "model.safetensors")
    (hub_folder / "model.safetensors").unlink()
    keys = sorted(tensors)
    save_file({k: tensors[k] for k in keys[:10]}, str(hub_folder / "model-00001-of-00002.safetensors"))
    save_file({k: tensors[k] for k in keys[10:]}, str(hub_folder / "model-00002-of-00002.safetensors"))
    out = exaone.convert(hub_folder, tmp_path / "out")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 2
    assert "model.layers.0.self_attn.q_proj.weight" in index["weight_map"]


def _evil_folder(root: Path, model_type: str, marker: Path) -> Path:
    folder = root / f"evil-{model_type}"
    shutil.copytree(tiny.ensure(), folder)
    tensors = {exaone.llama_key(k): v for k, v in load_file(folder / "model.safetensors").items()}
    save_file(tensors, str(folder / "model.safetensors"))
    config = exaone.llama_config(json.loads((folder / "config.json").read_text()))
    config.update(model_type=model_type, architectures=["EvilForCausalLM"],
                  auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                            "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    write = f"open({str(marker)!r}, 'a').write('ran\\n')\n"
    (folder / "configuration_evil.py").write_text(
        write + "from transformers import LlamaConfig\n\n"
        f"class EvilConfig(LlamaConfig):\n    model_type = {model_type!r}\n")
    (folder / "modeling_evil.py").write_text(
        write + "from transformers import LlamaForCausalLM\nfrom .configuration_evil import EvilConfig\n\n"
        "class EvilForCausalLM(LlamaForCausalLM):\n    config_class = EvilConfig\n")
    return folder


def _load_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("load", *args)


def test_remote_code_never_runs_without_the_flag(tmp_path):
    marker = tmp_path / "remote-code-ran.txt"
    folder = _evil_folder(tmp_path, "evilnet", marker)
    proc = _load_cli(str(folder))
    assert proc.returncode == 2
    assert "--trust-remote-code" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def test_native_class_wins_over_auto_map(tmp_path):
    marker = tmp_path / "remote-code-ran.txt"
    folder = _evil_folder(tmp_path, "llama", marker)
    proc = _load_cli(str(folder), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["architecture"] == "native"
    assert not marker.exists()


def test_remote_code_runs_with_the_flag(tmp_path, facts):
    marker = tmp_path / "remote-code-ran.txt"
    folder = _evil_folder(tmp_path, "evilnet", marker)
    model, _, report = load_model(str(folder), trust_remote_code=True, facts=facts)
    assert marker.exists()
    assert report.architecture == "remote_code" and type(model).__name__ == "EvilForCausalLM"
    assert report.chosen == "sdpa"
