"""Folder jobs at dataset scale: one runner for every tab's batch work, locally or on a Ray cluster.

A tab describes its batch work as a :class:`FolderJob` (a per-item function that needs loaded
models, and the CSV row it reports) and a list of :class:`Item`; :func:`run_job` runs it in this
process (the default; Ray is never imported) or on Ray actors that each load the models once
(``RunOptions(ray="auto" | "local" | ADDRESS)``). The output folder keeps a manifest, so reruns
skip finished items, and a worker that dies has its item retried elsewhere, a bounded number of times.

Modules: :mod:`.job` (items, outcomes, the job base class, one worker's setup-once state),
:mod:`.manifest` (the manifest, atomic writes, the CSV report), :mod:`.recorder` (run options,
progress counts, the driver's handling of each result), :mod:`.runner` (the driver: resume, final
table, the local engine), :mod:`.ray_engine` (actors, retries; imports Ray) and
:mod:`.cli` (the ``--ray/--workers`` options every job CLI shares).
"""

from __future__ import annotations

from .job import Fatal, FolderJob, Item, Outcome, WorkerState, worker_name  # noqa: F401 - re-exported
from .manifest import MANIFEST_NAME, Manifest, write_atomic  # noqa: F401 - re-exported
from .recorder import MAX_RETRIES, Progress, ProgressFn, RunOptions  # noqa: F401 - re-exported
from .runner import JobReport, run_job  # noqa: F401 - re-exported
