"""Facts about a machine and a model: frozen, serialisable, and the only input of the decision.

`EnvFacts.to_dict()` is the `--env` file format documented in docs/facts.md; `EnvFacts.from_dict()` reads
it back and says exactly which key is wrong when it is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from attnpick.errors import UsageError

SCHEMA = 1

OsName = Literal["linux", "windows", "darwin"]
DeviceType = Literal["cuda", "rocm", "mps", "xpu", "cpu"]

OS_NAMES: tuple[str, ...] = ("linux", "windows", "darwin")
DEVICE_TYPES: tuple[str, ...] = ("cuda", "rocm", "mps", "xpu", "cpu")

# The distributions attnpick reports on, by their PyPI names, and the module an import check imports.
# flash-attn and flash-attn-4 both install the `flash_attn` package; transformers tells them apart by
# distribution name, and so do we.
PROBED_MODULES: dict[str, str] = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "bitsandbytes": "bitsandbytes",
    "flash-attn": "flash_attn",
    "flash-attn-3": "flash_attn_interface",
    "flash-attn-4": "flash_attn.cute",
    "xformers": "xformers.ops",
    "unsloth": "unsloth",
}


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

    @property
    def capability_tuple(self) -> tuple[int, int] | None:
        if self.capability is None:
            return None
        major, _, minor = self.capability.partition(".")
        return int(major), int(minor or 0)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "capability": self.capability, "memory_gb": self.memory_gb}


@dataclass(frozen=True)
class EnvFacts:
    """Everything the decision knows about a machine.

    Build it with `attnpick.probe.collect_facts()` on the machine itself, or `EnvFacts.from_dict()` from a
    `doctor --json` output of another machine.
    """

    os: OsName
    python: str
    torch: str | None
    cuda: str | None
    device: DeviceFacts
    packages: dict[str, PackageFacts] = field(default_factory=dict)
    sdpa_kernels: tuple[str, ...] = ()
    schema: int = SCHEMA

    def package(self, distribution: str) -> PackageFacts:
        """The facts of one distribution; an absent one counts as not installed."""
        return self.packages.get(distribution, NOT_INSTALLED)

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
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "facts") -> EnvFacts:
        """Read the `--env` format; a malformed document raises `UsageError` naming the key."""
        doc = _expect(data, dict, where, "the document")
        schema = doc.get("schema", SCHEMA)
        if schema != SCHEMA:
            raise UsageError(f"{where}: schema {schema!r} is not supported (this attnpick reads schema {SCHEMA})")
        os_name = doc.get("os")
        if os_name not in OS_NAMES:
            raise UsageError(f"{where}: 'os' must be one of {', '.join(OS_NAMES)}, got {os_name!r}")
        device = _expect(doc.get("device", {"type": "cpu"}), dict, where, "'device'")
        dtype = device.get("type", "cpu")
        if dtype not in DEVICE_TYPES:
            raise UsageError(f"{where}: 'device.type' must be one of {', '.join(DEVICE_TYPES)}, got {dtype!r}")
        capability = device.get("capability")
        if capability is not None and not _is_capability(capability):
            raise UsageError(f"{where}: 'device.capability' must look like \"8.0\", got {capability!r}")
        memory = device.get("memory_gb")
        if memory is not None and not isinstance(memory, (int, float)):
            raise UsageError(f"{where}: 'device.memory_gb' must be a number or null, got {memory!r}")
        packages: dict[str, PackageFacts] = {}
        for name, entry in _expect(doc.get("packages", {}), dict, where, "'packages'").items():
            entry = _expect(entry, dict, where, f"'packages.{name}'")
            version = entry.get("version")
            importable = entry.get("importable", None if version is None else True)
            if version is not None and not isinstance(version, str):
                raise UsageError(f"{where}: 'packages.{name}.version' must be a string or null")
            if importable not in (True, False, None):
                raise UsageError(f"{where}: 'packages.{name}.importable' must be true, false or null")
            details = _expect(entry.get("details", {}), dict, where, f"'packages.{name}.details'")
            packages[name] = PackageFacts(version, importable, entry.get("error"), dict(details))
        kernels = _expect(doc.get("sdpa_kernels", []), list, where, "'sdpa_kernels'")
        return cls(
            os=os_name,
            python=str(doc.get("python", "")),
            torch=_optional_str(doc, "torch", where),
            cuda=_optional_str(doc, "cuda", where),
            device=DeviceFacts(dtype, device.get("name"), capability, memory),
            packages=packages,
            sdpa_kernels=tuple(str(k) for k in kernels),
        )


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
        raise UsageError(f"{where}: {what} must be a JSON {'object' if kind is dict else 'array'}")
    return value


def _optional_str(doc: dict[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{where}: '{key}' must be a string or null, got {value!r}")
    return value


def _is_capability(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    major, dot, minor = value.partition(".")
    return major.isdigit() and (not dot or minor.isdigit())
