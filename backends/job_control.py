"""What a long job shares: a cancel token checked between steps, and a time-left estimate measured as it runs.

A job that runs minutes on a CPU (FALCO's fake pool, its optimisation, a zip of photos) must stop when
its visitor presses Stop or leaves, and must say how long it still needs on *this* machine. Backends
take a :class:`CancelToken` and call :meth:`CancelToken.check` between steps (a step is never cut in
half, so the longest wait for a stop is one step); :class:`Eta` turns the times of the steps done so
far into "about N s left".
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from .errors import FaceLabError


class JobCancelled(FaceLabError):
    """The job was stopped (the Stop button, or its visitor left)."""


class CancelToken:
    """A flag a UI sets and a backend loop checks between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "Stop was pressed") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`JobCancelled` once the token is cancelled."""
        if self.cancelled:
            raise JobCancelled(f"The job was stopped: {self.reason}.")


def check(token: CancelToken | None) -> None:
    """:meth:`CancelToken.check` for an optional token."""
    if token is not None:
        token.check()


# --------------------------------------------------------------------------- running jobs

_RUNNING: set[CancelToken] = set()
_RUNNING_LOCK = threading.Lock()


@contextlib.contextmanager
def running(token: CancelToken) -> Iterator[CancelToken]:
    """Count the job as running until its block ends (see :func:`wait_for_stopped_jobs`)."""
    with _RUNNING_LOCK:
        _RUNNING.add(token)
    try:
        yield token
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(token)


def running_jobs() -> int:
    with _RUNNING_LOCK:
        return len(_RUNNING)


def stopping_jobs() -> int:
    """Jobs that were cancelled but are still finishing their current step."""
    with _RUNNING_LOCK:
        return sum(t.cancelled for t in _RUNNING)


def wait_for_stopped_jobs(token: CancelToken | None = None, report: Callable[[str], None] | None = None,
                          timeout: float = 120.0, poll: float = 0.2) -> None:
    """Wait while a stopped job still finishes its step, so two jobs never share the CPU.

    Stop frees the queue slot at once, but the stopped job's thread ends only after its current step.
    """
    deadline = time.monotonic() + timeout
    told = False
    while stopping_jobs() and time.monotonic() < deadline:
        check(token)
        if report is not None and not told:
            report("waiting for a stopped job to finish its current step")
            told = True
        time.sleep(poll)


# --------------------------------------------------------------------------- measured time left


class Eta:
    """Time left of ``total`` items, from the times the items done so far took on this machine.

    The rate is measured between the first and the latest update when there are two (the first item
    carries one-time costs: allocations, caches), else from the start. ``clock`` is injectable.
    """

    def __init__(self, total: int, clock: Callable[[], float] = time.perf_counter, done: int = 0):
        self.total = int(total)
        self.clock = clock
        self.start = clock()
        self.start_done = int(done)
        self.marks: list[tuple[float, int]] = []

    def update(self, done: int) -> None:
        self.marks.append((self.clock(), int(done)))

    def seconds_per_item(self) -> float | None:
        """Measured seconds per item, or None before the first item is done."""
        if len(self.marks) >= 2 and self.marks[-1][1] > self.marks[0][1]:
            (t0, d0), (t1, d1) = self.marks[0], self.marks[-1]
            return (t1 - t0) / (d1 - d0)
        if self.marks and self.marks[-1][1] > self.start_done:
            t1, d1 = self.marks[-1]
            return (t1 - self.start) / (d1 - self.start_done)
        return None

    def seconds_left(self) -> float | None:
        rate = self.seconds_per_item()
        if rate is None:
            return None
        done = self.marks[-1][1] if self.marks else self.start_done
        return rate * max(0, self.total - done)

    def describe(self) -> str:
        """"about 40 s left", "about 3 min left", or "" before anything was measured."""
        left = self.seconds_left()
        return "" if left is None else f"about {format_seconds(left)} left"


def format_seconds(seconds: float) -> str:
    """A duration for people: "12 s", "3 min", "1.5 h", "2.1 days"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
