"""From a run to a model people use: `attnpick export` (merged folder, GGUF files) and `attnpick chat`, on a real run
of `attnpick train`; every bad input to them is one line and exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests import llama_cpp_run
from tests.helpers import one_line, run_cli

PROMPT = "[|user|]서울은 어떤 곳인가요?\n[|assistant|]"


def _native_exaone() -> bool:
    from packaging.version import Version
    from transformers import __version__

    return Version(__version__) >= Version("5.24")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A short QLoRA run of attnpick train (`--4bit`: the merge out of NF4 weights is what exports must get right)."""
    out = tmp_path_factory.mktemp("runs") / "quick"
    proc = run_cli("train", "--output", str(out), "--max-steps", "4", "--4bit")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    merged, gguf = root / "m", root / "g"
    for args in (("--format", "merged", "--output", str(merged)), ("--format", "gguf", "--output", str(gguf),
                                                                  "--quantization", "f16")):
        proc = run_cli("export", str(run), *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Exported" in proc.stdout and "sdpa" in proc.stdout, proc.stdout
    return merged, gguf


def test_export_merged_loads_in_plain_transformers_with_the_adapters_logits(run, exported, tmp_path):
    from attnpick.export import adapters

    merged, _ = exported
    assert json.loads((merged / "config.json").read_text())["model_type"] == "exaone"
    model, tokenizer, _ = adapters.load_trained(str(run), 256, trainable=False, need_adapter=True)
    model.eval()
    with torch.no_grad():
        reference = model(**tokenizer(PROMPT, return_tensors="pt", add_special_tokens=False)).logits.float()
    if not _native_exaone():
        pytest.skip("transformers < 5.24 has no EXAONE class: plain transformers needs attnpick's mapping here")
    torch.save(reference, tmp_path / "reference.pt")
    code = f"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained({str(merged)!r}, dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained({str(merged)!r})
with torch.no_grad():
    got = model(**tok({PROMPT!r}, return_tensors="pt", add_special_tokens=False)).logits.float()
ref = torch.load({str(tmp_path / "reference.pt")!r})
print(json.dumps({{"relative": float((got - ref).abs().max() / ref.abs().max()),
                  "attnpick": "attnpick" in sys.modules}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["relative"] < 1e-2 and not result["attnpick"], result  # float16 weights against the 4-bit + LoRA


def test_export_gguf_writes_one_exaone_file_named_for_the_model_and_its_ollama_modelfile(exported):
    import gguf

    _, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ["Modelfile", "tiny-exaone.F16.gguf"]
    modelfile = (folder / "Modelfile").read_text(encoding="utf-8")
    assert modelfile.startswith("FROM ./tiny-exaone.F16.gguf\n") and "[|assistant|]" in modelfile
    assert 'PARAMETER stop "[|endofturn|]"' in modelfile
    reader = gguf.GGUFReader(str(folder / "tiny-exaone.F16.gguf"))
    assert reader.fields["general.architecture"].contents() == "exaone"


@pytest.mark.llama_cpp
def test_the_exported_gguf_runs_in_llama_cpp_with_the_merged_models_tokens(exported):
    from transformers import AutoTokenizer

    merged, folder = exported
    tok = AutoTokenizer.from_pretrained(str(merged))
    ids = tok.apply_chat_template([{"role": "user", "content": "서울은 어떤 곳인가요?"}], tokenize=True,
                                  add_generation_prompt=True, return_dict=False)
    llama_cpp_run.check_against_merged({"f16": folder / "tiny-exaone.F16.gguf"}, merged, ids)


def test_chat_answers_one_prompt_and_names_the_backend(run):
    proc = run_cli("chat", str(run), "--prompt", "서울은 어떤 곳인가요?", "--max-new-tokens", "12",
                   "--temperature", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), proc.stdout
    assert "attnpick: chatting with" in proc.stderr and "sdpa" in proc.stderr, proc.stderr[-2000:]


def test_chat_is_a_conversation_with_reset_and_exit(run):
    """Lines from standard input are turns; the second turn's prompt holds the first turn, /reset empties it."""
    from attnpick.cli.chat import ChatConfig, converse

    config = ChatConfig(model=str(run), max_new_tokens=4, temperature=0.0, system="짧게 답하세요.")
    model, tokenizer, _ = config.load()
    seen = []
    render = tokenizer.apply_chat_template

    def spy(messages, **kwargs):
        seen.append([m["role"] for m in messages])
        return render(messages, **kwargs)

    tokenizer.apply_chat_template = spy
    lines = iter(["안녕", "서울은?", "/reset", "부산은?", "/exit", "never read"])
    out = []
    assert converse(model, tokenizer, config, lambda: next(lines), out.append) == 3
    assert seen == [["system", "user"], ["system", "user", "assistant", "user"], ["system", "user"]]
    assert "(conversation reset)\n" in out
    proc = run_cli("chat", str(run), "--max-new-tokens", "4", "--temperature", "0", input="안녕\n/reset\n")
    assert proc.returncode == 0 and "(conversation reset)" in proc.stdout, proc.stderr[-2000:]


def _unfinished(tmp_path):
    folder = tmp_path / "unfinished"
    folder.mkdir()
    (folder / "train_report.json").write_text("{}")
    return folder


@pytest.mark.parametrize("args, needle", [
    (lambda run, tmp: ["export", str(run), "--output", str(tmp / "o"), "--format", "onnx"], "invalid choice"),
    (lambda run, tmp: ["export", str(run), "--output", str(tmp / "o"), "--format", "gguf", "--quantization", "q9"],
     "Unknown quantization_method"),
    (lambda run, tmp: ["export", str(run), "--output", str(tmp / "o"), "--quantization", "q8_0"],
     "16bit (default) or 4bit"),
    (lambda run, tmp: ["export", str(tmp), "--output", str(tmp / "o")], "neither a run folder"),
    (lambda run, tmp: ["export", str(_unfinished(tmp)), "--output", str(tmp / "o")], "--resume"),
    (lambda run, tmp: ["export", str(run), "--output", str(run)], "not an empty folder"),
    (lambda run, tmp: ["export", str(run)], "--output"),
    (lambda run, tmp: ["chat", str(run), "--max-new-tokens", "0"], "--max-new-tokens"),
    (lambda run, tmp: ["chat", str(run), "--temperature", "-1"], "--temperature"),
    (lambda run, tmp: ["chat", str(run), "--prompt", "  "], "--prompt is empty"),
    (lambda run, tmp: ["chat", str(tmp / "nowhere")], "nowhere"),
], ids=["format", "gguf-type", "merged-type", "not-a-run", "unfinished-run", "non-empty-output", "no-output",
        "max-new-tokens", "temperature", "empty-prompt", "missing-model"])
def test_bad_export_and_chat_input_is_one_line_and_exit_2(run, tmp_path, args, needle):
    before = sorted(p.name for p in run.iterdir())
    line = one_line(run_cli(*args(run, tmp_path)))
    assert needle in line, line
    assert not (tmp_path / "o").exists() and sorted(p.name for p in run.iterdir()) == before


def test_export_of_a_k_quant_without_llama_cpp_is_refused_before_loading(run, tmp_path):
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is not None:
        pytest.skip("llama-cpp-python is installed here: q4_k_m works")
    line = one_line(run_cli("export", str(run), "--output", str(tmp_path / "o"), "--format", "gguf",
                            "--quantization", "q4_k_m"))
    assert "pip install llama-cpp-python" in line and not (tmp_path / "o").exists()


def test_chat_answers_a_prompt_greedily_unless_a_temperature_is_given():
    from attnpick.cli.chat import ChatConfig

    assert ChatConfig(prompt="안녕").sampling_temperature == 0.0  # one answer, the same every time
    assert ChatConfig().sampling_temperature == 0.7  # a conversation samples
    assert ChatConfig(prompt="안녕", temperature=0.9).sampling_temperature == 0.9
