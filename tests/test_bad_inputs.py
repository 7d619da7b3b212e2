"""Every bad input gets one line naming the fix and exit 2 (or works), nothing is written half-way, an unexpected
error is exit 1 with the log's path; a broken model folder is the model's fault, not the backends'."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attnpick.decide.probe import collect_facts
from attnpick.load import smoke
from attnpick.model import tiny
from attnpick.util import cache
from tests.helpers import machine, one_line, run_cli

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env, timeout=timeout)


# -- a broken model folder is the model's fault --------------------------------------------------------------------

def broken_folder(root: Path, case: str) -> Path:
    folder = root / case
    shutil.copytree(tiny.ensure(), folder)
    weights = folder / "model.safetensors"
    if case == "config only":
        for f in folder.iterdir():
            if f.name != "config.json":
                f.unlink()
    elif case == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif case == "garbage weights":
        weights.write_bytes(b"this is not a safetensors file at all" * 20)
    elif case == "index names a missing shard":
        weights.rename(folder / "model-00001-of-00002.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps(
            {"weight_map": {"transformer.wte.weight": "model-00001-of-00002.safetensors",
                            "transformer.ln_f.weight": "model-00002-of-00002.safetensors"}}))
    elif case == "no tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
            (folder / name).unlink(missing_ok=True)
    return folder


MODEL_CASES = {
    "config only": "has no weights",
    "truncated weights": "not a readable safetensors file",
    "garbage weights": "not a readable safetensors file",
    "index names a missing shard": "model-00002-of-00002.safetensors, which is missing",
    "no tokenizer": "has no tokenizer",
}


COMMANDS = {"load": ["load"], "exaone-as-llama": ["load", "--exaone-as-llama"], "verify": ["verify"],
            "bench": ["bench", "--seq-lens", "64"], "train": ["train", "--output", "OUT"]}
# every broken folder through `load`; every command with one broken folder (they share the check)
MATRIX = [(case, "load") for case in MODEL_CASES] + [
    ("truncated weights", "exaone-as-llama"), ("config only", "verify"), ("garbage weights", "bench"),
    ("no tokenizer", "train")]


@pytest.mark.parametrize("case, command", MATRIX)
def test_a_broken_model_folder_is_refused_before_any_backend_runs(tmp_path, case, command):
    command = COMMANDS[command]
    folder = broken_folder(tmp_path, case)
    args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    line = one_line(cli(args[0], str(folder), *args[1:]))
    assert MODEL_CASES[case] in line and str(folder) in line
    assert not (tmp_path / "out").exists()


def test_a_load_error_every_backend_hits_is_reported_once_as_the_models(tmp_path):
    folder = broken_folder(tmp_path, "shapes")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 96  # the weights were saved with 128: no backend can load them
    (folder / "config.json").write_text(json.dumps(config))
    line = one_line(cli("load", str(folder)))
    assert "fails to load the same way with every backend tried" in line and "is at fault" in line
    assert len(line) < 900


def test_a_corrupt_cached_tiny_exaone_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path))
    weights = tiny.ensure() / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:1000])
    proc = cli("load", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert weights.read_bytes() == good


# -- options are checked before any work ----------------------------------------------------------------------------

TRAIN_OPTIONS = {
    "--lora-r 0": "--lora-r must be a whole number of at least 1",
    "--lora-dropout 2": "--lora-dropout must be a finite number at least 0 and below 1",
    "--epochs nan": "--epochs must be a finite number above 0",
    "--learning-rate nan": "--learning-rate must be a finite number above 0",
    "--scheduler bogus": "Unknown --scheduler 'bogus'. Choose one of: linear, cosine",
    "--target-modules bogus_proj": "--target-modules bogus_proj: no such layer in this model. Its linear layers are:",
    "--warmup -1": "--warmup must be a finite number at least 0",
    "--logging-steps 0": "--logging-steps must be a whole number of at least 1",
    "--seed -1": "--seed must be a whole number from 0 to 4294967295",
    "--max-seq-length 1000000000": "--max-seq-length must be a whole number from 8 to 1048576",
    "--batch-size x": "argument --batch-size: invalid int value: 'x'",
}


@pytest.mark.parametrize("option", list(TRAIN_OPTIONS))
def test_train_options_are_refused_before_anything_loads_or_is_written(tmp_path, option):
    out = tmp_path / "out"
    line = one_line(cli("train", "--output", str(out), *option.split()))
    assert TRAIN_OPTIONS[option] in line
    assert not out.exists()


@pytest.mark.parametrize("args, needle", [
    (["load", "--smoke-timeout", "nan"], "--smoke-timeout) must be a finite number of seconds above 0"),
    (["load", "--smoke-timeout", "inf"], "--smoke-timeout) must be a finite number of seconds above 0"),
    (["load", "--smoke-timeout", "0"], "--smoke-timeout) must be a finite number of seconds above 0"),
    (["load", "--smoke-timeout", "-1"], "--smoke-timeout) must be a finite number of seconds above 0"),
    (["load", "--max-seq-length", str(10**9)], "(--max-seq-length) must be a whole number from 8 to 1048576"),
    (["bench", "--seq-lens", "0"], "--seq-lens must be token counts from 1 to 1048576, got 0"),
    (["bench", "--seq-lens", "1000000000"], "--seq-lens must be token counts from 1 to 1048576"),
    (["bench", "--batch", "0"], "--batch must be a positive whole number, got 0"),
    (["bench", "--repeats", "0"], "--repeats must be a positive whole number, got 0"),
    (["bench", "--plot", "/no/such/folder/plot.png"], "the folder '/no/such/folder' does not exist"),
    (["doctor", "--policy", "measured", "--seq-len", "0"], "--seq-len must be a whole number from 8 to 1048576"),
])
def test_other_options_are_refused_up_front(args, needle):
    assert needle in one_line(cli(*args, timeout=120))


def test_an_output_that_cannot_be_written_is_refused_before_the_model_loads():
    line = one_line(cli("train", "--output", "/proc/attnpick-run"))
    assert "--output '/proc/attnpick-run' cannot be written" in line


def test_an_output_naming_a_file_gets_one_message(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    for extra in ([], ["--resume"]):
        line = one_line(cli("train", "--output", str(target), *extra))
        assert line.endswith("is a file, not a folder. Give a folder path for the run.")
    assert target.read_text() == "mine"


# -- caches and facts files ------------------------------------------------------------------------------------------

def test_cache_entries_of_the_wrong_shape_are_misses_and_rewritten(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path))
    facts = collect_facts()
    for path in (tmp_path / "imports").glob("*.json"):
        entry = json.loads(path.read_text())
        path.write_text(json.dumps({"key": entry["key"], "value": {"torch": ["not", "a", "record"]}}))
    assert collect_facts() == facts
    from attnpick.decide.decision import Request, choose

    job = smoke.smoke_job(choose(facts, Request("eager")).candidate("eager"), facts, None, "float32")
    assert smoke.run_smoke(job, facts).ok
    for path in (tmp_path / "smoke").glob("*.json"):
        entry = json.loads(path.read_text())
        path.write_text(json.dumps({"key": entry["key"], "value": {"ok": "yes", "reason": 3}}))
    again = smoke.run_smoke(job, facts)
    assert again.ok and not again.cached
    assert smoke.run_smoke(job, facts).cached  # rewritten properly


def test_an_unreadable_value_in_a_cache_file_never_breaks_a_command(tmp_path):
    env = {"ATTNPICK_CACHE_DIR": str(tmp_path)}
    assert cli("doctor", "--json", env=env).returncode == 0
    for path in tmp_path.rglob("*.json"):
        path.write_text('{"key": ' + "[" * 5000 + "]" * 5000 + "}")  # deeply nested: RecursionError to a reader
    assert cache.read_json(next(tmp_path.rglob("*.json"))) is None
    assert cli("doctor", "--json", env=env).returncode == 0


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_facts_files_with_a_bom_or_in_utf16_work(tmp_path, encoding):

    path = tmp_path / "m.json"
    path.write_text(json.dumps(machine("windows", "RTX4090", xformers="0.0.33").to_dict()), encoding=encoding)
    proc = cli("plan", "--env", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chosen"] == "xformers"


def test_a_deeply_nested_facts_file_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in one_line(cli("plan", "--env", str(path)))


# -- the output folder -----------------------------------------------------------------------------------------------

def test_an_empty_checkpoint_from_ctrl_c_never_blocks_a_run(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)  # what Ctrl-C during the first save leaves
    proc = cli("train", "--output", str(out), "--max-steps", "2", "--batch-size", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any("discarded checkpoint-2" in note for note in json.loads(proc.stdout)["notes"])
    out2 = tmp_path / "run2"
    (out2 / "checkpoint-2").mkdir(parents=True)
    proc = cli("train", "--output", str(out2), "--resume", "--max-steps", "2", "--batch-size", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = json.loads(proc.stdout)["notes"]
    assert any("no complete checkpoint; starting from scratch" in note for note in notes)


# -- the unexpected ----------------------------------------------------------------------------------------------------

def test_an_unexpected_error_is_one_line_naming_the_log_and_debug_shows_the_traceback(tmp_path):
    code = ("import sys, attnpick.cli.main as cli\n"
            "def boom(*a, **k):\n    raise RuntimeError('planted failure')\n"
            "cli.PlanConfig.run = boom\n"
            "sys.exit(cli.main(sys.argv[1:]))")
    env = {**os.environ, "ATTNPICK_CACHE_DIR": str(tmp_path)}
    facts = tmp_path / "m.json"
    facts.write_text(json.dumps({"os": "linux", "torch": None, "device": {"type": "cpu"}}))
    proc = subprocess.run([sys.executable, "-c", code, "plan", "--env", str(facts)], capture_output=True, text=True,
                          env=env, timeout=120)
    line = one_line(proc, code=1)
    assert "unexpected error: RuntimeError: planted failure" in line and "--debug" in line
    log = Path(line.split("the traceback is in ", 1)[1].split(";", 1)[0])
    assert "Traceback" in log.read_text(encoding="utf-8") and "planted failure" in log.read_text(encoding="utf-8")
    debug = subprocess.run([sys.executable, "-c", code, "--debug", "plan", "--env", str(facts)], capture_output=True,
                           text=True, env=env, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"], ids=["0-byte", "blank lines"])
def test_an_empty_data_file_is_one_line_naming_no_rows(tmp_path, content):
    data = tmp_path / "empty.jsonl"
    data.write_bytes(content)
    out = tmp_path / "run"
    line = one_line(cli("train", "--data", str(data), "--output", str(out), timeout=300))
    assert "has no rows" in line and str(data) in line
    assert not out.exists()


def test_the_library_checks_bench_values_as_the_cli_does():
    from attnpick import bench
    from attnpick.errors import UsageError

    for kwargs, needle in (({"seq_lens": ()}, "--seq-lens"), ({"seq_lens": (0,)}, "--seq-lens"),
                           ({"batch": 0}, "--batch"), ({"repeats": -1}, "--repeats"), ({"mode": "fast"}, "--mode")):
        with pytest.raises(UsageError, match=needle):
            bench(**kwargs)


def test_first_line_never_fails_on_an_empty_message():
    from attnpick.errors import first_line

    assert first_line("") == "" and first_line(None) == "" and first_line(ValueError()) == ""
    assert first_line("\n  \nfirst\nsecond") == "first" and first_line("a\nlast\n\n", last=True) == "last"
    assert len(first_line("x" * 1000)) == 300
