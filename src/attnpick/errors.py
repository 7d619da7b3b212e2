"""The errors attnpick raises on purpose; the CLI maps each to an exit code and one message."""

from __future__ import annotations

from typing import Any

LINE_LIMIT = 300  # characters of a library's error text that a one-line message quotes


def first_line(text: object, limit: int = LINE_LIMIT, last: bool = False) -> str:
    """The first (or, `last`, the last) non-blank line of an error's text, cut to `limit` characters; '' when there
    is no text at all (an exception raised without a message), so no caller has to guard an empty list."""
    lines = [line.strip() for line in str(text if text is not None else "").splitlines() if line.strip()]
    if not lines:
        return ""
    return (lines[-1] if last else lines[0])[:limit]


class AttnpickError(Exception):
    """Base class: `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(AttnpickError, ValueError):
    """Bad input: unknown backend, malformed facts file, conflicting options. Exit code 2."""

    exit_code = 2


class NoBackendError(AttnpickError, RuntimeError):
    """The forced backend cannot run here, or nothing is eligible. Exit code 3.

    `decision` holds every candidate's reasons.
    """

    exit_code = 3

    def __init__(self, message: str, decision: Any = None) -> None:
        super().__init__(message)
        self.decision = decision
