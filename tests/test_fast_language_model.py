"""`from attnpick import FastLanguageModel`: the guide's case-1 code with only its import changed, and TRL on top.
Each script runs in a fresh process, as a user's would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import GUIDE, STEP, run_program, trl_on_this_machine

ROOT = Path(__file__).resolve().parents[1]


def test_the_guides_case_1_trains_and_generates_with_one_import_changed():
    result, stderr = run_program(GUIDE, STEP)
    assert result["chosen"] == "sdpa"
    assert result["lora"] == 2 * 7 * 2  # A and B, seven projections, two layers of tiny-exaone
    assert result["lora_b_with_grad"] == 14 and result["layers_with_grad"] == ["0", "1"]  # every layer learns
    assert result["new_tokens"] == 6 and result["use_cache"] is True and result["training"] is False
    assert ("attnpick: tiny-exaone -> sdpa (flash kernel for CPU; smoke run passed, sdpa_attention_forward x2 over 2 "
            "layers)") in stderr
    assert "ruled out: unsloth [" in stderr


def test_trust_remote_code_true_still_runs_no_code_when_transformers_has_the_class():
    result, _ = run_program(GUIDE.replace("load_in_4bit=True,", "load_in_4bit=True, trust_remote_code=True,"), STEP)
    assert result["architecture"] in ("native", "llama_mapping")
    assert any("no repository code ran" in note for note in result["notes"])


def test_backend_keyword_and_environment_choose_the_backend():
    result, _ = run_program(GUIDE.replace("load_in_4bit=True,", "load_in_4bit=True, backend='eager',"), STEP)
    assert result["chosen"] == "eager"
    result, _ = run_program(GUIDE, STEP, env={"ATTNPICK_BACKEND": "eager"})
    assert result["chosen"] == "eager"


def test_for_training_after_for_inference_trains_again():
    result, _ = run_program(GUIDE, STEP, """
        FastLanguageModel.for_training(model)
        model.zero_grad()
        model(**batch, labels=labels).loss.backward()
        again = [n for n, p in model.named_parameters() if "lora_B" in n and p.grad is not None
                 and bool(p.grad.abs().sum() > 0)]
        print("RESULT " + json.dumps({"again": len(again), "training": model.training,
                                      "use_cache": model.config.use_cache}))
    """)
    assert result == {"again": 14, "training": True, "use_cache": False}


@pytest.mark.parametrize("keywords, needle", [
    ("load_in_8bit=True", "load_in_8bit=True: attnpick loads 4-bit NF4 or unquantized"),
    ("fast_inference=True", "vLLM inference is Unsloth's"),
    ("rope_scaling={'type': 'linear', 'factor': 2.0}", "rope_scaling"),
    ("device_map='cpu'", "device_map='cpu'"),
    ("load_in_fp8=True", "not fp8"),
])
def test_unsloth_keywords_that_would_change_the_result_are_refused(keywords, needle):
    from attnpick import FastLanguageModel
    from attnpick.errors import UsageError

    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        FastLanguageModel.from_pretrained("tiny-exaone", **eval(f"dict({keywords})"))  # noqa: S307


def test_unsloth_keywords_that_only_tune_unsloth_are_ignored_with_one_warning():
    from attnpick import FastLanguageModel

    with pytest.warns(UserWarning) as caught:
        model, _ = FastLanguageModel.from_pretrained("tiny-exaone", max_seq_length=64, load_in_4bit=False,
                                                     gpu_memory_utilization=0.6, max_lora_rank=32, random_state=1,
                                                     offload_embedding=True)
    messages = [str(w.message) for w in caught if "ignores" in str(w.message)]
    assert len(messages) == 1
    assert "gpu_memory_utilization, max_lora_rank, offload_embedding, random_state" in messages[0]
    assert model.attnpick_report.quantization is None


def test_a_model_not_loaded_by_attnpick_is_refused_with_the_fix():
    from attnpick import FastLanguageModel
    from attnpick.errors import UsageError

    with pytest.raises(UsageError, match="FastLanguageModel.from_pretrained"):
        FastLanguageModel.get_peft_model(object())


TRL = """
    import json
    import torch
    from trl import SFTConfig, SFTTrainer

    from attnpick.training.data import chat_dataset

    conversations, _ = chat_dataset("embedded")
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=conversations.select(range(32)),
                         args=SFTConfig(output_dir=OUTPUT, max_steps=3, per_device_train_batch_size=4,
                                        learning_rate=1e-3, logging_steps=1, report_to=[], max_length=256,
                                        use_cpu=True, bf16=False, save_strategy="no", padding_free=PADDING_FREE,
                                        packing=PADDING_FREE))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    changed = sum(int(not torch.equal(p.detach().cpu(), before[n].cpu())) for n, p in model.named_parameters()
                  if n in before)
    print("RESULT " + json.dumps({"losses": losses, "changed": changed, "total": len(before),
                                  "steps": trainer.state.global_step}))
