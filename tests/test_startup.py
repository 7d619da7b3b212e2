"""The cost before the first step: the packing check's and the confirmation's cached verdicts (proved again when a
package version or the model's files change) and the start-up's phases in train_report.json."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from tests.helpers import train_cli

LORA = {"r": 16, "targets": ["q_proj", "v_proj"]}


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    return folder


@pytest.fixture
def counted():
    calls = []

    def check(result=(True, 1e-5, 1e-3)):
        def run():
            calls.append(result)
            return result
        return run
    return calls, check


def test_a_passed_check_is_cached_for_the_same_machine_model_and_path(facts, model_folder, counted, tmp_path,
                                                                         monkeypatch):
    from attnpick.training.packing import cached_check, check_key

    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path / "cache"))
    calls, check = counted
    key = check_key(facts, model_folder, "sdpa_packed", "float32", None, LORA)
    assert cached_check(key, check()) == (True, 1e-5, 1e-3, False)
    assert cached_check(check_key(facts, model_folder, "sdpa_packed", "float32", None, LORA), check()) == \
        (True, 1e-5, 1e-3, True)
    assert len(calls) == 1


@pytest.mark.parametrize("change", ["a package version", "the weights file", "a new file", "the attention",
                                    "the dtype", "4-bit", "the LoRA"])
def test_a_change_proves_again(facts, model_folder, counted, tmp_path, monkeypatch, change):
    from attnpick.training.packing import cached_check, check_key

    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path / "cache"))
    calls, check = counted
    args = [facts, model_folder, "sdpa_packed", "float32", None, LORA]
    cached_check(check_key(*args), check())
    if change == "a package version":
        packages = dict(facts.packages)
        name = next(iter(packages))
        packages[name] = replace(packages[name], version=packages[name].version + ".post1")
        args[0] = replace(facts, packages=packages)
    elif change == "the weights file":
        weights = model_folder / "model.safetensors"
        weights.write_bytes(b"\1" * 65)
    elif change == "a new file":
        (model_folder / "model-00002-of-00002.safetensors").write_bytes(b"\0")
    elif change == "the attention":
        args[2] = "sdpa"
    elif change == "the dtype":
        args[3] = "bfloat16"
    elif change == "4-bit":
        args[4] = "bitsandbytes-nf4"
    else:
        args[5] = {"r": 8, "targets": ["q_proj", "v_proj"]}
    ok, _, _, cached = cached_check(check_key(*args), check())
    assert ok and not cached and len(calls) == 2


def test_the_same_size_rewritten_later_proves_again(facts, model_folder, counted, tmp_path, monkeypatch):
    from attnpick.training.packing import cached_check, check_key

    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path / "cache"))
    calls, check = counted
    cached_check(check_key(facts, model_folder, "sdpa_packed", "float32", None, LORA), check())
    weights = model_folder / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cached_check(check_key(facts, model_folder, "sdpa_packed", "float32", None, LORA), check())[3] is False
    assert len(calls) == 2


def test_a_failed_check_and_fresh_are_never_answered_from_the_cache(facts, model_folder, counted, tmp_path,
                                                                      monkeypatch):
    from attnpick.training.packing import cached_check, check_key

    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path / "cache"))
    calls, check = counted
    key = check_key(facts, model_folder, "sdpa_packed", "float32", None, LORA)
    cached_check(key, check((False, 2.0, 1e-3)))
    assert cached_check(key, check((False, 2.0, 1e-3)))[3] is False
    cached_check(key, check())
    assert check_key(facts, model_folder, "sdpa_packed", "float32", None, LORA, use_cache=False) is None
    assert cached_check(None, check())[3] is False
    assert len(calls) == 4


def test_a_second_run_reads_the_packing_verdict_from_the_cache_and_reports_its_start_up(tmp_path):
    env = {"ATTNPICK_CACHE_DIR": str(tmp_path / "cache")}
    reports = []
    for name in ("first", "second"):
        proc = train_cli("--output", str(tmp_path / name), "--max-steps", "1", "--json", env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        printed = json.loads(proc.stdout)
        written = json.loads((tmp_path / name / "train_report.json").read_text())
        assert printed["startup"] == written["startup"]
        reports.append(written)
    first, second = reports
    for report in reports:
        startup = report["startup"]
        assert {"check inputs", "machine facts", "smoke run", "load weights", "confirm kernel", "tokenize data",
                "attach LoRA", "packing check"} <= set(startup["phases"])
        assert 0 < startup["in_train_s"] <= startup["before_first_step_s"]
        assert sum(startup["phases"].values()) <= startup["in_train_s"] + 0.01
        assert report["packing"]["enabled"] and "sdpa_packed" in report["packing"]["reason"]
        assert report["tokens_seen"] == report["tokens_fed"]  # packed: every token fed is a real one
    assert first["packing"]["cached"] is False and "cached" not in first["packing"]["reason"]
    confirmed = [json.loads((tmp_path / name / "load_report.json").read_text())["confirmation"]
                 for name in ("first", "second")]
    assert confirmed[0]["cached"] is False and confirmed[1]["cached"] is True
    assert confirmed[0]["kernels"] == confirmed[1]["kernels"] and confirmed[1]["ok"] is True
    assert second["packing"]["cached"] is True and "checked on an earlier run, cached" in second["packing"]["reason"]
    assert second["packing"]["max_abs_diff"] == first["packing"]["max_abs_diff"]
    fresh = train_cli("--output", str(tmp_path / "fresh"), "--max-steps", "1", "--fresh", "--json", env=env)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert json.loads(fresh.stdout)["packing"]["cached"] is False
