"""`collect_facts()`: the only code that looks at the machine.

Installed comes from `importlib.metadata`; importable from child processes that keep the exception text
(Unsloth gets a child of its own, since importing it patches transformers, peft and trl). Import results
are cached per fingerprint of the interpreter and the installed versions, so a second `doctor` costs about
one `import torch`.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from importlib import metadata
from typing import Any

from attnpick import cache
from attnpick.facts import PROBED_MODULES, DeviceFacts, EnvFacts, PackageFacts
from attnpick.subproc import IMPORT_TIMEOUT_S, Child

logger = logging.getLogger(__name__)

HIDE_ENV = "ATTNPICK_HIDE_PACKAGES"
# Imported alone: Unsloth patches the libraries imported after it.
ISOLATED = ("unsloth",)


def os_name() -> str:
    system = platform.system().lower()
    return {"win32": "windows", "cygwin": "windows"}.get(system, system)


DISABLE_ENV = "ATTNPICK_DISABLE_BACKENDS"


def _env_list(name: str) -> frozenset[str]:
    """Comma-separated names; `name@R` applies only on the process of rank R ($RANK, as torchrun sets)."""
    rank = os.environ.get("RANK", "0")
    out = set()
    for item in os.environ.get(name, "").split(","):
        value, _, only = item.strip().partition("@")
        if value and (not only or only == rank):
            out.add(value)
    return frozenset(out)


def hidden_packages() -> frozenset[str]:
    """Distributions hidden from the facts by `$ATTNPICK_HIDE_PACKAGES` (comma separated, `name@rank`)."""
    return _env_list(HIDE_ENV)


def disabled_backends() -> frozenset[str]:
    """Backends this process must not use, from `$ATTNPICK_DISABLE_BACKENDS` (comma separated, `name@rank`)."""
    return _env_list(DISABLE_ENV)


def installed_versions() -> dict[str, str]:
    hidden = hidden_packages()
    versions: dict[str, str] = {}
    for dist in PROBED_MODULES:
        if dist in hidden:
            continue
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def collect_facts(fresh: bool = False, timeout_s: float = IMPORT_TIMEOUT_S) -> EnvFacts:
    """Probe this machine once.

    Args:
        fresh: ignore cached import results and check every package again.
        timeout_s: how long one import child may take before its packages count as not importable.

    Returns:
        The frozen `EnvFacts` of this machine.
    """
    versions = installed_versions()
    key = {
        "python": sys.executable,
        "prefix": sys.prefix,
        "python_version": platform.python_version(),
        "versions": versions,
        "hidden": sorted(hidden_packages()),
    }
    path, imports = cache.cached("imports", key, _valid_imports)
    if fresh:
        imports = None
    children: list[_ImportCheck] = []
    try:
        if imports is None:
            to_check = [d for d in versions if d != "torch"]
            shared = [d for d in to_check if d not in ISOLATED]
            groups = [shared] + [[d] for d in to_check if d in ISOLATED]
            children = [_ImportCheck(group, timeout_s) for group in groups if group]

        torch_facts, device, cuda, kernels = _probe_torch(versions.get("torch"))

        if children:
            imports, complete = {}, True
            for check in children:
                results, finished = check.collect()
                imports.update(results)
                complete = complete and finished
            if complete:
                cache.store(path, key, imports)
    finally:
        for check in children:
            with check.child:  # an interrupted probe leaves no import child behind
                pass

    packages: dict[str, PackageFacts] = {}
    for dist, version in versions.items():
        if dist == "torch":
            packages[dist] = torch_facts
            continue
        entry = (imports or {}).get(dist, {})
        packages[dist] = PackageFacts(version, entry.get("ok"), entry.get("error"), dict(entry.get("details", {})))

    return EnvFacts(
        os=os_name(),  # type: ignore[arg-type]
        python=platform.python_version(),
        torch=versions.get("torch") if torch_facts.importable else None,
        cuda=cuda,
        device=device,
        packages=packages,
        sdpa_kernels=kernels,
    )


def _valid_imports(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, dict) and v.get("ok") in (True, False, None) and isinstance(v.get("details", {}), dict)
        for v in value.values())


def _probe_torch(version: str | None) -> tuple[PackageFacts, DeviceFacts, str | None, tuple[str, ...]]:
    if version is None:
        return PackageFacts(), DeviceFacts(), None, ()
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken torch is a fact, not a crash
        return PackageFacts(version, False, f"{type(exc).__name__}: {exc}"), DeviceFacts(), None, ()
    device = DeviceFacts()
    kernels: list[str] = []
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        memory = round(props.total_memory / 2**30, 1)
        if torch.version.hip:
            device = DeviceFacts("rocm", props.name, None, memory)
        else:
            device = DeviceFacts("cuda", props.name, f"{props.major}.{props.minor}", memory)
        if torch.backends.cuda.is_flash_attention_available():
            kernels.append("flash")
        kernels.append("efficient")
        if torch.backends.cudnn.is_available() and (torch.backends.cudnn.version() or 0) >= 90000:
            kernels.append("cudnn")
    elif hasattr(torch, "xpu") and torch.xpu.is_available():
        device = DeviceFacts("xpu", torch.xpu.get_device_name(0), None, None)
    elif torch.backends.mps.is_available():
        device = DeviceFacts("mps", "Apple GPU", None, None)
    else:
        # torch >= 2.3 ships a flash kernel for CPU in SDPA.
        kernels.append("flash_cpu")
    kernels.append("math")
    return PackageFacts(version, True, None), device, torch.version.cuda, tuple(kernels)


class _ImportCheck:
    """Import checks for a group of distributions, in a `subproc.Child`, restarted past a module that crashes
    it; all of a group's children share one deadline."""

    def __init__(self, distributions: list[str], timeout_s: float) -> None:
        self.distributions = distributions
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.child = self._start(distributions)

    @staticmethod
    def _start(distributions: list[str]) -> Child:
        return Child("attnpick._importcheck", [PROBED_MODULES[d] for d in distributions])

    def collect(self) -> tuple[dict[str, dict[str, Any]], bool]:
        """Results by distribution, and whether every import finished (nothing timed out)."""
        results: dict[str, dict[str, Any]] = {}
        pending = list(self.distributions)
        while pending:
            with self.child:
                outcome = self.child.wait(self.deadline - time.monotonic())
            by_module = {r.get("module"): r for r in outcome.records}
            for dist in list(pending):
                record = by_module.get(PROBED_MODULES[dist])
                if record is None:
                    break
                results[dist] = {"ok": record.get("ok"), "error": record.get("error"),
                                 "details": record.get("details") or {}}
                pending.remove(dist)
            if not pending:
                break
            culprit = pending.pop(0)
            if outcome.timed_out:
                results[culprit] = {"ok": False, "error": f"import did not finish within {self.timeout_s:.0f}s",
                                    "details": {}}
                for dist in pending:
                    results[dist] = {"ok": None, "error": "not checked: an earlier import hung", "details": {}}
                return results, False
            results[culprit] = {"ok": False, "error": f"import crashed the interpreter ({outcome.describe_exit()})",
                                "details": {}}
            if pending:
                self.child = self._start(pending)
        return results, True
