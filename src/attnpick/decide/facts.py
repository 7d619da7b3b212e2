"""Facts about a machine and a model: frozen, serialisable, and the only input of the decision.

`EnvFacts.to_dict()` is the `--env` file format documented in docs/facts.md; `EnvFacts.from_dict()` reads
it back and says exactly which key is wrong when it is not.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from attnpick.errors import UsageError

SCHEMA = 1

OsName = Literal["linux", "windows", "darwin"]
DeviceType = Literal["cuda", "rocm", "mps", "xpu", "cpu"]

OS_NAMES: tuple[str, ...] = ("linux", "windows", "darwin")
DEVICE_TYPES: tuple[str, ...] = ("cuda", "rocm", "mps", "xpu", "cpu")

@dataclass(frozen=True)
class PackageFacts:
    """One distribution: installed version, whether it imports, and the import error text if not."""

    version: str | None = None
    importable: bool | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "importable": self.importable, "error": self.error}
        if self.details:
            out["details"] = dict(self.details)
        return out


NOT_INSTALLED = PackageFacts()


@dataclass(frozen=True)
class DeviceFacts:
    type: DeviceType = "cpu"
    name: str | None = None
    capability: str | None = None
    memory_gb: float | None = None
    bf16_native: bool | None = None  # a CPU with bfloat16 arithmetic (AVX512-BF16 or AMX); None: not probed

    @property
    def capability_tuple(self) -> tuple[int, int] | None:
        if self.capability is None:
            return None
        major, _, minor = self.capability.partition(".")
        return int(major), int(minor or 0)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "capability": self.capability, "memory_gb": self.memory_gb,
                "bf16_native": self.bf16_native}


@dataclass(frozen=True)
class HubKernel:
    """A FlashAttention build on the Hugging Face kernels hub: the repo transformers loads, the major version it
    pins, and the devices it ships builds for (empty: every device)."""

    repo: str
    version: int | None
    devices: tuple[str, ...] = ()

    def builds_for(self, device_type: str) -> bool:
        return not self.devices or device_type in self.devices

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "version": self.version, "devices": list(self.devices)}


@dataclass(frozen=True)
class HubFacts:
    """What the kernels hub can give this machine.

    `offline`: HF_HUB_OFFLINE is set. `reachable`: whether huggingface.co answered (None: not checked, as when
    nothing needs a download). `kernels_range`: the `kernels` versions the installed transformers accepts (None:
    unknown). `flash_kernels`: the installed transformers' hub build per FlashAttention backend (empty: unknown,
    the catalog's table applies). `cached`: repo -> kernel versions in the local cache. `local`: repo -> folder
    given through the kernels package's LOCAL_KERNELS. A facts file without this block plans a machine that can
    download from the hub.
    """

    offline: bool = False
    reachable: bool | None = None
    kernels_range: str | None = None
    flash_kernels: dict[str, HubKernel] = field(default_factory=dict)
    cached: dict[str, tuple[int, ...]] = field(default_factory=dict)
    local: dict[str, str] = field(default_factory=dict)

    def available_offline(self, kernel: HubKernel) -> bool:
        """The kernel is in the local cache at its pinned version, or given as a local folder."""
        return kernel.repo in self.local or (kernel.version is not None and kernel.version in
                                              self.cached.get(kernel.repo, ()))

    def to_dict(self) -> dict[str, Any]:
        return {"offline": self.offline, "reachable": self.reachable, "kernels_range": self.kernels_range,
                "flash_kernels": {name: k.to_dict() for name, k in sorted(self.flash_kernels.items())},
                "cached": {repo: list(versions) for repo, versions in sorted(self.cached.items())},
                "local": dict(sorted(self.local.items()))}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> HubFacts:
        doc = _expect(data, dict, where, "'hub'")
        reachable = doc.get("reachable")
        if reachable not in (True, False, None) or not isinstance(doc.get("offline", False), bool):
            raise UsageError(f"{where}: 'hub.offline' must be true or false and 'hub.reachable' true, false or null")
        kernels = {}
        for name, entry in _expect(doc.get("flash_kernels", {}), dict, where, "'hub.flash_kernels'").items():
            entry = _expect(entry, dict, where, f"'hub.flash_kernels.{name}'")
            version = entry.get("version")
            if not isinstance(entry.get("repo"), str) or not (version is None or (_is_int(version) and version >= 0)):
                raise UsageError(f"{where}: 'hub.flash_kernels.{name}' needs a string 'repo' and a 'version' that is "
                                 "a whole number of at least 0")
            devices = _strings(entry.get("devices", []), where, f"'hub.flash_kernels.{name}.devices'")
            kernels[name] = HubKernel(entry["repo"], version, devices)
        cached = {}
        for repo, versions in _expect(doc.get("cached", {}), dict, where, "'hub.cached'").items():
            versions = _expect(versions, list, where, f"'hub.cached.{repo}'")
            if not all(_is_int(v) and v >= 0 for v in versions):
                raise UsageError(f"{where}: 'hub.cached.{repo}' must be a list of kernel versions (integers)")
            cached[repo] = tuple(versions)
        local = _expect(doc.get("local", {}), dict, where, "'hub.local'")
        if not all(isinstance(v, str) for v in local.values()):
            raise UsageError(f"{where}: 'hub.local' must map kernel repos to folder paths (strings)")
        return cls(offline=doc.get("offline", False), reachable=reachable,
                   kernels_range=_specifier(doc, "kernels_range", where), flash_kernels=kernels,
                   cached=cached, local=dict(local))


@dataclass(frozen=True)
class EnvFacts:
    """Everything the decision knows about a machine.

    Build it with `attnpick.decide.probe.collect_facts()` on the machine itself, or `EnvFacts.from_dict()` from a
    `doctor --json` output of another machine.
    """

    os: OsName
    python: str
    torch: str | None
    cuda: str | None
    device: DeviceFacts
    packages: dict[str, PackageFacts] = field(default_factory=dict)
    sdpa_kernels: tuple[str, ...] = ()
    hub: HubFacts = field(default_factory=HubFacts)
    schema: int = SCHEMA

    def package(self, distribution: str) -> PackageFacts:
        """The facts of one distribution; an absent one counts as not installed."""
        return self.packages.get(distribution, NOT_INSTALLED)

    def usable(self, distribution: str) -> bool:
        """Installed and not known to fail its import."""
        pkg = self.package(distribution)
        return pkg.version is not None and pkg.importable is not False

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "os": self.os,
            "python": self.python,
            "torch": self.torch,
            "cuda": self.cuda,
            "device": self.device.to_dict(),
            "packages": {name: facts.to_dict() for name, facts in sorted(self.packages.items())},
            "sdpa_kernels": list(self.sdpa_kernels),
            "hub": self.hub.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "facts") -> EnvFacts:
        """Read the `--env` format; a malformed document raises `UsageError` naming the key."""
        doc = _expect(data, dict, where, "the document")
        schema = doc.get("schema", SCHEMA)
        if schema != SCHEMA:
            raise UsageError(f"{where}: schema {schema!r} is not supported (this attnpick reads schema {SCHEMA})")
        for key, hint in REQUIRED_KEYS.items():
            if key not in doc:
                raise UsageError(f"{where}: missing key '{key}' ({hint}). Write the file with "
                                 "'attnpick doctor --json > FILE'.")
        os_name = normalize_os(doc["os"])
        if os_name not in OS_NAMES:
            raise UsageError(f"{where}: 'os' must be one of {', '.join(OS_NAMES)}, got {os_name!r}")
        device = _expect(doc["device"], dict, where, "'device'")
        kind = device.get("type", "cpu")
        if kind not in DEVICE_TYPES:
            raise UsageError(f"{where}: 'device.type' must be one of {', '.join(DEVICE_TYPES)}, got {kind!r}")
        capability = device.get("capability")
        if capability is not None and not _is_capability(capability):
            raise UsageError(f"{where}: 'device.capability' must look like \"8.0\", got {capability!r}")
        memory = device.get("memory_gb")
        if memory is not None and (not isinstance(memory, (int, float)) or isinstance(memory, bool)
                                   or not math.isfinite(memory) or memory < 0):
            raise UsageError(f"{where}: 'device.memory_gb' must be a finite number of at least 0, or null, got "
                             f"{memory!r}")
        packages: dict[str, PackageFacts] = {}
        for name, entry in _expect(doc.get("packages", {}), dict, where, "'packages'").items():
            entry = _expect(entry, dict, where, f"'packages.{name}'")
            version = _version(entry, "version", where, f"packages.{name}.")
            importable = entry.get("importable", None if version is None else True)
            if importable not in (True, False, None):
                raise UsageError(f"{where}: 'packages.{name}.importable' must be true, false or null")
            error = _optional_str(entry, "error", where, f"packages.{name}.")
            details = _expect(entry.get("details", {}), dict, where, f"'packages.{name}.details'")
            packages[name] = PackageFacts(version, importable, error, dict(details))
        hub = HubFacts.from_dict(doc["hub"], where) if "hub" in doc else HubFacts()
        return cls(
            os=os_name,
            python=_version(doc, "python", where) or "",
            torch=_version(doc, "torch", where),
            cuda=_version(doc, "cuda", where),
            device=DeviceFacts(kind, _optional_str(device, "name", where, "device."), capability, memory,
                               _optional_bool(device, "bf16_native", where)),
            packages=packages,
            sdpa_kernels=_strings(doc.get("sdpa_kernels", []), where, "'sdpa_kernels'"),
            hub=hub,
        )


# Keys a facts document must have, with what to put there.
REQUIRED_KEYS = {
    "os": "linux, windows or darwin",
    "torch": "torch's version, or null when torch is missing",
    "device": 'an object such as {"type": "cuda", "capability": "8.0"}',
}


@dataclass(frozen=True)
class ModelFacts:
    """What the decision needs from a model's config.json (never its weights)."""

    model_type: str | None = None
    head_dim: int | None = None
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    sliding_window: int | None = None
    softcapping: float | None = None
    has_sinks: bool = False
    remote_code: bool = False
    folder: str | None = None

    @property
    def attention_shape(self) -> tuple[int, int, int]:
        """(query heads, kv heads, head_dim) as smoke runs, benchmarks and caches use them: a config that does not
        say gets 8 heads, as many kv heads as query heads (no GQA), and head_dim 64."""
        heads = self.num_attention_heads or 8
        return heads, self.num_key_value_heads or heads, self.head_dim or 64

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type,
            "head_dim": self.head_dim,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "sliding_window": self.sliding_window,
            "softcapping": self.softcapping,
            "has_sinks": self.has_sinks,
            "remote_code": self.remote_code,
            "folder": self.folder,
        }


