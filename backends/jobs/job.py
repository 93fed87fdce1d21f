"""What a folder job is: work items, a per-item function that needs loaded models, and its CSV row.

A job is a small picklable object. The runner calls :meth:`FolderJob.setup` once per worker (in the
driver for a local run, once per Ray actor otherwise) and :meth:`FolderJob.run` for every item with
what setup returned. ``run`` returns the item's CSV row and its output files as bytes; only the
driver writes into the output folder (atomically), so a worker that dies never leaves half a file.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import FaceLabError, InputError

ItemProgress = Callable[[float, str], None]


@dataclass(frozen=True)
class Item:
    """One unit of work: a key that is stable across runs (a relative path, a clip folder) and what
    the per-item function needs (paths, numbers; it travels to the worker)."""

    key: str
    payload: Any = None


@dataclass
class Outcome:
    """What one item gave: its CSV row, its output files (path relative to the output folder -> bytes)
    and anything the driver needs besides the row (``extra``: kept in the manifest, not in the CSV)."""

    row: dict[str, str]
    files: dict[str, bytes] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    worker: str = ""
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return self.row.get("status", "ok")


@dataclass
class Fatal:
    """An error that stops the whole job (missing weights, a broken checkpoint): raised in the driver."""

    error: BaseException


class FolderJob:
    """Base class of the jobs: subclasses set the class attributes and implement ``setup`` and ``run``.

    ``fields`` are the CSV columns; they hold ``key_field``, ``"status"`` (``"ok"`` or a failure
    kind) and ``"message"``. ``options`` are what the outputs depend on: a rerun into the same folder
    with other options is refused rather than mixing results. ``uses_gpu`` asks Ray for one GPU
    per worker when the cluster has GPUs.
    """

    name: str = "job"
    fields: tuple[str, ...] = ("key", "status", "seconds", "message")
    key_field: str = "key"
    report_name: str = "report.csv"
    uses_gpu: bool = True

    @property
    def options(self) -> Mapping[str, Any]:
        return {}

    def setup(self) -> Any:
        """Load what every item needs (models); runs once in each worker process."""
        return None

    def run(self, state: Any, item: Item, progress: ItemProgress | None = None) -> Outcome:
        raise NotImplementedError

    def failure_status(self, error: InputError) -> str:
        """The ``status`` column of an item whose input could not be used."""
        return "failed"

    def blank_row(self, key: str) -> dict[str, str]:
        row = {name: "" for name in self.fields}
        row[self.key_field] = key
        return row

    def failure_row(self, item: Item, status: str, message: str, seconds: float = 0.0) -> dict[str, str]:
        """The CSV row of an item that failed (``status`` says how, ``message`` why)."""
        row = self.blank_row(item.key)
        row.update(status=status, message=message)
        if "seconds" in row:
            row["seconds"] = f"{seconds:.1f}"
        return row


def worker_name() -> str:
    """``host:pid`` of this process, as the report and the final table name workers."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerState:
    """A job and what its setup loaded, set up on first use (so setup errors reach the driver as
    :class:`Fatal` through the first item instead of killing an actor that would be restarted)."""

    def __init__(self, job: FolderJob):
        self.job = job
        self.state: Any = None
        self.ready = False
        self.name = worker_name()

    def execute(self, item: Item, progress: ItemProgress | None = None) -> Outcome | Fatal:
        """Run one item: its outcome, a failed row for an unusable input, or :class:`Fatal`."""
        start = time.perf_counter()
        try:
            if not self.ready:
                self.state = self.job.setup()
                self.ready = True
                start = time.perf_counter()  # an item's seconds leave out loading the models
            outcome = self.job.run(self.state, item, progress)
        except InputError as exc:  # this item's problem (bad file, no face): one failed row, the job goes on
            outcome = Outcome(self.job.failure_row(item, self.job.failure_status(exc), str(exc),
                                                   time.perf_counter() - start))
        except FaceLabError as exc:  # missing weights and the like: every item would fail the same way
            return Fatal(exc)
        outcome.worker = self.name
        outcome.seconds = time.perf_counter() - start
        if "seconds" in self.job.fields and not outcome.row.get("seconds"):
            outcome.row["seconds"] = f"{outcome.seconds:.1f}"
        return outcome
