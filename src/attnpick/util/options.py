"""Config dataclasses whose fields are also the CLI's options: `option()` declares a field with its help line and
argparse extras, `cli_fields()` lists them for the CLI, and `whole()` / `finite()` check numbers the same way for
every command. `TrainConfig`, `LoadConfig`, `VerifyConfig` and `BenchConfig` are built from these."""

from __future__ import annotations

import math
from dataclasses import MISSING, field, fields
from typing import Any

from attnpick.errors import UsageError


def option(default: Any, help: str, **cli: Any) -> Any:
    """A config field with its CLI help; `cli` holds argparse extras (flag, metavar, choices, aliases, kind...).
    `cli=False` keeps a field off the command line."""
    factory = {"default_factory": lambda: list(default)} if isinstance(default, (list, tuple)) else {"default": default}
    return field(**factory, metadata={"help": help, **cli})


def cli_fields(config_class: type) -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, default, metadata) of every field of `config_class` the CLI offers."""
    out = []
    for f in fields(config_class):
        if f.metadata.get("cli", True) is False:
            continue
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        out.append((f.name, default, dict(f.metadata)))
    return out


def whole(value: Any, option: str, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise UsageError(f"{option} must be a whole number {span}, got {value!r}.")


def finite(value: Any, option: str, low: float, high: float | None = None, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        bounds = f"{'above' if low_open else 'at least'} {low:g}" + (f" and below {high:g}" if high is not None else "")
        raise UsageError(f"{option} must be a finite number {bounds}, got {value!r}.")


def flag(value: Any, name: str) -> None:
    """A yes/no argument must be True or False: "yes" or 1 is refused, not taken as true."""
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be True or False, got {value!r}.")
