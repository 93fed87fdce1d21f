"""Throughput of the folder-job runner: in this process, and on a local Ray instance with 1 and 2 CPU workers.

Run from the repository root (needs ``pip install -r requirements-scale.txt``):
    .venv/bin/python bench/bench_runner.py [--job dfer|falco] [--items 12] [--noop-items 300]

``--job dfer`` (default) evaluates DFER-CLIP (stand-in weights at real size: CLIP ViT-B/32 over 16
frames plus the temporal model) on synthetic clips of 16 frames; ``--job falco`` anonymises copies
of the astronaut photo with FALCO at real size (``--steps 1``, a pool of 4; about 5.6 GB per
worker). For each engine the table gives the whole run (model loading included) and the rate once
the models are loaded (workers x 60 / median seconds per item, as each worker timed its items,
model loading excluded). The same job then runs with an
empty per-item function to measure what going through Ray costs per item (the actor round trip,
pickling, the driver's bookkeeping), against the same no-op in this process.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import print_table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FACELAB_WEIGHTS_DIR", str(REPO.parent / "shared" / "weights"))  # YuNet
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FACELAB_DEVICE", "cpu")

from backends.jobs import FolderJob, Item, Outcome, RunOptions, run_job  # noqa: E402
from backends.standin import enable_standin  # noqa: E402


class NoopJob(FolderJob):
    """An item that does nothing: what is left is the runner's own cost."""

    name = "noop"
    fields = ("key", "status", "seconds", "message")

    def run(self, state, item, progress=None) -> Outcome:
        row = self.blank_row(item.key)
        row["status"] = "ok"
        return Outcome(row)


class Clock:
    """Records when each result reached the driver."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, progress, key) -> None:
        self.times.append(time.perf_counter())



def dfer_job(root: Path, items: int):
    import numpy as np
    from PIL import Image

    from backends.expression.evaluation import AnnotationRecord, EvaluationJob

    rng = np.random.default_rng(0)
    records = []
    for k in range(items):
        folder = root / "clips" / f"clip{k:03d}"
        folder.mkdir(parents=True)
        for f in range(16):
            Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(folder / f"{f:03d}.png")
        records.append(AnnotationRecord(f"clip{k:03d}", 16, k % 7))
    job = EvaluationJob(None, "dfew", root / "clips")
    return lambda preload=False: job, [Item(r.video_dir, r) for r in records]


def falco_job(root: Path, items: int):
    import skimage.data
    from PIL import Image

    from backends.anonymization.folder import FalcoFolderJob, folder_items

    photos = root / "photos"
    photos.mkdir()
    for k in range(items):
        Image.fromarray(skimage.data.astronaut()).save(photos / f"astronaut_{k:03d}.png")
    options = {"steps": 1, "pool_size": 4}
    return lambda preload=False: FalcoFolderJob(options, preload=preload), folder_items(photos)


def release_models() -> None:
    import gc

    from backends import inversion
    from backends.allocator import release_free_memory
    from backends.anonymization import models

    models.clear_caches()
    inversion.clear_caches()
    inversion._cached_models.cache_clear()
    gc.collect()
    release_free_memory()


def run_once(make_job, items, out: Path, options: RunOptions) -> tuple[float, float]:
    job = make_job(preload=options.ray is not None)
    start = time.perf_counter()
    report = run_job(job, items, out, options)
    wall = time.perf_counter() - start
    if report.failed:
        raise SystemExit(f"{report.failed} item(s) failed: {report.rows[0]['message']}")
    per_item = statistics.median(entry["seconds"] for entry in report.entries)
    return len(items) / wall * 60, len(report.per_worker) * 60 / per_item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=("dfer", "falco"), default="dfer")
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--noop-items", type=int, default=300)
    args = parser.parse_args()
    enable_standin(True)
    import ray

    cpus = os.cpu_count() or 1
    root = Path(tempfile.mkdtemp(prefix="bench_runner_"))
    os.environ.setdefault("FACELAB_CACHE_DIR", str(root / "cache"))
    try:
        make_job, items = (dfer_job if args.job == "dfer" else falco_job)(root, args.items)
        rows = []
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        engines = [("this process", RunOptions()),
                   (f"Ray, 1 CPU worker x {cpus} threads", RunOptions(ray="auto", workers=1)),
                   (f"Ray, 2 CPU workers x {max(1, cpus // 2)} threads", RunOptions(ray="auto", workers=2))]
        for k, (label, options) in enumerate(engines):
            whole, steady = run_once(make_job, items, root / f"out{k}", options)
            rows.append((f"{args.job}: {label}", f"{whole:.1f} items/min (models loaded: {steady:.1f})"))
            print(f"{rows[-1][0]}: {rows[-1][1]}", file=sys.stderr, flush=True)
            release_models()  # the local run's networks would otherwise stay in this process beside the actors
        noop = [Item(f"n{k:05d}") for k in range(args.noop_items)]
        walls = {}
        for label, options in (("local", RunOptions()), ("ray", RunOptions(ray="auto", workers=1))):
            run_job(NoopJob(), noop[:5], root / f"warm_{label}", options)  # actor start-up off the clock
            clock = Clock()
            run_job(NoopJob(), noop, root / f"noop_{label}", options, on_progress=clock)
            walls[label] = (clock.times[-1] - clock.times[0]) / (len(noop) - 1)
        rows += [
            ("no-op item, this process (manifest line + report)", f"{walls['local'] * 1e3:.2f} ms"),
            ("no-op item, Ray 1 worker", f"{walls['ray'] * 1e3:.2f} ms"),
            ("overhead per item of going through Ray", f"{(walls['ray'] - walls['local']) * 1e3:.2f} ms"),
        ]
        ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    import torch

    print(f"Folder-job runner, {args.items} items ({platform.processor() or platform.machine()}, {cpus} CPUs, "
          f"torch {torch.__version__}, ray {ray.__version__}, stand-in weights)")
    print_table(rows)


if __name__ == "__main__":
    main()
