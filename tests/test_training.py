"""attnpick train on tiny-exaone and the embedded data, on CPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import train_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run30(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    proc = train_cli("--output", str(out), "--max-steps", "30", "--save-steps", "10", "--learning-rate", "1e-3",
                     "--4bit", "--json")  # QLoRA asked: on a CPU the default is the unquantized model
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout)


def test_loss_goes_down_and_the_report_names_backend_and_packing(run30):
    out, report = run30
    losses = [loss for _, loss in report["losses"]]
    assert len(losses) == 30 and report["steps"] == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05
    assert report["backend"] == "sdpa" and report["quantization"] == "bitsandbytes-nf4"
    assert not any(note.startswith("CPU:") for note in report["notes"])  # asked, so nothing to explain
    assert report["packing"]["enabled"] is True and report["packing"]["checked"] is True
    assert "sdpa" in report["packing"]["reason"]
    assert report["data"]["examples"] == 360 and report["data"]["truncated"] > 0
    assert report["tokens_per_s"] > 0
    for name in ("metrics.json", "loss.png", "load_report.json", "train_report.json", "adapter/adapter_config.json"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "checkpoint-10" / "attnpick-complete.json").is_file()


def test_the_adapter_reloads_with_the_same_logits(run30):
    import torch
    from peft import PeftModel

    from attnpick.loading import load_model

    out, report = run30
    base, tokenizer, _ = load_model("tiny-exaone", max_seq_length=256, load_in_4bit=True, backend="sdpa")
    model = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    ids = tokenizer(report["probe"]["text"], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits[0, -1].float()
    assert [round(float(x), 6) for x in logits[:8]] == pytest.approx(report["probe"]["head"], abs=1e-5)
    assert float(logits.sum()) == pytest.approx(report["probe"]["sum"], rel=1e-5)


@pytest.fixture(scope="module")
def tiny_training_model():
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorWithFlattening

    from attnpick.loading import load_model
    from attnpick.training.data import examples_of, load_examples

    def make(backend):
        model, tok, _ = load_model("tiny-exaone", max_seq_length=256, backend=backend)
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
        model.config.use_cache = False
        examples, _ = load_examples("embedded", tok, 256)
        return model, examples_of(examples, 16), DataCollatorWithFlattening(return_position_ids=True)

    return make


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_packing_check_passes_on_the_training_path(tiny_training_model, backend):
    from attnpick.training.packing import packing_check

    model, examples, collator = tiny_training_model(backend)
    ok, diff, tol = packing_check(model, examples, collator, "float32")
    assert ok and diff <= tol


@pytest.mark.parametrize("planted", ["cache on", "all-ones mask"])
def test_a_contaminating_setup_is_caught(tiny_training_model, planted):
    import torch

    from attnpick.training.packing import decide_packing, packing_check

    model, examples, collator = tiny_training_model("sdpa")
    if planted == "cache on":
        extra = {"use_cache": True}
    else:
        total = sum(min(len(e.input_ids), 64) for e in sorted(examples[:16], key=lambda e: len(e.input_ids))[-4:])
        extra = {"attention_mask": torch.ones(1, total, dtype=torch.long)}
    ok, diff, tol = packing_check(model, examples, collator, "float32", extra=extra)
    assert not ok and diff > tol
    verdict = decide_packing("auto", ok, diff, tol, "sdpa")
    assert verdict.enabled is False and "leak attention across samples" in verdict.reason


def _losses(out: Path) -> dict[int, float]:
    return {step: loss for step, loss in json.loads((out / "train_report.json").read_text())["losses"]}


RESUME_ARGS = ["--max-steps", "12", "--save-steps", "4", "--batch-size", "4", "--learning-rate", "1e-3", "--json"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "full"
    proc = train_cli("--output", str(out), *RESUME_ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_resume_after_sigkill_reproduces_the_uninterrupted_losses(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "attnpick", "train", "--output", str(out), *RESUME_ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    marker = out / "checkpoint-4" / "attnpick-complete.json"
    deadline = time.monotonic() + 600
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists()
    assert not (out / "train_report.json").exists()  # it really died mid-run
    resumed = train_cli("--output", str(out), "--resume", *RESUME_ARGS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)
    assert report["resumed_from"].endswith("checkpoint-4") or report["resumed_from"].endswith("checkpoint-8")
    expected, got = _losses(uninterrupted), _losses(out)
    start = int(report["resumed_from"].rsplit("-", 1)[1])
    for step in range(start + 1, 13):
        assert got[step] == pytest.approx(expected[step], rel=1e-4, abs=1e-5), step
    assert sorted(got) == list(range(1, 13))  # the log history covers the whole run, resumed part included
    full = json.loads((uninterrupted / "train_report.json").read_text())["train_loss"]
    assert report["train_loss"] == pytest.approx(full, rel=1e-4)  # averaged over all 12 steps, not the last 8


def test_a_checkpoint_whose_write_did_not_finish_is_skipped(uninterrupted, tmp_path):
    out = tmp_path / "torn"
    shutil.copytree(uninterrupted, out)
    (out / "checkpoint-12" / "attnpick-complete.json").unlink()  # the write of checkpoint-12 never finished
    optimizer = out / "checkpoint-12" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    for name in ("train_report.json", "metrics.json"):
        (out / name).unlink()
    resumed = train_cli("--output", str(out), "--resume", *RESUME_ARGS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)
    assert report["resumed_from"].endswith("checkpoint-8")
    expected, got = _losses(uninterrupted), _losses(out)
    for step in (9, 10, 11, 12):
        assert got[step] == pytest.approx(expected[step], rel=1e-4, abs=1e-5)


def _bad_data(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", ["malformed line", "empty", "unknown layout", "existing output", "missing file",
                                  "resume without run", "eval share too big", "eval data and share",
                                  "eval steps alone", "eval data missing"])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, case):
    out = tmp_path / "out"
    args = ["--output", str(out)]
    if case == "malformed line":
        data = _bad_data(tmp_path, "bad.jsonl", '{"prompt": "a", "completion": "b"}\n{"prompt": "a",\n')
        args += ["--data", str(data)]
        needle = f"{data}:2: not valid JSON"
    elif case == "empty":
        args += ["--data", str(_bad_data(tmp_path, "empty.jsonl", "\n\n"))]
        needle = "empty"
    elif case == "unknown layout":
        args += ["--data", str(_bad_data(tmp_path, "odd.jsonl", '{"question": "a", "answer": "b"}\n'))]
        needle = "unknown layout with columns answer, question"
    elif case == "existing output":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        needle = "already exists. Pass --resume"
    elif case == "missing file":
        args += ["--data", str(tmp_path / "nope.jsonl")]
        needle = "does not exist"
    elif case == "eval share too big":
        args += ["--eval-share", "0.7"]
        needle = "--eval-share must be a finite number at least 0 and below 0.5"
    elif case == "eval data and share":
        args += ["--eval-share", "0.1", "--eval-data", str(tmp_path / "e.jsonl")]
        needle = "not both"
    elif case == "eval steps alone":
        args += ["--eval-steps", "5"]
        needle = "--eval-steps needs held-out data"
    elif case == "eval data missing":
        args += ["--eval-data", str(tmp_path / "nope.jsonl")]
        needle = "does not exist"
    else:
        args += ["--resume"]
        needle = "does not exist"
    proc = train_cli(*args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    if case == "existing output":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()


def test_two_ranks_agree_on_one_backend(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "attnpick", "train", "--output", str(out), "--max-steps", "3", "--batch-size", "2",
           "--json"]  # the precision left to attnpick: the ranks agree on it too (a collective on the CPU default)
    env = {**os.environ, "ATTNPICK_DISABLE_BACKENDS": "sdpa@1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / "train_report.json").read_text())
    load = json.loads((out / "load_report.json").read_text())
    assert report["world_size"] == 2 and report["backend"] == "eager" and report["quantization"] is None
    assert load["decision"]["chosen_by"] == "agreed by every rank"
    [rank1] = report["ranks_that_differed"]
    assert rank1["rank"] == 1 and "ATTNPICK_DISABLE_BACKENDS" in rank1["lacked"]["sdpa"]


def test_library_train_takes_a_config_or_options_not_both(tmp_path):
    import attnpick
    from attnpick.errors import UsageError
    from attnpick.training import TrainConfig

    with pytest.raises(UsageError, match="either a TrainConfig or keyword options"):
        attnpick.train(TrainConfig(output=str(tmp_path / "a")), max_steps=3)
    with pytest.raises(UsageError, match="--packing must be auto, on or off"):
        attnpick.train(output=str(tmp_path / "b"), packing="maybe")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_eval_share_holds_out_a_seeded_split_and_reports_eval_loss_at_its_steps_and_the_end(tmp_path):
    import attnpick

    report = attnpick.train(output=str(tmp_path / "run"), max_steps=4, eval_share=0.1, eval_steps=2, progress=False)
    assert [step for step, _ in report.eval_losses] == [2, 4] and report.eval_loss == report.eval_losses[-1][1]
    assert all(0 < loss < 20 for _, loss in report.eval_losses)
    held, trained = report.eval["examples"], report.eval["trained_on"]
    assert held == round(report.data.examples * 0.1) and held + trained == report.data.examples
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["eval_loss"] == report.eval_loss and metrics["eval_losses"] == [list(x) for x in report.eval_losses]
    assert json.loads((tmp_path / "run" / "train_report.json").read_text())["eval"]["examples"] == held
    again = attnpick.train(output=str(tmp_path / "again"), max_steps=1, eval_share=0.1, progress=False)
    assert again.eval_losses[0][1] > 0 and again.eval["trained_on"] == trained  # the same seed, the same split


def test_eval_data_is_tokenized_like_the_training_data_and_counted(tmp_path):
    import attnpick

    rows = [{"messages": [{"role": "user", "content": f"{i} 더하기 {i}는?"}, {"role": "assistant",
                                                                              "content": f"{2 * i}입니다."}]}
            for i in range(6)]
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = attnpick.train(output=str(tmp_path / "run"), max_steps=2, eval_data=str(data), progress=False)
    assert report.eval["examples"] == 6 and report.eval["rows"] == 6 and report.eval["dropped"] == 0
    assert [step for step, _ in report.eval_losses] == [2]
