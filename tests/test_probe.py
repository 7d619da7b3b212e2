"""The probe's import checks: crashes, hangs and errors stay in the child and become facts."""

from __future__ import annotations

import json

import pytest

from attnpick.backends.registry import PROBED_MODULES
from attnpick.decide import probe
from attnpick.util import cache, files


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


def _cache_entry(cache, repo, version, layout="kernels", snapshot=True):
    folder = cache / f"{layout}--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / f"v{version}").write_text("abc123")
    if snapshot:
        (folder / "snapshots" / "abc123" / "build").mkdir(parents=True)


def test_cached_kernel_versions_read_the_cache_like_the_kernels_package(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELS_CACHE", str(tmp_path))
    _cache_entry(tmp_path, "kernels-community/flash-attn2", 4)
    _cache_entry(tmp_path, "kernels-community/flash-attn4", 0, layout="models")  # the older layout
    _cache_entry(tmp_path, "kernels-community/vllm-flash-attn3", 1, snapshot=False)  # a ref without its files
    assert probe.cached_kernel_versions("kernels-community/flash-attn2") == (4,)
    assert probe.cached_kernel_versions("kernels-community/flash-attn4") == (0,)
    assert probe.cached_kernel_versions("kernels-community/vllm-flash-attn3") == ()


def test_local_kernels_parse_like_the_kernels_package(monkeypatch):
    monkeypatch.setenv("LOCAL_KERNELS", "kernels-community/flash-attn2=/k/fa2:kernels-community/flash-attn4=/k/fa4:bad")
    assert probe.local_kernels() == {"kernels-community/flash-attn2": "/k/fa2",
                                     "kernels-community/flash-attn4": "/k/fa4"}


def test_reachability_is_a_real_connection_and_a_proxy_is_not_guessed(monkeypatch):
    import socket

    connect = socket.create_connection
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setattr(probe.socket, "create_connection",
                            lambda address, timeout: connect(("127.0.0.1", port), timeout))
        assert probe._hub_reachable("https://huggingface.co") is True
    assert probe._hub_reachable("https://huggingface.co") is False  # the server is closed now
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert probe._hub_reachable("https://huggingface.co") is None


def test_this_machines_hub_facts(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path / "attnpick"))
    monkeypatch.setenv("KERNELS_CACHE", str(tmp_path / "kernels"))
    monkeypatch.setenv("LOCAL_KERNELS", "kernels-community/flash-attn2=/k")
    _cache_entry(tmp_path / "kernels", "kernels-community/flash-attn2", 4)
    facts = probe.collect_facts()
    import transformers

    assert facts.hub.kernels_range and facts.hub.kernels_range.startswith(">=")
    assert facts.hub.flash_kernels["flash_attention_2"].repo == "kernels-community/flash-attn2"
    assert facts.hub.local == {"kernels-community/flash-attn2": "/k"}
    # a CPU has no FlashAttention hub builds: nothing to look up in the cache, no network check
    assert facts.hub.cached == {} and facts.hub.reachable is None
    assert facts.package("transformers").version == transformers.__version__
