"""The probe's import checks: crashes, hangs and errors stay in the child and become facts."""

from __future__ import annotations

import json

import pytest

from attnpick import cache, files, probe
from attnpick.facts import PROBED_MODULES


@pytest.fixture
def fake_modules(tmp_path, monkeypatch):
    (tmp_path / "fine_mod.py").write_text("VALUE = 1\n")
    (tmp_path / "raising_mod.py").write_text("raise ImportError('libfoo.so: undefined symbol: _ZN3c10')\n")
    (tmp_path / "crashing_mod.py").write_text("import os\nos.abort()\n")
    (tmp_path / "hanging_mod.py").write_text("import time\ntime.sleep(60)\n")
    (tmp_path / "banner_mod.py").write_text("print('Unsloth: Will patch your computer')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    mods = {"fine": "fine_mod", "raising": "raising_mod", "crashing": "crashing_mod", "hanging": "hanging_mod",
            "banner": "banner_mod"}
    monkeypatch.setattr(probe, "PROBED_MODULES", {**PROBED_MODULES, **mods})
    return mods


def test_error_text_is_kept_and_crash_restarts_the_child(fake_modules):
    results, finished = probe._ImportCheck(["fine", "raising", "crashing", "banner", "fine"], 60).collect()
    assert finished
    assert results["fine"]["ok"] is True
    assert results["raising"] == {"ok": False, "error": "ImportError: libfoo.so: undefined symbol: _ZN3c10",
                                  "details": {}}
    assert results["crashing"]["ok"] is False and "crashed the interpreter" in results["crashing"]["error"]
    assert "SIGABRT" in results["crashing"]["error"]
    assert results["banner"]["ok"] is True


def test_hang_becomes_a_timeout_reason(fake_modules):
    results, finished = probe._ImportCheck(["fine", "hanging", "raising"], 3).collect()
    assert not finished
    assert results["fine"]["ok"] is True
    assert results["hanging"]["ok"] is False and "did not finish within 3s" in results["hanging"]["error"]
    assert results["raising"]["ok"] is None


def test_hidden_packages_are_not_installed(monkeypatch):
    monkeypatch.setenv(probe.HIDE_ENV, "peft, transformers")
    versions = probe.installed_versions()
    assert "peft" not in versions and "transformers" not in versions
    assert "torch" in versions


def test_collect_facts_on_this_machine_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(probe.HIDE_ENV, "peft,bitsandbytes")  # keep the child quick
    facts = probe.collect_facts()
    assert facts.device.type == "cpu"
    assert facts.package("transformers").importable is True
    assert facts.package("peft").version is None
    files = list((tmp_path / "imports").glob("*.json"))
    assert len(files) == 1
    # A corrupt cache is ignored and rebuilt.
    files[0].write_text("{truncated")
    again = probe.collect_facts()
    assert again == facts
    assert json.loads(files[0].read_text())["value"]["transformers"]["ok"] is True


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "b.json"
    files.write_json(target, {"x": 1})
    files.write_json(target, {"x": "서울"})
    assert cache.read_json(target) == {"x": "서울"}
    assert "서울" in target.read_text(encoding="utf-8")  # UTF-8, readable, whatever the locale
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]