def _expect(value: Any, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise UsageError(f"{where}: {what} must be a JSON {'object' if kind is dict else 'array'}, got "
                         f"{type(value).__name__}")
    return value


def _optional_str(doc: dict[str, Any], key: str, where: str, prefix: str = "") -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{where}: '{prefix}{key}' must be a string or null, got {value!r}")
    return value


def _optional_bool(doc: dict[str, Any], key: str, where: str) -> bool | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, bool):
        raise UsageError(f"{where}: 'device.{key}' must be true, false or null, got {value!r}")
    return value


def _strings(value: Any, where: str, what: str) -> tuple[str, ...]:
    items = _expect(value, list, where, what)
    if not all(isinstance(item, str) for item in items):
        raise UsageError(f"{where}: {what} must be a list of strings")
    return tuple(items)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _version(doc: dict[str, Any], key: str, where: str, prefix: str = "") -> str | None:
    """A version string that parses (PEP 440: "2.13.0+cpu", "12.8"), or null."""
    from packaging.version import InvalidVersion, Version

    value = _optional_str(doc, key, where, prefix)
    if value:
        try:
            Version(value)
        except InvalidVersion:
            raise UsageError(f"{where}: '{prefix}{key}' must be a version such as \"2.13.0\", got {value!r}") from None
    return value


