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
import socket
import sys
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from attnpick.backends.registry import CATALOG, HUB_BACKENDS, ISOLATED, PROBED_MODULES, hub_kernel
from attnpick.decide.facts import DeviceFacts, EnvFacts, HubFacts, HubKernel, PackageFacts, normalize_os
from attnpick.settings import HIDE_ENV, hidden_packages  # noqa: F401 - HIDE_ENV: the name tests and docs use
from attnpick.util import cache
from attnpick.util.subproc import IMPORT_TIMEOUT_S, Child

logger = logging.getLogger(__name__)



def os_name() -> str:
    return normalize_os(platform.system())


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
        hub=hub_facts(packages, device, versions.get("torch")),
    )


def hub_facts(packages: dict[str, PackageFacts], device: DeviceFacts, torch_version: str | None) -> HubFacts:
    """What the kernels hub can give this machine: offline or not, the installed transformers' FlashAttention
    table, the kernels in the local cache and in LOCAL_KERNELS, and (only when a download would be needed) whether
    huggingface.co answers."""
    from huggingface_hub import constants  # light: settings only, no network

    details = packages.get("transformers", PackageFacts()).details
    table = _flash_kernels(details.get("flash_kernels"))
    partial = HubFacts(offline=bool(constants.HF_HUB_OFFLINE), kernels_range=details.get("kernels_range"),
                       flash_kernels=table, local=local_kernels())
    so_far = EnvFacts(os=os_name(), python="", torch=torch_version, cuda=None,  # type: ignore[arg-type]
                      device=device, packages=packages, hub=partial)
    needed = [k for k in (hub_kernel(so_far, name) for name in HUB_BACKENDS) if k and k.builds_for(device.type)]
    cached = {k.repo: versions for k in needed if (versions := cached_kernel_versions(k.repo))}
    hub = replace(partial, cached=cached)
    kernels = packages.get("kernels", PackageFacts())
    wants_download = [k for k in needed if not hub.available_offline(k)]
    if kernels.version and kernels.importable is not False and wants_download and not hub.offline \
            and device.type != "cpu":
        hub = replace(hub, reachable=_hub_reachable(constants.ENDPOINT))
    return hub


def _flash_kernels(table: Any) -> dict[str, HubKernel]:
    """The import check's FlashAttention hub table; devices the transformers release does not list come from
    the catalog's table for the same repo."""
    out: dict[str, HubKernel] = {}
    for impl, entry in (table or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("repo"), str):
            continue
        devices = entry.get("devices")
        if devices is None:
            build = CATALOG[impl].hub if impl in CATALOG else None
            default = build.kernel if build is not None else None
            devices = default.devices if default and default.repo == entry["repo"] else ()
        out[impl] = HubKernel(entry["repo"], entry.get("version"), tuple(devices))
    return out


def local_kernels() -> dict[str, str]:
    """LOCAL_KERNELS as the kernels package reads it: `repo=path` entries separated by ':'."""
    out = {}
    for entry in os.environ.get("LOCAL_KERNELS", "").split(":"):
        repo, eq, path = entry.partition("=")
        if eq and repo.strip():
            out[repo.strip()] = path
    return out


def cached_kernel_versions(repo: str) -> tuple[int, ...]:
    """Versions of a hub kernel present in the local cache (`KERNELS_CACHE`, else the hub cache): a `refs/vN`
    whose snapshot folder exists, in the kernel repo layout or the older model one."""
    from huggingface_hub import constants

    cache = Path(os.environ.get("KERNELS_CACHE") or constants.HF_HUB_CACHE)
    found = set()
    for prefix in ("kernels", "models"):
        folder = cache / f"{prefix}--{repo.replace('/', '--')}"
        for ref in (folder / "refs").glob("v*"):
            try:
                commit = ref.read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if ref.name[1:].isdigit() and commit and (folder / "snapshots" / commit).is_dir():
                found.add(int(ref.name[1:]))
    return tuple(sorted(found))


def _hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool | None:
    """Whether a TCP connection to the hub opens; None behind a proxy (the proxy decides, not this check)."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    host = urlsplit(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


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
        device = DeviceFacts(bf16_native=_cpu_bf16(torch))
    kernels.append("math")
    return PackageFacts(version, True, None), device, torch.version.cuda, tuple(kernels)


def _cpu_bf16(torch: Any) -> bool | None:
    """Whether this CPU has bfloat16 arithmetic (AVX512-BF16 or AMX), as torch's own CPU code asks; None where this
    torch cannot say."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [check for check in checks if check is not None]
    if not checks:
        return None
    try:
        return any(bool(check()) for check in checks)
    except Exception:  # noqa: BLE001 - a torch that cannot answer: unknown, not an error
        return None


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
        return Child("attnpick.decide._importcheck", [PROBED_MODULES[d] for d in distributions])

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
