"""What a notebook's last cells do: reload the saved LoRA folder, save a merged 16-bit model that plain transformers
loads (attnpick not imported) with the adapter model's logits, in EXAONE's own names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from attnpick.errors import UsageError

PROMPT = "[|user|]서울은 어떤 곳인가요?\n[|assistant|]"


def _native_exaone() -> bool:
    from packaging.version import Version
    from transformers import __version__

    return Version(__version__) >= Version("5.24")


def _logits(model, tokenizer):
    ids = tokenizer(PROMPT, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        return model(**ids).logits.float()


def test_the_saved_lora_folder_reloads_through_from_pretrained(tuned, tmp_path):
    from attnpick import FastLanguageModel

    model, tokenizer = tuned
    folder = tmp_path / "lora_model"
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-exaone"  # the name the user gave, not a cache folder
    again, tok = FastLanguageModel.from_pretrained(model_name=str(folder), max_seq_length=256, load_in_4bit=True)
    again.eval()
    assert type(again).__name__.startswith("Peft") and any("attached" in n for n in again.attnpick_report.notes)
    torch.testing.assert_close(_logits(again, tok), _logits(model, tokenizer), atol=1e-5, rtol=1e-5)


def test_merged_16bit_loads_in_plain_transformers_with_the_adapter_models_logits(tuned, tmp_path):
    model, tokenizer = tuned
    out = tmp_path / "merged"
    assert model.save_pretrained_merged(str(out), tokenizer, save_method="merged_16bit") == str(out)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "exaone" and config["torch_dtype"] in ("float16", "bfloat16")
    from safetensors import safe_open

    with safe_open(str(next(out.glob("*.safetensors"))), "pt") as f:
        names = set(f.keys())
    assert "transformer.h.0.attn.attention.q_proj.weight" in names and not any("lora" in n for n in names)
    assert "[|assistant|]" in (tokenizer.chat_template or "") or (out / "tokenizer_config.json").is_file()
    if not _native_exaone():
        pytest.skip("transformers < 5.24 has no EXAONE class: plain transformers needs attnpick's mapping here")
    reference = _logits(model, tokenizer)
    torch.save(reference, tmp_path / "reference.pt")
    code = f"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
assert "attnpick" not in sys.modules
model = AutoModelForCausalLM.from_pretrained({str(out)!r}, dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained({str(out)!r})
ids = tok({PROMPT!r}, return_tensors="pt", add_special_tokens=False)
with torch.no_grad():
    got = model(**ids).logits.float()
ref = torch.load({str(tmp_path / "reference.pt")!r})
print(json.dumps({{"relative": float((got - ref).abs().max() / ref.abs().max()), "attnpick": "attnpick" in sys.modules,
                  "template": tok.chat_template is not None}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # 16-bit weights against the float32 adapter model: float16 rounding (unit roundoff 4.9e-4) over 2 layers
    assert result["relative"] < 1e-2 and not result["attnpick"] and result["template"], result


def test_merged_4bit_loads_in_plain_transformers_as_transformers_own_nf4_of_the_merge(tuned, tmp_path):
    """merged_4bit is the 16-bit merge quantized as transformers itself quantizes it on load (NF4, the loaded
    model's settings); NF4 after the merge costs what it costs (a third of the largest logit on this 2-layer toy)."""
    model, tokenizer = tuned
    out, full = tmp_path / "merged4", tmp_path / "merged16"
    with pytest.warns(UserWarning, match="merged_16bit"):
        model.save_pretrained_merged(str(out), tokenizer, save_method="merged_4bit_forced")
    model.save_pretrained_merged(str(full), tokenizer, save_method="merged_16bit")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "exaone" and config["quantization_config"]["load_in_4bit"]
    assert config["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    from safetensors import safe_open

    with safe_open(str(next(out.glob("*.safetensors"))), "pt") as f:
        names = set(f.keys())
    assert "transformer.h.0.attn.attention.q_proj.weight.absmax" in names and not any("lora" in n for n in names)
    if not _native_exaone():
        pytest.skip("transformers < 5.24 has no EXAONE class: plain transformers needs attnpick's mapping here")
    code = f"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
model = AutoModelForCausalLM.from_pretrained({str(out)!r}, dtype=torch.float32).eval()
settings = json.load(open({str(out / "config.json")!r}))["quantization_config"]
again = AutoModelForCausalLM.from_pretrained({str(full)!r}, dtype=torch.float32,
    quantization_config=BitsAndBytesConfig.from_dict(settings)).eval()
tok = AutoTokenizer.from_pretrained({str(out)!r})
ids = tok({PROMPT!r}, return_tensors="pt", add_special_tokens=False)
with torch.no_grad():
    got, ref = model(**ids).logits.float(), again(**ids).logits.float()
four = sum(type(m).__name__ == "Linear4bit" for m in model.modules())
print(json.dumps({{"relative": float((got - ref).abs().max() / ref.abs().max()), "linear4bit": four,
                  "attnpick": "attnpick" in sys.modules}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["linear4bit"] == 14 and not result["attnpick"], result  # 2 layers x 7 projections
    assert result["relative"] < 1e-2, result  # the same NF4 rounding, up to the 16-bit copy in between


def test_save_method_lora_writes_the_adapter_and_the_tokenizer(tuned, tmp_path):
    model, tokenizer = tuned
    out = model.save_pretrained_merged(str(tmp_path / "adapter"), tokenizer, save_method="lora")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file() and out.endswith("adapter")
    assert (tmp_path / "adapter" / "tokenizer_config.json").is_file()


@pytest.mark.parametrize("call, needle", [
    (lambda m, t, p: m.save_pretrained_merged(str(p / "x"), t, save_method="merged_8bit"), "Unknown save_method"),
    (lambda m, t, p: m.save_pretrained_merged(str(p), t), "not an empty folder"),
    (lambda m, t, p: m.save_pretrained_gguf(str(p), t, quantization_method="q3_xl"), "Unknown quantization_method"),
    (lambda m, t, p: m.save_pretrained_gguf(str(p / "keep.txt"), t), "is a file, not a folder"),
    (lambda m, t, p: m.push_to_hub_merged("someone/model", t), "HF_HUB_OFFLINE"),
    (lambda m, t, p: m.push_to_hub_gguf("someone/model", t), "HF_HUB_OFFLINE"),
], ids=["unknown-method", "non-empty-folder", "gguf-unknown-type", "gguf-into-a-file", "push-offline",
        "push-gguf-offline"])
def test_bad_saves_are_one_clear_error_and_write_nothing(tuned, tmp_path, call, needle):
    model, tokenizer = tuned
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match=needle):
        call(model, tokenizer, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
