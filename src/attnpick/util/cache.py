"""The user cache: JSON entries keyed by a fingerprint of what they depend on, written atomically.

An entry that is missing, corrupt, written for another key, or of an unexpected shape counts as a miss and
is rewritten by the caller: a bad cache file never breaks a command.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnpick import settings
from attnpick.util import files


def cache_dir() -> Path:
    """`$ATTNPICK_CACHE_DIR`, else the platform's user cache folder for attnpick."""
    override = settings.cache_override()
    if override:
        return Path(override)
    from platformdirs import user_cache_dir  # only when the cache is used

    return Path(user_cache_dir("attnpick", appauthor=False))


def fingerprint(parts: dict[str, Any]) -> str:
    """A short stable hash of JSON-serialisable facts (machine, package versions, shapes)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def files_key(folder: str | Path) -> list[list[Any]]:
    """What identifies a model folder's files without reading them: each top-level file's name, size and
    modification time (a re-downloaded or edited weight file changes it); [] for a folder that cannot be read."""
    try:
        entries = sorted(p for p in Path(folder).iterdir() if p.is_file())
        return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in entries]
    except OSError:
        return []


def read_json(path: Path) -> Any | None:
    """The JSON document at `path`, or None when it is missing or corrupt (it will be rebuilt)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def cached(kind: str, key: dict[str, Any], valid: Callable[[Any], bool] | None = None) -> tuple[Path, Any | None]:
    """The cache file for (`kind`, fingerprint of `key`) and its value, or None when the entry is absent,
    corrupt, for another key, or fails `valid` (a check of the value's shape)."""
    path = cache_dir() / kind / f"{fingerprint(key)}.json"
    entry = read_json(path)
    if not isinstance(entry, dict) or entry.get("key") != json.loads(json.dumps(key, default=str)):
        return path, None
    value = entry.get("value")
    if valid is not None:
        try:
            if not valid(value):
                return path, None
        except (TypeError, KeyError, AttributeError, ValueError):
            return path, None
    return path, value


def store(path: Path, key: dict[str, Any], value: Any) -> None:
    """Write one entry; a cache that cannot be written (read-only home, full disk) is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_json(path, {"key": json.loads(json.dumps(key, default=str)), "value": value}, indent=1)
    except OSError:
        pass


def passed_or_run(kind: str, key: dict[str, Any] | None, run: Callable[[], Any], passed: Callable[[Any], bool],
                  encode: Callable[[Any], Any], decode: Callable[[Any], Any],
                  valid: Callable[[Any], bool] | None = None) -> tuple[Any, bool]:
    """A check's verdict for `key`: the stored one (read by `decode`) and True, else `run()`'s and False. Only a
    verdict that `passed` is stored (written by `encode`), so a failed check runs again next time; no `key`: always
    run, nothing stored."""
    if key is None:
        return run(), False
    path, hit = cached(kind, key, valid)
    if hit is not None:
        return decode(hit), True
    verdict = run()
    if passed(verdict):
        store(path, key, encode(verdict))
    return verdict, False
