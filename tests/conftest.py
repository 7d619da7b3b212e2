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

from tests.helpers import skip_marked  # noqa: E402 - after the environment above: libraries read it on import


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _has_llama_cpp() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _has_gpu():
        skip_marked(items, "gpu", "needs an NVIDIA GPU; run scripts/gpu-check.sh on a GPU machine")
    # The llama.cpp lane sets ATTNPICK_REQUIRE_LLAMA_CPP=1: there a missing llama-cpp-python fails, never skips.
    if not _has_llama_cpp() and os.environ.get("ATTNPICK_REQUIRE_LLAMA_CPP") != "1":
        skip_marked(items, "llama_cpp", "needs llama-cpp-python; bash ci/llama-cpp-lane.sh builds and runs it")


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # A test that points a cache elsewhere gets the session's back afterwards.
    monkeypatch.setenv("ATTNPICK_CACHE_DIR", os.path.join(_SESSION_CACHE, "attnpick"))
    monkeypatch.setenv("HF_DATASETS_CACHE", os.path.join(_SESSION_CACHE, "datasets"))


@pytest.fixture(scope="session")
def facts():
    """This machine's facts, probed once per test run."""
    from attnpick.decide.probe import collect_facts

    return collect_facts()


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import shutil

    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture(scope="module")
def tuned():
    """For the export tests: tiny-exaone in 4-bit with a LoRA whose B matrices are not zero (a fresh LoRA changes
    nothing to merge)."""
    import torch

    from attnpick import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained("tiny-exaone", max_seq_length=256, load_in_4bit=True)
    model = FastLanguageModel.get_peft_model(model, r=8, lora_alpha=16, random_state=3407)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    model.eval()
    return model, tokenizer
