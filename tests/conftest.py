from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Tests never reach a model hub, and never touch the user's caches: attnpick's and the datasets library's caches
# live in one folder for the session (module-scoped fixtures and the processes they start included).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_SESSION_CACHE = tempfile.mkdtemp(prefix="attnpick-tests-")
os.environ["ATTNPICK_CACHE_DIR"] = os.path.join(_SESSION_CACHE, "attnpick")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_SESSION_CACHE, "datasets")


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
def _isolated_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # A test that points a cache elsewhere gets the session's back afterwards.
    monkeypatch.setenv("ATTNPICK_CACHE_DIR", os.path.join(_SESSION_CACHE, "attnpick"))
    monkeypatch.setenv("HF_DATASETS_CACHE", os.path.join(_SESSION_CACHE, "datasets"))


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import shutil

    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