def _specifier(doc: dict[str, Any], key: str, where: str) -> str | None:
    """A version range such as ">=0.18.2,<0.19", or null."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    value = _optional_str(doc, key, where, "hub.")
    if value is not None and not value.strip():
        raise UsageError(f"{where}: 'hub.{key}' is empty; give a version range such as \">=0.18.2,<0.19\", or null "
                         "for none.")
    if value:
        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise UsageError(f"{where}: 'hub.{key}' must be a version range such as \">=0.18.2,<0.19\", got "
                             f"{value!r}") from None
    return value


def normalize_os(name: Any) -> Any:
    """linux, windows or darwin as `platform.system()` spells them on every shell: MSYS, MinGW (Git Bash) and
    Cygwin report `msys_nt-10.0-19045`, `mingw64_nt-...`, `cygwin_nt-...`, and they run on Windows."""
    if not isinstance(name, str):
        return name
    lowered = name.lower()
    if lowered.startswith(("win", "msys", "mingw", "cygwin")):
        return "windows"
    return lowered


def _is_capability(value: Any) -> bool:
    """"8.0", "9.0", "10.0": ASCII digits only (str.isdigit accepts "²")."""
    return isinstance(value, str) and re.fullmatch(r"[0-9]{1,2}(\.[0-9]{1,2})?", value) is not None
