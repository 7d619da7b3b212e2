"""Unsloth for real, in its own venv (transformers <= 5.17): on CPU it runs its CPU mode. Each test is a fresh
process, as a user's script would be, so Unsloth is imported before transformers as it asks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.unsloth
ROOT = Path(__file__).resolve().parents[2]


def run_script(*parts: str, timeout: int = 900) -> dict:
    code = "\n".join(textwrap.dedent(part) for part in parts)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("four_bit", [False, True])
def test_unsloth_loads_tiny_exaone_and_trains_a_lora_step(four_bit):
    result = run_script(f"""
        import json
        from attnpick import load_model
        model, tok, report = load_model("tiny-exaone", max_seq_length=256, load_in_4bit={four_bit},
                                        backend="unsloth")
        import torch
        from unsloth import FastLanguageModel
        model = FastLanguageModel.get_peft_model(model, r=8, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
        lora = {{n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}}
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        batch = tok(["안녕하세요 attention", "hello"], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        changed = sum(int(not torch.equal(p.detach(), lora[n])) for n, p in model.named_parameters() if n in lora)
        out = report.to_dict()
        out.update(loss=loss.item(), lora_params=len(lora), changed=changed,
                   quant_layer=type(model.base_model.model.model.layers[0].self_attn.q_proj.base_layer).__name__)
        print("RESULT " + json.dumps(out))
    """)
    assert result["chosen"] == "unsloth" and result["unsloth_kernel"] == "sdpa"  # CPU mode: stock sdpa
    assert result["architecture"] in ("llama_mapping", "native")
    assert result["confirmation"]["ok"] is True
    assert result["quantization"] == ("bitsandbytes-nf4" if four_bit else None)
    assert result["quant_layer"] == ("Linear4bit" if four_bit else "Linear")
    assert result["lora_params"] > 0 and result["changed"] == result["lora_params"]
    assert result["loss"] == result["loss"]  # finite, not NaN


PLAN = """
    from attnpick.decide.decision import Candidate, Decision
    from attnpick.decide.probe import collect_facts
    facts = collect_facts()
    # The chain as a GPU machine would run it: unsloth first, sdpa next.
    plan = Decision(chosen="unsloth", mode="auto", dtype="float32",
                    candidates=(Candidate("unsloth", "accepted"), Candidate("sdpa", "eligible")))
"""


def test_import_error_in_the_users_process_goes_on_to_the_next_backend():
    result = run_script(PLAN, """
        import json, sys
        class Broken:
            def find_spec(self, name, path=None, target=None):
                if name == "unsloth":
                    raise ImportError("planted: unsloth is broken in this process")
        sys.meta_path.insert(0, Broken())
        from attnpick import load_model
        model, tok, report = load_model("tiny-exaone", facts=facts, decision=plan, use_cache=False)
        print("RESULT " + json.dumps(report.to_dict()))
    """)
    unsloth, sdpa = result["attempts"]
    assert unsloth["outcome"] == "load_failed" and "planted" in unsloth["reasons"][0]["message"]
    assert unsloth["smoke"]["ok"] is True  # the child could import it; the user's process could not
    assert sdpa["outcome"] == "loaded" and result["chosen"] == "sdpa"
    assert result["transformers_patched"] is False


def test_failure_after_import_reports_whether_transformers_was_left_patched():
    result = run_script(PLAN, """
        import json
        import unsloth
        from unsloth import FastLanguageModel
        def boom(*args, **kwargs):
            raise RuntimeError("planted: from_pretrained failed")
        FastLanguageModel.from_pretrained = boom
        from attnpick import load_model
        from attnpick.backends.unsloth import transformers_patched
        model, tok, report = load_model("tiny-exaone", facts=facts, decision=plan)
        out = report.to_dict()
        out["patched_now"] = transformers_patched()
        print("RESULT " + json.dumps(out))
    """)
    assert [a["outcome"] for a in result["attempts"]] == ["load_failed", "loaded"]
    assert result["chosen"] == "sdpa"
    assert isinstance(result["transformers_patched"], bool)
    assert result["transformers_patched"] == result["patched_now"]


def test_cli_forced_unsloth():
    proc = subprocess.run([sys.executable, "-m", "attnpick", "load", "--backend", "unsloth", "--json"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert report["chosen"] == "unsloth" and report["decision"]["unsloth_kernel"] == "sdpa"


@pytest.mark.parametrize("four_bit", [True, False])
def test_attnpick_train_with_unsloth(tmp_path, four_bit):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "attnpick", "train", "--backend", "unsloth", "--output", str(out),
            "--max-steps", "3", "--batch-size", "4", "--json"]
    args.append("--4bit" if four_bit else "--no-4bit")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "train_report.json").read_text())
    assert report["backend"] == "unsloth" and report["unsloth_kernel"] == "sdpa"
    assert report["steps"] == 3 and len(report["losses"]) == 3
    assert report["quantization"] == ("bitsandbytes-nf4" if four_bit else None)
    assert (out / "adapter" / "adapter_config.json").is_file()
