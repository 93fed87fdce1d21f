"""Run a folder job: locally in this process (the default; Ray is never imported) or on a Ray cluster.

The driver owns the output folder: it skips what the manifest says is finished, hands the rest to
the workers, writes each result as it arrives (files atomically, then a manifest line), keeps the
CSV report current (at most once a second, and always on the way out, Ctrl-C included) and prints
progress. Workers only compute. See :mod:`.ray_engine` for the cluster side.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..errors import FaceLabError, InputError
from .job import FolderJob, Item, ItemProgress, Outcome, WorkerState
from .manifest import Manifest
from .recorder import MAX_RETRIES, REPORT_INTERVAL_S, Progress, ProgressFn, Recorder, RunOptions  # noqa: F401


@dataclass
class JobReport:
    """What a run did, with every row of the output folder's report (all runs, in item order)."""

    rows: list[dict[str, str]]
    entries: list[dict[str, Any]]  # the manifest entries of ``rows`` (files, worker, attempts, extra)
    processed: int
    skipped: int
    report_path: Path
    seconds: float
    engine: str
    per_worker: dict[str, int]
    retried: int = 0

    @property
    def succeeded(self) -> int:
        return sum(r["status"] == "ok" for r in self.rows)

    @property
    def failed(self) -> int:
        return sum(r["status"] != "ok" for r in self.rows)

    def table(self) -> str:
        """The final table: counts, speed, and items per worker."""
        rate = self.processed / self.seconds * 60 if self.seconds > 0 else 0.0
        lines = [
            "| engine | items | ok | failed | skipped (earlier runs) | this run | seconds | items/min |",
            "|---|---|---|---|---|---|---|---|",
            f"| {self.engine} | {len(self.rows)} | {self.succeeded} | {self.failed} | {self.skipped} | "
            f"{self.processed} | {self.seconds:.1f} | {rate:.1f} |",
        ]
        if self.per_worker:
            lines += ["", "| worker | items this run |", "|---|---|"]
            lines += [f"| {name} | {count} |" for name, count in sorted(self.per_worker.items())]
        if self.retried:
            lines += ["", f"{self.retried} item(s) were retried after their worker died."]
        return "\n".join(lines)


def run_job(job: FolderJob, items: Sequence[Item], out_dir: str | Path, options: RunOptions | None = None, *,
            on_progress: ProgressFn | None = None, item_progress: Callable[[str, float, str], None] | None = None,
            state: Any = None, keep_manifest: bool = True) -> JobReport:
    """Run ``job`` over ``items`` into ``out_dir`` and return the merged report.

    ``on_progress`` is called in the driver after every item; ``item_progress`` (local runs only)
    receives (key, fraction, description) from inside an item. ``state`` reuses models already
    loaded in this process for a local run (``job.setup()`` is called otherwise). ``keep_manifest``
    False keeps no ``manifest.jsonl`` (the CSV report, rewritten after every item, is then the
    only record, as for the Anonymization tab's zips, whose bundle holds the output folder).
    """
    options = options or RunOptions()
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        dup = next(k for k, n in Counter(keys).items() if n > 1)
        raise InputError(f"The work list names '{dup}' twice.")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out_dir, job, persist=keep_manifest or options.ray is not None)
    manifest.remove_stale_temporaries()
    report_keys = manifest.report_keys()
    todo = [item for item in items if not manifest.finished(item.key, options.retry_failed, report_keys)]
    progress = Progress(total=len(items), skipped=len(items) - len(todo))
    record = Recorder(manifest, keys, progress, on_progress)
    engine = "local" if options.ray is None else f"ray ({options.ray})"
    try:
        if options.ray is None:
            _run_local(job, todo, record, item_progress, state)
        else:
            if find_spec("ray") is None:
                raise FaceLabError("Running on Ray needs the ray package: pip install -r requirements-scale.txt")
            from .ray_engine import run_on_ray  # Ray is imported only when asked for

            engine = run_on_ray(job, todo, record, options)
    finally:
        manifest.write_report(keys)
    entries = [manifest.entries[k] for k in keys if k in manifest.entries]
    return JobReport(
        rows=[e["row"] for e in entries], entries=entries, processed=progress.processed, skipped=progress.skipped,
        report_path=manifest.report_path, seconds=time.perf_counter() - progress.started, engine=engine,
        per_worker=dict(record.per_worker), retried=progress.retried,
    )


def _run_local(job: FolderJob, todo: Sequence[Item], record: Recorder,
               item_progress: Callable[[str, float, str], None] | None, state: Any) -> None:
    worker = WorkerState(job)
    if state is not None:
        worker.state, worker.ready = state, True
    for item in todo:
        inner: ItemProgress | None = None
        if item_progress is not None:
            def inner(f: float, d: str, key: str = item.key) -> None:
                item_progress(key, f, d)
        result = worker.execute(item, inner)
        if not isinstance(result, Outcome):
            raise result.error
        record(item, result)
