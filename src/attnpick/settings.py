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
| `LOCAL_RANK` | set by torchrun / accelerate launch: this process's GPU on its machine (`cuda:LOCAL_RANK`) |

Read at call time, never at import, so a test or a launcher may set them late.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from attnpick.errors import UsageError

BACKEND_ENV = "ATTNPICK_BACKEND"
DISABLE_ENV = "ATTNPICK_DISABLE_BACKENDS"
HIDE_ENV = "ATTNPICK_HIDE_PACKAGES"
CACHE_ENV = "ATTNPICK_CACHE_DIR"
DEBUG_ENV = "ATTNPICK_DEBUG"
BANNER_ENV = "ATTNPICK_NO_BANNER"


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) from the environment torchrun and accelerate set; (0, 1) for a plain process."""
    return _whole("RANK", 0), _whole("WORLD_SIZE", 1)


def local_rank() -> int:
    """This process's GPU index on its machine under torchrun / accelerate launch (`$LOCAL_RANK`); 0 otherwise."""
    return _whole("LOCAL_RANK", 0)


def _whole(variable: str, default: int) -> int:
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    if not value.isascii() or not value.isdigit():
        raise UsageError(f"${variable} must be a whole number, got {value!r}. Unset it (torchrun and accelerate "
                         "launch set it themselves).")
    return int(value)


def check_environment(backend_names: Iterable[str]) -> None:
    """Every ATTNPICK_* variable (and RANK / WORLD_SIZE) checked like an option, before any work: a bad value or an
    unusable cache folder is a UsageError naming the variable."""
    rank_and_world()
    local_rank()
    known = set(backend_names)
    for variable in (DISABLE_ENV, HIDE_ENV):
        for item in os.environ.get(variable, "").split(","):
            value, at, only = item.strip().partition("@")
            if not item.strip():
                continue
            if not value or (at and not (only.isascii() and only.isdigit())):
                raise UsageError(f"${variable}: {item.strip()!r} is not NAME or NAME@RANK (e.g. sdpa@1).")
            if variable == DISABLE_ENV and value not in known:
                raise UsageError(f"${DISABLE_ENV}: {value!r} is not a backend. Known: {', '.join(sorted(known))}.")
    chosen = backend()
    if chosen is not None and chosen != "auto" and chosen not in known:
        raise UsageError(f"${BACKEND_ENV}={chosen!r} is not a backend. Use auto or one of: {', '.join(sorted(known))}.")
    override = cache_override()
    if override:
        _check_cache_folder(Path(override).expanduser())


def _check_cache_folder(folder: Path) -> None:
    hint = f"Point ${CACHE_ENV} at a folder you can write, or unset it."
    if _symlink_loop(folder):
        raise UsageError(f"${CACHE_ENV} {str(folder)!r} is a symbolic link that points back to itself (a loop). "
                         f"{hint}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except FileExistsError:
        raise UsageError(f"${CACHE_ENV} {str(folder)!r} is a file, not a folder. {hint}") from None
    except OSError as exc:
        raise UsageError(f"${CACHE_ENV} {str(folder)!r} cannot be used ({exc.strerror or exc}). {hint}") from None


def _symlink_loop(path: Path) -> bool:
    """Whether `path` is, or lies below, a symbolic link that never reaches a file or folder (ELOOP)."""
    try:
        path.stat()
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


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
