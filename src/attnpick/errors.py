"""The errors attnpick raises on purpose; the CLI maps each to an exit code and one message."""

from __future__ import annotations

from typing import Any


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
