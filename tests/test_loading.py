"""load_model on this CPU machine: the chain, the proof, the report, and the refusals."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from attnpick.errors import NoBackendError, UsageError
from attnpick.load import smoke
from attnpick.loading import load_model
from attnpick.model import tiny
from attnpick.model.resolve import resolve
from tests.helpers import hub_cache_copy, run_cli

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env)


def test_cli_load_json_loads_tiny_exaone_natively_with_sdpa():
    proc = cli("load", "--json", "--max-seq-length", "256")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    from packaging.version import Version
    from transformers import __version__ as tf_version

    native = Version(tf_version) >= Version("5.24")  # older releases go through attnpick's Llama mapping
    assert report["chosen"] == "sdpa" and report["architecture"] == ("native" if native else "llama_mapping")
    assert report["model_class"] == "LlamaForCausalLM" and report["max_seq_length"] == 256
    attempts = report["attempts"]
    assert [a["backend"] for a in attempts] == ["unsloth", "flash_attention_3", "flash_attention_4",
                                                "flash_attention_2", "torch_varlen", "xformers", "sdpa"]
    for attempt in attempts[:-1]:
        assert attempt["outcome"] == "rejected" and attempt["reasons"], attempt
    assert attempts[-1]["outcome"] == "loaded" and attempts[-1]["smoke"]["ok"] is True
    conf = report["confirmation"]
    assert conf["ok"] is True and conf["attn_implementation"] == "sdpa"
    assert conf["calls"] == {"transformers.integrations.sdpa_attention.sdpa_attention_forward": conf["layers"]}
    # the kernel each layer ran: SDPA's flash kernel for CPU
    assert conf["layer_kernels"] == ["aten::_scaled_dot_product_flash_attention_for_cpu"] * conf["layers"]


def test_forced_eager_is_confirmed_as_eager(facts):
    model, _, report = load_model("tiny-exaone", backend="eager", facts=facts)
    assert report.chosen == "eager" and report.decision.mode == "forced"
    assert report.confirmation.ok
    assert list(report.confirmation.calls) == ["transformers.models.llama.modeling_llama.eager_attention_forward"]
    assert model.config._attn_implementation == "eager"


def test_forced_flash_attention_2_exits_3_with_reasons():
    proc = cli("load", "--backend", "flash_attention_2")
    assert proc.returncode == 3
    assert "need flash-attn installed" in proc.stderr  # "(or kernels, ...)" too where kernels is not installed
    assert "need an NVIDIA GPU" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, needle", [
    (["load", "/nonexistent/model"], "does not exist"),
    (["load", "--backend", "sdpa", "--backend", "xformers"], "exactly one attention backend"),
    (["load", "--max-seq-length", "0"], "(--max-seq-length) must be a whole number"),
    (["load", "--dtype", "int8"], "Unknown dtype"),
])
def test_bad_input_exits_2(args, needle):
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr


def test_4bit_without_bitsandbytes_is_an_error_not_a_silent_full_precision_load():
    proc = cli("load", "--4bit", env={"ATTNPICK_HIDE_PACKAGES": "bitsandbytes"})
    assert proc.returncode == 2
    assert "pip install bitsandbytes" in proc.stderr


def test_4bit_load_and_lora_backward_on_cpu(facts):
    pytest.importorskip("bitsandbytes")
    import torch
    from peft import LoraConfig, get_peft_model

    model, tok, report = load_model("tiny-exaone", max_seq_length=64, load_in_4bit=True, facts=facts)
    assert report.quantization == "bitsandbytes-nf4"
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    batch = tok(["안녕하세요 attention", "hi"], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = model(**batch, labels=labels).loss
    loss.backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert lora_grads and all(g is not None and torch.isfinite(g).all() for g in lora_grads)
    assert any(g.abs().sum() > 0 for g in lora_grads)


@pytest.mark.parametrize("fault", ["abort", "hang", "raise"])
def test_smoke_faults_become_reasons_and_the_chain_goes_on(fault, facts, monkeypatch):
    monkeypatch.setattr(smoke, "CHILD_MODULE", "tests.fault_child")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("ATTNPICK_TEST_FAULTS", f"sdpa={fault}")
    _, _, report = load_model("tiny-exaone", facts=facts, smoke_timeout=20, use_cache=False)
    assert report.chosen == "eager"
    sdpa = next(a for a in report.attempts if a.backend == "sdpa")
    assert sdpa.outcome == "smoke_failed"
    code = {"abort": "smoke_crashed", "hang": "smoke_timeout", "raise": "smoke_failed"}[fault]
    assert sdpa.reasons[0].code == code
    if fault == "abort":
        assert "SIGABRT" in sdpa.reasons[0].message
    if fault == "raise":
        assert "no_such_attention" in sdpa.reasons[0].message


def test_smoke_results_are_cached_and_a_corrupt_cache_is_rebuilt(facts, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path))
    from attnpick.decide.decision import Request, choose

    job = smoke.smoke_job(choose(facts, Request("eager")).candidate("eager"), facts, None, "float32")
    first = smoke.run_smoke(job, facts)
    assert first.ok and not first.cached
    assert smoke.run_smoke(job, facts).cached
    for f in (tmp_path / "smoke").glob("*.json"):
        f.write_text("{oops")
    again = smoke.run_smoke(job, facts)
    assert again.ok and not again.cached


def test_nothing_loads_is_exit_3_with_every_attempt(facts, monkeypatch):
    monkeypatch.setattr(smoke, "CHILD_MODULE", "tests.fault_child")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("ATTNPICK_TEST_FAULTS", "sdpa=raise,eager=raise")
    with pytest.raises(NoBackendError, match=r"sdpa: smoke_failed .*eager: smoke_failed"):
        load_model("tiny-exaone", facts=facts, use_cache=False)


def test_hub_id_resolves_from_the_local_hub_cache(tmp_path, monkeypatch, facts):
    snapshot = hub_cache_copy(tiny.ensure(), tmp_path / "hub", "LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    folder, found_in = resolve("LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct")
    assert found_in == "hub" and folder.resolve() == snapshot.resolve()
    _, _, report = load_model("LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct", max_seq_length=256, facts=facts)
    assert report.found_in == "hub" and report.chosen == "sdpa"
    with pytest.raises(UsageError, match="neither a local folder nor in the local hub cache"):
        resolve("LGAI-EXAONE/not-downloaded")
