"""Described machines for decision tests: one line each, no hardware needed."""

from __future__ import annotations

from typing import Any

from attnpick.decide.facts import EnvFacts

GPUS = {
    "T4": ("Tesla T4", "7.5", 14.6),
    "V100": ("Tesla V100-SXM2-16GB", "7.0", 15.8),
    "RTX4090": ("NVIDIA GeForce RTX 4090", "8.9", 23.6),
    "A100": ("NVIDIA A100-SXM4-80GB", "8.0", 79.2),
    "H100": ("NVIDIA H100 80GB HBM3", "9.0", 79.2),
    "B200": ("NVIDIA B200", "10.0", 178.4),
    "MI300": ("AMD Instinct MI300X", None, 191.5),
}


def machine(os: str = "linux", gpu: str | None = None, device: str | None = None,
            torch: str | None = "2.11.0+cu130", hub: dict[str, Any] | None = None, **packages: Any) -> EnvFacts:
    """`machine("linux", "T4", flash_attn="2.8.3")`: packages as keyword (dash → underscore); a value
    is a version string, or a dict with version/importable/error/details. `hub`: the facts' hub block (absent:
    a machine that can download from the hub)."""
    if gpu:
        name, cap, mem = GPUS[gpu]
        kind = "rocm" if cap is None else "cuda"
        dev = {"type": kind, "name": name, "capability": cap, "memory_gb": mem}
        cuda = "13.0" if kind == "cuda" else None
    else:
        dev = {"type": device or "cpu", "name": None, "capability": None, "memory_gb": None}
        cuda = None
    pkgs: dict[str, Any] = {}
    if torch:
        pkgs["torch"] = {"version": torch, "importable": True, "error": None}
    pkgs["transformers"] = {"version": "5.24.0", "importable": True, "error": None}
    for key, value in packages.items():
        entry = value if isinstance(value, dict) else {"version": value, "importable": True, "error": None}
        pkgs[key.replace("_", "-")] = entry
    doc = {"schema": 1, "os": os, "python": "3.11.7", "torch": torch, "cuda": cuda if torch else None,
           "device": dev, "packages": pkgs}
    if hub is not None:
        doc["hub"] = hub
    return EnvFacts.from_dict(doc)
