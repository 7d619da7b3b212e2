"""The model options every command shares (`attnpick.model.options.ModelOptions`): the model positional or as
`--model`, and `--trust-remote-code` reaching the model's own code in train, verify, bench, chat and export (a local
model whose class only its folder's code defines), refused with one line without it."""

from __future__ import annotations

import json

import pytest

from attnpick.errors import UsageError
from attnpick.model.options import ModelOptions, check_max_seq_length
from tests.helpers import marker_lines, one_line, remote_code_model, run_cli


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    return remote_code_model(root / "toy-model"), root / "built.txt"


@pytest.fixture(scope="module")
def trained(remote, tmp_path_factory):
    """`attnpick train REMOTE --trust-remote-code`, once: the run later commands read."""
    folder, marker = remote
    out = tmp_path_factory.mktemp("run") / "run"
    proc = run_cli("train", "--model", str(folder), "--trust-remote-code", "--output", str(out), "--max-steps", "1",
                   "--batch-size", "2", "--json", env={"ATTNPICK_TOY_MARKER": str(marker)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout)


def test_train_runs_the_models_own_code_with_the_flag(remote, trained):
    out, report = trained
    load = json.loads((out / "load_report.json").read_text())
    assert load["architecture"] == "remote_code" and load["model_class"] == "ToyForCausalLM"
    assert marker_lines(remote[1]) >= 1 and report["steps"] == 1


@pytest.mark.parametrize("command", [
    ["train", "--output", "{tmp}/never", "--max-steps", "1"],
    ["verify", "--backend", "sdpa"],
    ["bench", "--seq-lens", "16", "--backend", "sdpa", "--no-verify", "--repeats", "1"],
])
def test_without_the_flag_the_models_code_never_runs(remote, tmp_path, command):
    folder, _ = remote
    marker = tmp_path / "built.txt"
    args = [part.format(tmp=tmp_path) for part in command]
    proc = run_cli(args[0], str(folder), *args[1:], env={"ATTNPICK_TOY_MARKER": str(marker)})
    assert "--trust-remote-code" in one_line(proc, 2)
    assert marker_lines(marker) == 0 and not (tmp_path / "never").exists()


@pytest.mark.parametrize("command", [
    ["verify", "--backend", "sdpa", "--json"],
    ["bench", "--mode", "train", "--seq-lens", "16", "--batch", "1", "--backend", "sdpa", "--no-verify", "--repeats",
     "1", "--json"],
])
def test_verify_and_bench_reach_the_models_code(remote, tmp_path, command):
    folder, _ = remote
    marker = tmp_path / "built.txt"
    proc = run_cli(command[0], str(folder), "--trust-remote-code", *command[1:],
                   env={"ATTNPICK_TOY_MARKER": str(marker)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert all(row["ok"] for row in report.get("rows", [])) and report.get("ok", True), report
    assert marker_lines(marker) >= 1  # the bench child and verify build it through the chain with the flag


def test_chat_and_export_need_the_flag_for_a_run_on_such_a_model(trained, tmp_path):
    out, _ = trained
    marker = tmp_path / "built.txt"
    env = {"ATTNPICK_TOY_MARKER": str(marker)}
    assert "--trust-remote-code" in one_line(run_cli("chat", str(out), "--prompt", "안녕", env=env), 2)
    assert "--trust-remote-code" in one_line(run_cli("export", str(out), "--output", str(tmp_path / "m"), env=env), 2)
    assert marker_lines(marker) == 0
    chat = run_cli("chat", str(out), "--trust-remote-code", "--prompt", "안녕", "--max-new-tokens", "2",
                   "--temperature", "0", env=env)
    assert chat.returncode == 0, chat.stderr[-3000:]
    export = run_cli("export", "--model", str(out), "--trust-remote-code", "--output", str(tmp_path / "merged"),
                     env=env)
    assert export.returncode == 0, export.stderr[-3000:]
    assert (tmp_path / "merged" / "config.json").is_file() and marker_lines(marker) >= 2


def test_the_positional_model_and_model_must_agree(tmp_path):
    proc = run_cli("verify", "tiny-exaone", "--model", "other-model")
    assert one_line(proc, 2).startswith("attnpick: Can't provide both model 'tiny-exaone' and --model")


def test_one_check_of_the_context_length_everywhere():
    for bad in (0, 7, True, 1.5, 1 << 21):
        with pytest.raises(UsageError, match="max_seq_length must be a whole number from 8 to"):
            check_max_seq_length(bad, "max_seq_length")
    check_max_seq_length(8)
    with pytest.raises(UsageError, match="--token is empty"):
        ModelOptions(token=" ").validate_model()
    with pytest.raises(UsageError, match="trust_remote_code"):
        ModelOptions(trust_remote_code="yes").validate_model()
