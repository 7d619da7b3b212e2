"""Files written whole or not at all, always as UTF-8: atomic text and JSON writes, folders published at once,
and text read back whatever BOM a Windows editor or shell put in front of it.

A writer puts the content in a temporary file beside the target, flushes and fsyncs it, then renames it over
the target (`os.replace` is atomic on POSIX and on NTFS): a reader sees the old file or the new one, never
half of one. Folders are built under a temporary name and renamed into place the same way.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attnpick.errors import AttnpickError, UsageError

TRASH_PREFIX = ".attnpick-trash-"


class DiskFullError(AttnpickError):
    """No space left where attnpick writes: one line naming the folder (exit 2: the user frees space)."""

    exit_code = 2


# numpy's `tofile` (under gguf's writer) reports a write the disk cut short without an errno.
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC, or a write cut short by it as torch's serializer ("unexpected pos") or numpy ("N requested and M
    written") report it."""
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left" in str(exc) or \
        "unexpected pos" in str(exc) or bool(_SHORT_WRITE.search(str(exc)))


@contextlib.contextmanager
def disk_full_as_error(where: Path, what: str) -> Iterator[None]:
    """A full disk inside the block is one `DiskFullError` naming `where` and saying `what` was not written."""
    try:
        yield
    except DiskFullError:
        raise
    except (OSError, RuntimeError) as exc:  # safetensors and torch report a full disk as RuntimeErrors too
        if not is_disk_full(exc):
            raise
        raise DiskFullError(f"No space left on the device holding {where}: {what} was not written (nothing "
                            "half-written is kept). Free some space and run again.") from None


def file_mode() -> int:
    """The permissions a file the user creates gets (0o666 less the umask); a temporary file starts at 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically, with the user's usual permissions; the parent folder must exist."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and is_disk_full(exc):
            raise DiskFullError(f"No space left on the device holding {path.parent}; {path.name} was not written "
                                "(nothing half-written is kept). Free some space and run again.") from None
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` as UTF-8 with `\n` line ends, atomically; the parent folder must exist."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """Write `data` as JSON (UTF-8, non-ASCII kept readable), atomically."""
    write_text(path, json.dumps(data, indent=indent, ensure_ascii=False, sort_keys=False) + "\n")


def read_text(path: str | Path) -> str:
    """A text file as str: UTF-8 with or without a BOM, or UTF-16 when it starts with a UTF-16 BOM (what
    Windows PowerShell 5.1's `>` writes). `UnicodeDecodeError` for anything else."""
    raw = Path(path).read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


def check_writable(folder: str | Path, option: str) -> bool:
    """Make sure files can be written in `folder`, creating it (and its parents) if needed; returns whether it
    was created. `UsageError` naming `option` when it is a file or cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {str(folder)!r} is a file, not a folder. Give a folder path.")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {str(folder)!r} cannot be written ({exc.strerror or exc}). Choose a folder "
                         "you can write to.") from None
    return created


def check_writable_file(path: str | Path, option: str) -> None:
    """Make sure `path` can be written later: its folder exists and takes files, and it is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {str(path)!r} is a folder. Give a file name.")
    if not path.parent.is_dir():
        raise UsageError(f"{option} {str(path)!r}: the folder {str(path.parent)!r} does not exist. Create it first.")
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {str(path)!r} cannot be written ({exc.strerror or exc}). Choose another "
                         "place.") from None


def fsync_file(path: str | Path) -> None:
    """Flush one written file to disk. Opened for writing: `os.fsync` on a read-only handle fails on Windows."""
    with open(path, "r+b") as handle:
        os.fsync(handle.fileno())


def fsync_folder(path: str | Path) -> None:
    """Flush a folder's entries (renames, new files) to disk where the OS allows opening a folder (POSIX);
    Windows cannot open a folder for fsync, and NTFS journals the rename itself."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard_folder(folder: Path) -> None:
    """Remove `folder`, tolerating files another process still maps (Windows refuses to delete those): the folder
    is first renamed aside, then deleted as far as possible; what is left is retried by the next publish."""
    if not folder.exists():
        return
    trash = folder.parent / f"{TRASH_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        os.replace(folder, trash)
    except OSError as exc:
        raise UsageError(f"Cannot replace {folder} ({exc.strerror or exc}). Close the programs that use it, or "
                         "delete the folder, then run again.") from None
    shutil.rmtree(trash, ignore_errors=True)


def _sweep_trash(parent: Path) -> None:
    for old in parent.glob(f"{TRASH_PREFIX}*"):
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def publish_folder(final: Path, replace: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name and rename it to `final` when the block succeeds.

    With `replace`, an existing `final` (an incomplete or corrupt earlier build) is discarded first; without
    it, a `final` that appeared meanwhile (another process won the race) is kept and the new build dropped.
    On any error nothing is left behind.

    Example:
        >>> with publish_folder(cache / "model") as tmp:
        ...     (tmp / "config.json").write_text("{}")
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_trash(final.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield staging
        if replace:
            discard_folder(final)
        try:
            os.replace(staging, final)
        except OSError:
            if not final.is_dir():
                raise
        fsync_folder(final.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
