"""The backend registry: one `Backend` per file, everything else derived from the registry."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import attnpick.backends
from attnpick.backends import registry as catalog
from attnpick.backends.base import HALF, Backend
from attnpick.decide import decision
from attnpick.decide.decision import Request, choose
from tests.machines import machine


def test_every_backend_file_is_in_the_registry():
    files = [m.name for m in pkgutil.iter_modules(attnpick.backends.__path__) if m.name != "base"]
    registered = set()
    for name in files:
        module = importlib.import_module(f"attnpick.backends.{name}")
        exported = getattr(module, "BACKENDS", None) or (module.BACKEND,)
        assert all(isinstance(b, Backend) for b in exported), name
        registered |= {b.name for b in exported}
    assert registered == set(catalog.CATALOG)


def test_every_distribution_a_backend_needs_is_probed():
    for spec in catalog.BACKENDS:
        if spec.distribution:
            assert spec.distribution in spec.modules, spec.name
        for dist, module in spec.modules.items():
            assert catalog.PROBED_MODULES[dist] == module, spec.name
    assert catalog.ISOLATED == ("unsloth",)  # it patches transformers, peft and trl on import


def test_loaders_are_known_by_kind_not_by_name():
    assert [s.name for s in catalog.BACKENDS if s.is_loader] == ["unsloth"]
    assert catalog.is_loader("unsloth") and not catalog.is_loader("sdpa") and not catalog.is_loader("no-such")
    assert catalog.loader_api("sdpa") is None


def test_a_new_backend_is_one_object_in_the_registry(monkeypatch):
    """What adding a backend takes: a `Backend` and its place in the order. The decision, install-free provider,
    requirements and registration all follow from it."""
    registered = []
    new = Backend(name="sage_attention", title="SageAttention", hf_name="sage_attention",
                  devices=frozenset({"cuda"}), min_capability=(8, 0), dtypes=HALF,
                  register=lambda: registered.append("sage_attention"))
    monkeypatch.setitem(catalog.CATALOG, new.name, new)
    monkeypatch.setattr(decision, "ORDER", ("sage_attention", *catalog.ORDER))
    a100 = choose(machine("linux", "A100"))
    assert a100.chosen == "sage_attention" and a100.candidate("sage_attention").provider == "torch"
    t4 = choose(machine("linux", "T4")).candidate("sage_attention")
    assert [r.code for r in t4.reasons] == ["capability_too_low"]
    assert [r.code for r in choose(machine("linux"), Request(dtype="float32")).candidate("sage_attention").reasons] \
        == ["device_unsupported", "dtype_unsupported"]
    catalog.ensure_registered("sage_attention")
    assert registered == ["sage_attention"]


@pytest.mark.parametrize("name", ["sdpa_fa", "sdpa_efficient", "sdpa_cudnn", "sdpa_math", "torch_varlen"])
def test_no_attnpick_implementation_name_holds_flash(name):
    """transformers takes any attn_implementation containing 'flash' for a kernels-hub FlashAttention kernel."""
    assert "flash" not in catalog.CATALOG[name].hf_name
