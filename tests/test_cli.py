"""The CLI as a user runs it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import machine, run_cli


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, input=stdin, env=env, timeout=600)


@pytest.fixture(scope="module")
def doctor_json() -> dict:
    proc = run("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_doctor_on_this_cpu_machine_chooses_sdpa(doctor_json):
    facts, decision = doctor_json["facts"], doctor_json["decision"]
    assert facts["schema"] == 1 and facts["device"]["type"] == "cpu" and facts["cuda"] is None
    assert facts["packages"]["torch"]["importable"] is True
    assert decision["chosen"] == "sdpa"
    for cand in decision["candidates"]:
        if cand["backend"] in ("sdpa", "eager"):
            assert cand["reasons"] == []
        else:
            assert cand["verdict"] == "rejected" and cand["reasons"], cand


def test_doctor_output_feeds_plan(tmp_path, doctor_json):
    path = tmp_path / "doctor.json"
    path.write_text(json.dumps(doctor_json))
    proc = run("plan", "--env", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chosen"] == "sdpa"


def test_doctor_human_view_has_table_and_bug_report_block():
    proc = run("doctor")
    assert proc.returncode == 0, proc.stderr
    assert "Chosen: sdpa" in proc.stdout
    assert "attnpick doctor: os=linux" in proc.stdout and "```" in proc.stdout


def test_plan_reads_stdin_and_explains_another_machine():
    facts = machine("windows", "RTX4090", xformers="0.0.33").to_dict()
    proc = run("plan", "--env", "-", "--json", stdin=json.dumps(facts))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chosen"] == "xformers"


def test_plan_with_model_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "exaone", "hidden_size": 2560,
                                                      "num_attention_heads": 32, "num_key_value_heads": 8}))
    env = tmp_path / "m.json"
    env.write_text(json.dumps(machine("linux", "A100", flash_attn="2.8.3").to_dict()))
    proc = run("plan", "--env", str(env), "--model", str(tmp_path), "--json")
    data = json.loads(proc.stdout)
    assert data["chosen"] == "flash_attention_2" and data["model"]["head_dim"] == 80


def test_env_variable_forces_backend_and_flag_wins(tmp_path):
    env = tmp_path / "m.json"
    env.write_text(json.dumps(machine("linux").to_dict()))
    proc = run("plan", "--env", str(env), "--json", env={"ATTNPICK_BACKEND": "eager"})
    data = json.loads(proc.stdout)
    assert data["chosen"] == "eager" and data["chosen_by"] == "ATTNPICK_BACKEND"
    proc = run("plan", "--env", str(env), "--json", "--backend", "sdpa", env={"ATTNPICK_BACKEND": "eager"})
    assert json.loads(proc.stdout)["chosen"] == "sdpa"


def test_forced_backend_that_cannot_run_exits_3_with_reasons(tmp_path):
    env = tmp_path / "m.json"
    env.write_text(json.dumps(machine("linux", "T4", flash_attn="2.8.3").to_dict()))
    proc = run("plan", "--env", str(env), "--backend", "flash_attention_2")
    assert proc.returncode == 3
    assert "need compute capability >= 8.0, have 7.5" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_nothing_eligible_exits_3(tmp_path):
    env = tmp_path / "m.json"
    env.write_text(json.dumps(machine("linux", torch=None).to_dict()))
    proc = run("plan", "--env", str(env), "--json")
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["chosen"] is None


def _bad_inputs(tmp):
    good = tmp / "good.json"
    good.write_text(json.dumps(machine("linux").to_dict()))
    broken = tmp / "broken.json"
    broken.write_text('{"os": "linux", ')
    wrong = tmp / "wrong.json"
    wrong.write_text(json.dumps({"os": "linux", "torch": "2.11.0", "device": {"type": "cuda", "capability": "eight"}}))
    corrupt_model = tmp / "corrupt-model"
    corrupt_model.mkdir()
    (corrupt_model / "config.json").write_text("{not json")
    empty_model = tmp / "empty-model"
    empty_model.mkdir()
    return {
        "unknown backend": (["plan", "--env", str(good), "--backend", "xformer"], "Choose one of: auto, unsloth"),
        "two backends": (["plan", "--env", str(good), "--backend", "flash_attention_2", "--backend", "xformers"],
                         "one model uses exactly one attention backend"),
        "unknown dtype": (["plan", "--env", str(good), "--dtype", "fp8"], "Unknown dtype"),
        "missing facts file": (["plan", "--env", str(tmp / "nope.json")], "does not exist"),
        "malformed facts JSON": (["plan", "--env", str(broken)], "is not valid JSON"),
        "wrong facts value": (["plan", "--env", str(wrong)], "'device.capability' must look like"),
        "no --env": (["plan"], "--env"),
        "missing model folder": (["plan", "--env", str(good), "--model", str(tmp / "no-model")], "does not exist"),
        "model without config": (["plan", "--env", str(good), "--model", str(empty_model)], "has no config.json"),
        "corrupt model config": (["plan", "--env", str(good), "--model", str(corrupt_model)], "not valid JSON"),
        "unknown command": (["frobnicate"], "invalid choice"),
        "unknown doctor backend": (["doctor", "--backend", "flash"], "Unknown backend 'flash'"),
    }


BAD_INPUTS = [
    "unknown backend", "two backends", "unknown dtype", "missing facts file", "malformed facts JSON",
    "wrong facts value", "no --env", "missing model folder", "model without config", "corrupt model config",
    "unknown command", "unknown doctor backend"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line(tmp_path, case):
    args, needle = _bad_inputs(tmp_path)[case]
    proc = run(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert proc.stdout == ""


def test_every_option_of_every_command_has_a_help_line():
    import argparse

    from attnpick.cli.main import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [f"{name} {'/'.join(action.option_strings) or action.dest}"
               for name, command in sub.choices.items() for action in command._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert missing == []


def test_train_options_are_the_config_fields():
    from dataclasses import fields

    from attnpick.cli.main import _config, build_parser
    from attnpick.training.config import TrainConfig

    args = build_parser().parse_args(["train", "--output", "x"])
    built, defaults = _config(args, TrainConfig), TrainConfig(output="x")
    for field in fields(TrainConfig):
        if field.name in ("progress", "backend", "target_modules"):
            continue
        assert getattr(built, field.name) == getattr(defaults, field.name), field.name
    assert args.target_modules.split(",") == list(defaults.target_modules)
