"""Where the time before the first training step goes: named phases timed into the clock that is running.

`attnpick train` starts a `StartupClock`; code anywhere below it (the probe, the smoke runs, the load, the packing
check) marks its phase with `phase("name")`. Outside a running clock `phase` times nothing, so library callers pay
nothing. Seconds before the first step are counted from the process's own start (the interpreter and the imports
included), as a user waiting at the prompt counts them.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_RUNNING: contextvars.ContextVar[StartupClock | None] = contextvars.ContextVar("attnpick_startup_clock",
                                                                                default=None)


def process_started_at() -> float | None:
    """The epoch time this process started (psutil), or None where it cannot be read."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - no process table (a sandbox): the figures start at the clock instead
        return None


@dataclass
class StartupClock:
    """Phases in the order they ran, each with its seconds (a phase run twice adds up), and the first step's time."""

    started: float = field(default_factory=time.time)
    process_started: float | None = field(default_factory=process_started_at)
    phases: dict[str, float] = field(default_factory=dict)
    first_step_at: float | None = None
    _token: Any = None

    def __enter__(self) -> StartupClock:
        self._token = _RUNNING.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _RUNNING.reset(self._token)

    def add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def first_step(self) -> None:
        """The first optimizer step begins now (only the first call counts)."""
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def to_dict(self) -> dict[str, Any]:
        """`phases` (seconds each), `before_first_step_s` (from the process's start), `in_train_s` (from the
        clock's start, inside `train()`), `before_train_s` (the interpreter, the imports and the command line)."""
        origin = self.process_started or self.started
        end = self.first_step_at
        return {
            "phases": {name: round(s, 3) for name, s in self.phases.items()},
            "before_first_step_s": round(end - origin, 3) if end else None,
            "in_train_s": round(end - self.started, 3) if end else None,
            "before_train_s": round(self.started - origin, 3),
        }


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block into the running clock's phase `name` (nothing when no clock runs)."""
    clock = _RUNNING.get()
    if clock is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        clock.add(name, time.perf_counter() - start)


def running() -> StartupClock | None:
    return _RUNNING.get()
