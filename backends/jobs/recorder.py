"""The driver's record of a running job: where it runs (:class:`RunOptions`), its counts
(:class:`Progress`) and the one place every result goes through (:class:`Recorder`: files and
manifest line, counts, the CSV report). Shared by the local engine and the Ray engine.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .job import Item, Outcome
from .manifest import Manifest

REPORT_INTERVAL_S = 1.0
MAX_RETRIES = 2  # a worker that dies while running an item: the item is tried this many more times


@dataclass
class RunOptions:
    """Where and how to run: ``ray`` None runs in this process; ``"local"`` starts a Ray instance on
    this machine; ``"auto"`` or an address (``ray://host:10001``, ``host:6379``) joins a cluster."""

    ray: str | None = None
    workers: int | None = None  # Ray: actors (default: one per GPU, else one)
    cpus_per_worker: int | None = None  # Ray CPU actors: threads each (default: the cluster's CPUs / workers)
    max_retries: int = MAX_RETRIES
    retry_failed: bool = False  # redo items recorded as failed by an earlier run


@dataclass
class Progress:
    """Counts the driver shows while a job runs."""

    total: int
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    retried: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def processed(self) -> int:
        return self.ok + self.failed

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.processed

    @property
    def rate(self) -> float:
        """Items per second in this run."""
        elapsed = time.perf_counter() - self.started
        return self.processed / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        eta = "?" if self.rate == 0 else _duration(self.remaining / self.rate)
        text = (f"{self.skipped + self.processed}/{self.total} done ({self.skipped} from earlier runs), "
                f"{self.failed} failed, {self.rate:.2f} items/s, ETA {eta}")
        return text + (f", {self.retried} retried after a worker died" if self.retried else "")


ProgressFn = Callable[[Progress, str], None]


class Recorder:
    """The driver's side of every result: files and manifest line, counts, the CSV report."""

    def __init__(self, manifest: Manifest, keys: Sequence[str], progress: Progress,
                 on_progress: ProgressFn | None):
        self.manifest, self.keys, self.progress, self.on_progress = manifest, keys, progress, on_progress
        self.per_worker: Counter[str] = Counter()
        self._last_report = 0.0

    def __call__(self, item: Item, outcome: Outcome, attempts: int = 1) -> None:
        self.manifest.record(item.key, outcome, attempts)
        if outcome.status == "ok":
            self.progress.ok += 1
        else:
            self.progress.failed += 1
        if outcome.worker:
            self.per_worker[outcome.worker] += 1
        now = time.perf_counter()
        if now - self._last_report >= REPORT_INTERVAL_S or not self.manifest.persist:
            self.manifest.write_report(self.keys)
            self._last_report = now
        if self.on_progress is not None:
            self.on_progress(self.progress, item.key)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