"""


@trl_on_this_machine
@pytest.mark.parametrize("padding_free", [False, True])
def test_trl_sft_trainer_trains_what_from_pretrained_and_get_peft_model_return(tmp_path, padding_free):
    result, _ = run_program(GUIDE, f"OUTPUT, PADDING_FREE = {str(tmp_path)!r}, {padding_free}", TRL)
    assert result["steps"] == 3 and len(result["losses"]) == 3
    assert all(loss == loss and loss > 0 for loss in result["losses"])  # finite, positive
    assert result["changed"] == result["total"] == 14  # every LoRA B matrix moved


def test_trls_padding_free_collator_passes_attnpicks_packing_check_with_sdpa():
    """TRL 1.15 warns that padding-free needs a FlashAttention variant. With transformers 5, sdpa (and eager, and
    attnpick's xformers: they all build their mask through transformers' mask functions) separates packed
    sequences from their position_ids; attnpick's packing check measures it on the real path."""
    result, _ = run_program(GUIDE, """
        import json
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        from attnpick.training.data import examples_of, load_examples
        from attnpick.training.packing import packing_check

        examples, _ = load_examples("embedded", tokenizer, 256)
        collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
        model.config.use_cache = False
        ok, diff, tol = packing_check(model, examples_of(examples, 16), collator, "float32")
        print("RESULT " + json.dumps({"ok": ok, "diff": diff, "tol": tol}))
    """)
    assert result["ok"] and result["diff"] <= result["tol"]


def test_two_ranks_agree_on_one_backend_in_from_pretrained(tmp_path):
    script = tmp_path / "guide.py"
    script.write_text(textwrap.dedent(GUIDE) + textwrap.dedent("""
        import json, os, pathlib
        # one file per rank: two ranks printing to one pipe can interleave their lines
        pathlib.Path(__file__).with_name(f"rank{os.environ['RANK']}.json").write_text(json.dumps(
            {"rank": os.environ["RANK"], "chosen": model.attnpick_report.chosen,
             "differed": [d.to_dict() for d in model.attnpick_report.ranks_that_differed]}))
    """), encoding="utf-8")
    env = {**os.environ, "ATTNPICK_DISABLE_BACKENDS": "sdpa@1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29531", str(script)], capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["rank"] for r in results] == ["0", "1"]
    assert {r["chosen"] for r in results} == {"eager"}
    assert results[0]["differed"][0]["rank"] == 1 and "sdpa" in results[0]["differed"][0]["lacked"]


@trl_on_this_machine
def test_the_readmes_qlora_script_with_trl_runs_as_written(tmp_path):
    """examples/qlora_trl.py is the README's full QLoRA + TRL script (tests/test_docs.py keeps them equal)."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "qlora_trl.py")], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "attention backend: sdpa" in proc.stdout
    assert (tmp_path / "runs" / "qlora-trl").is_dir()
