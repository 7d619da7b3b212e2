"""Every environment variable attnpick reads, in one place: its name, what it does, and how it is read.

| variable | meaning |
|---|---|
| `ATTNPICK_BACKEND` | the backend to use when no argument or flag names one |
| `ATTNPICK_DISABLE_BACKENDS` | backends this process must not use (`a,b`; `name@R`: only on rank R) |
| `ATTNPICK_HIDE_PACKAGES` | distributions the probe treats as not installed (`a,b`; `name@R`) |
| `ATTNPICK_CACHE_DIR` | attnpick's cache folder (default: the platform's user cache folder) |
| `ATTNPICK_DEBUG` | the CLI shows tracebacks and library warnings, as `--debug` |
| `ATTNPICK_NO_BANNER` | `FastLanguageModel.from_pretrained` prints no banner |
| `RANK`, `WORLD_SIZE` | set by torchrun / accelerate launch: this process's rank and the job's size |

Read at call time, never at import, so a test or a launcher may set them late.
"""

from __future__ import annotations

import os

BACKEND_ENV = "ATTNPICK_BACKEND"
DISABLE_ENV = "ATTNPICK_DISABLE_BACKENDS"
HIDE_ENV = "ATTNPICK_HIDE_PACKAGES"
CACHE_ENV = "ATTNPICK_CACHE_DIR"
DEBUG_ENV = "ATTNPICK_DEBUG"
BANNER_ENV = "ATTNPICK_NO_BANNER"


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) from the environment torchrun and accelerate set; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def backend() -> str | None:
    """`$ATTNPICK_BACKEND`: the backend asked for in the environment, when no argument asks for one."""
    return os.environ.get(BACKEND_ENV) or None


def name_list(variable: str) -> frozenset[str]:
    """Comma-separated names; `name@R` applies only on the process of rank R ($RANK, as torchrun sets)."""
    rank = os.environ.get("RANK", "0")
    out = set()
    for item in os.environ.get(variable, "").split(","):
        value, _, only = item.strip().partition("@")
        if value and (not only or only == rank):
            out.add(value)
    return frozenset(out)


def disabled_backends() -> frozenset[str]:
    """Backends this process must not use, from `$ATTNPICK_DISABLE_BACKENDS`."""
    return name_list(DISABLE_ENV)


def hidden_packages() -> frozenset[str]:
    """Distributions hidden from the facts by `$ATTNPICK_HIDE_PACKAGES`."""
    return name_list(HIDE_ENV)


def cache_override() -> str | None:
    """`$ATTNPICK_CACHE_DIR`, when set."""
    return os.environ.get(CACHE_ENV) or None


def debug() -> bool:
    return bool(os.environ.get(DEBUG_ENV))


def no_banner() -> bool:
    return bool(os.environ.get(BANNER_ENV))
