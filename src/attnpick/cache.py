"""The user cache: fingerprinted JSON entries, written atomically, ignored when corrupt."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """`$ATTNPICK_CACHE_DIR`, else the platform's user cache folder for attnpick."""
    override = os.environ.get("ATTNPICK_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("attnpick", appauthor=False))


def fingerprint(parts: dict[str, Any]) -> str:
    """A short stable hash of JSON-serialisable facts (machine, package versions, shapes)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def read_json(path: Path) -> Any | None:
    """The JSON document at `path`, or None when it is missing or corrupt (it will be rebuilt)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached(kind: str, key: dict[str, Any]) -> tuple[Path, Any | None]:
    """The cache file for (`kind`, fingerprint of `key`) and its content if present and valid."""
    path = cache_dir() / kind / f"{fingerprint(key)}.json"
    entry = read_json(path)
    if not isinstance(entry, dict) or entry.get("key") != json.loads(json.dumps(key, default=str)):
        return path, None
    return path, entry.get("value")


def store(path: Path, key: dict[str, Any], value: Any) -> None:
    write_json_atomic(path, {"key": key, "value": value})
