from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def skip_marked(items: list[pytest.Item], marker: str, reason: str) -> None:
    """Skip, in one place and with one reason, every test carrying `marker`."""
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if marker in item.keywords:
            item.add_marker(skip)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _has_gpu():
        skip_marked(items, "gpu", "needs an NVIDIA GPU; run scripts/gpu-check.sh on a GPU machine")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # One cache for the whole session, never the user's.
    monkeypatch.setenv("ATTNPICK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
