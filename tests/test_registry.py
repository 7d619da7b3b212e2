"""The backend registry: one `Backend` per file and one line in `registry.BACKENDS`; everything else is derived from
it, and no other module names a backend."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import attnpick.backends
from attnpick.backends import registry as catalog
from attnpick.backends.base import HALF, Backend, HubBuild, InstallHint
from attnpick.decide.decision import Request, choose
from attnpick.decide.facts import HubKernel
from tests.helpers import machine


def test_every_backend_file_is_in_the_registry():
    files = [m.name for m in pkgutil.iter_modules(attnpick.backends.__path__) if m.name not in ("base", "registry")]
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
    assert catalog.ISOLATED == ["unsloth"]  # it patches transformers, peft and trl on import


def test_loaders_are_known_by_kind_not_by_name():
    assert [s.name for s in catalog.BACKENDS if s.is_loader] == ["unsloth"]
    assert catalog.is_loader("unsloth") and not catalog.is_loader("sdpa") and not catalog.is_loader("no-such")
    assert catalog.loader_api("sdpa") is None


def _sage_hints(facts, missing):
    if "sage_attention" not in missing or facts.os == "windows":
        return ()
    return (InstallHint("sage_attention", "pip install sageattention", "SageAttention: prebuilt wheels.", order=3),)


SAGE = Backend(name="sage_attention", title="SageAttention", hf_name="sage_attention", distribution="sageattention",
               modules={"sageattention": "sageattention"}, devices=frozenset({"cuda"}), min_capability=(8, 0),
               dtypes=HALF, install_hints=_sage_hints,
               hub=HubBuild(HubKernel("kernels-community/sage-attention", 1, ("cuda",))))


@pytest.fixture
def plugged():
    """SAGE in the registry the way a contributor adds a backend: one line in BACKENDS, at its place in the order."""
    saved = catalog.BACKENDS
    catalog.BACKENDS = (SAGE, *saved)  # the one line
    catalog.index()
    yield SAGE
    catalog.BACKENDS = saved
    catalog.index()


def test_a_new_backend_with_an_install_hint_and_a_hub_build_is_one_file_and_one_line(plugged):
    """The decision, both providers, the probe's distributions, the hub table and the install hints all follow."""
    assert catalog.PROBED_MODULES["sageattention"] == "sageattention" and "sage_attention" in catalog.HUB_BACKENDS
    bare = choose(machine("linux", "A100"))
    assert bare.candidate("sage_attention").verdict == "rejected"
    assert [(h.backend, h.provider) for h in bare.install_hints][:3] == [
        ("unsloth", "package"), ("sage_attention", "hub"), ("sage_attention", "package")]
    assert bare.install_hints[2].command == "pip install sageattention"
    installed = choose(machine("linux", "A100", sageattention="2.2.0"))
    assert installed.chosen == "sage_attention" and installed.candidate("sage_attention").provider == "package"
    hub = choose(machine("linux", "A100", kernels="0.18.2"))
    cand = hub.candidate("sage_attention")
    assert hub.chosen == "sage_attention" and cand.provider == "hub"
    assert cand.attn_implementation == "kernels-community/sage-attention"
    t4 = choose(machine("linux", "T4", sageattention="2.2.0")).candidate("sage_attention")
    assert [r.code for r in t4.reasons] == ["capability_too_low"]
    assert [r.code for r in choose(machine("linux"), Request(dtype="float32")).candidate("sage_attention").reasons] \
        == ["not_installed", "device_unsupported", "dtype_unsupported"]


# Exact string literals outside the backends' own files that are not backend names here: Unsloth's API values.
NOT_A_BACKEND = {
    ("compat/fast_language_model.py", "unsloth"): "Unsloth's use_gradient_checkpointing='unsloth'",
    ("compat/chat_templates.py", "unsloth"): "the name of Unsloth's own chat template",
}


def test_no_module_outside_the_backends_names_a_backend():
    """A backend's requirements, hints, hub build, reference role and hooks live in its own file: no other module
    of attnpick holds a backend's name as a string (docstrings and messages' prose aside)."""
    src = Path(attnpick.backends.__file__).resolve().parents[1]
    found = []
    for path in sorted(src.rglob("*.py")):
        where = path.relative_to(src).as_posix()
        if where.startswith("backends/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in catalog.CATALOG \
                    and (where, node.value) not in NOT_A_BACKEND:
                found.append(f"{where}:{node.lineno} {node.value!r}")
    assert found == []


@pytest.mark.parametrize("name", ["sdpa_fa", "sdpa_efficient", "sdpa_cudnn", "sdpa_math", "torch_varlen"])
def test_no_attnpick_implementation_name_holds_flash(name):
    """transformers takes any attn_implementation containing 'flash' for a kernels-hub FlashAttention kernel."""
    assert "flash" not in catalog.CATALOG[name].hf_name
