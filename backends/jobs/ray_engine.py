"""The Ray side of a folder job: long-lived actors that load the models once, fed item by item.

Why actors driven from here rather than Ray Data's ``map_batches`` with an actor pool: Ray Data's
actor pools restart a dead actor and retry its tasks without limit by default (``max_restarts=-1``,
``max_task_retries=-1``), so one file that kills its worker (a decoder crash, an out-of-memory
image) is retried forever; with retries off, one death fails the whole dataset, and
``max_errored_blocks`` drops blocks without saying which items they held. A folder job needs each
item's attempts counted and reported, so the driver does the bookkeeping: each actor holds one
item at a time; when an actor dies, that item is charged one attempt and requeued (or recorded as
failed after ``max_retries`` more tries), and a fresh actor takes the dead one's place. One item
per actor costs a round trip between items (about a millisecond; ``bench/bench_runner.py``
measures it) but leaves no doubt about which item a death belongs to: with a second item queued
on the actor, a finished item whose reply had not left the process when the next one killed it
would be charged for the next one's crash.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    OwnerDiedError,
    RayActorError,
    WorkerCrashedError,
)

from ..errors import FaceLabError
from .job import Fatal, FolderJob, Item, Outcome, WorkerState
from .recorder import Recorder, RunOptions

IN_FLIGHT = 1  # items per actor at a time (see the module docstring)
# What ray.get raises when the worker holding an item went away: killed, crashed, out of memory (Ray's
# memory monitor kills a worker when its node runs short), or its node lost.
WORKER_LOST = (RayActorError, ActorDiedError, ActorUnavailableError, WorkerCrashedError, ObjectLostError,
               OwnerDiedError, OutOfMemoryError, NodeDiedError)
STATUS_WORKER_LOST = "worker_lost"


class _Worker:
    """A Ray actor: one job, set up on its first item, then kept for every item it is given."""

    def __init__(self, job: FolderJob, threads: int | None):
        if threads:  # torch reads this when it is first imported; set it directly if that has happened
            os.environ["OMP_NUM_THREADS"] = str(threads)
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(threads)
        self.worker = WorkerState(job)

    def run(self, item: Item) -> Any:
        return self.worker.execute(item)


@dataclass
class _Slot:
    actor: Any
    in_flight: deque = field(default_factory=deque)  # (ref, item), oldest first


def connect(address: str) -> bool:
    """Join or start Ray; True when this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        raise FaceLabError(f"No Ray cluster answered at '{address}' ({exc}). Start one with 'ray start --head', "
                           "or use --ray local to start Ray on this machine only.") from exc
    return True


def actor_options(job: FolderJob, options: RunOptions) -> tuple[int, dict[str, Any], int | None]:
    """How many actors, their resource requests, and their torch threads, from the cluster's resources."""
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    on_gpu = job.uses_gpu and gpus >= 1 and os.environ.get("FACELAB_DEVICE", "").strip() != "cpu"
    if on_gpu:
        workers = options.workers or int(gpus)
        return workers, {"num_gpus": min(1.0, gpus / workers), "num_cpus": 1}, None
    workers = options.workers or 1
    threads = options.cpus_per_worker or max(1, cpus // workers)
    return workers, {"num_cpus": threads, "num_gpus": 0}, threads


def run_on_ray(job: FolderJob, todo: Sequence[Item], record: Recorder, options: RunOptions) -> str:
    """Run ``todo`` on Ray actors, recording each result through ``record``; the engine's description."""
    if not todo:  # everything was finished by earlier runs: no cluster needed
        return f"ray {options.ray}, nothing to run"
    started_here = connect(options.ray or "auto")
    workers, resources, threads = actor_options(job, options)
    remote = ray.remote(_Worker).options(max_restarts=0, max_concurrency=1, **resources)
    slots = [_Slot(remote.remote(job, threads)) for _ in range(workers)]
    queue: deque[Item] = deque(todo)
    attempts: dict[str, int] = {}  # attempts that ended with the worker dying
    owner: dict[Any, tuple[_Slot, Item]] = {}
    replacements_left = workers * (options.max_retries + 1) + len(todo)
    try:
        while queue or owner:
            for slot in slots:
                while queue and len(slot.in_flight) < IN_FLIGHT:
                    item = queue.popleft()
                    ref = slot.actor.run.remote(item)
                    slot.in_flight.append((ref, item))
                    owner[ref] = (slot, item)
            ready, _ = ray.wait(list(owner), num_returns=1, timeout=1.0)
            for ref in ready:
                if ref not in owner:  # its actor died meanwhile and the item was requeued
                    continue
                slot, item = owner[ref]
                try:
                    result = ray.get(ref)
                except WORKER_LOST as exc:
                    if replacements_left <= 0:
                        raise FaceLabError(f"Ray workers keep dying ({type(exc).__name__}); stopping.") from exc
                    replacements_left -= 1
                    ray.kill(slot.actor, no_restart=True)  # make sure it is gone (an unavailable one may linger)
                    slots[slots.index(slot)] = _Slot(remote.remote(job, threads))
                    _requeue(slot, exc, queue, owner, attempts, record, options.max_retries)
                    continue
                del owner[ref]
                slot.in_flight = deque(entry for entry in slot.in_flight if entry[0] != ref)
                if not isinstance(result, Outcome):
                    raise result.error
                record(item, result, attempts.get(item.key, 0) + 1)
    finally:
        for slot in slots:
            ray.kill(slot.actor, no_restart=True)
        if started_here:
            ray.shutdown()
    kind = f"{workers} GPU worker(s)" if resources["num_gpus"] else f"{workers} CPU worker(s) x {threads} thread(s)"
    return f"ray {options.ray}, {kind}"


def _requeue(slot: _Slot, exc: BaseException, queue: deque[Item], owner: dict[Any, tuple[_Slot, Item]],
             attempts: dict[str, int], record: Recorder, max_retries: int) -> None:
    """A dead actor's items, oldest first: results it finished before dying are kept; the first one
    without a result was running and is charged an attempt (recorded as failed once it has used them
    all); the ones behind it never started and go back to the queue free."""
    refs = [ref for ref, _ in slot.in_flight]
    ray.wait(refs, num_returns=len(refs), timeout=10.0)  # a dead actor's refs all resolve (to errors) at once
    charged = False
    for ref, item in slot.in_flight:
        owner.pop(ref, None)
        try:
            result = ray.get(ref, timeout=0)
        except Exception:  # noqa: BLE001 - any error here means no result: the worker went with it
            result = None
        if isinstance(result, Outcome):
            record(item, result, attempts.get(item.key, 0) + 1)
            continue
        if isinstance(result, Fatal):
            raise result.error
        if charged:
            queue.appendleft(item)
            continue
        charged = True
        attempts[item.key] = attempts.get(item.key, 0) + 1
        if attempts[item.key] > max_retries:
            message = (f"The worker running this item died {attempts[item.key]} times "
                       f"(last: {type(exc).__name__}); not retried again.")
            record(item, Outcome(record.manifest.job.failure_row(item, STATUS_WORKER_LOST, message)),
                   attempts[item.key])
        else:
            record.progress.retried += 1
            queue.appendleft(item)
    slot.in_flight.clear()
