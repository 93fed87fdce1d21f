"""Folder and zip jobs: resumable, a CSV report, one row per photo."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import InputError, NoFaceError
from ..jobs import FolderJob, Item, JobReport, Outcome, Progress, RunOptions, run_job
from ..standin import enable_standin, standin_enabled
from .optimisation import STEPS, ProgressFn
from .photo import anonymize_photo

# --------------------------------------------------------------------------- folders and zips

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
REPORT_NAME = "report.csv"
REPORT_FIELDS = ("file", "status", "identity_cosine", "attribute_similarity", "output", "seconds", "message")
MAX_ZIP_FILES = 20
MAX_ZIP_BYTES = 50 * 1024 * 1024


@dataclass
class FolderReport:
    """What a folder run did: rows of the CSV report and counts."""

    rows: list[dict[str, str]]
    processed: int  # newly processed in this run (successes and failures)
    skipped: int  # already in the report from an earlier run
    report_path: Path
    standin: bool = False
    job: JobReport | None = None  # the runner's report (engine, seconds, workers), for the final table

    @property
    def succeeded(self) -> int:
        return sum(r["status"] == "ok" for r in self.rows)

    @property
    def failed(self) -> int:
        return sum(r["status"] != "ok" for r in self.rows)


def list_images(in_dir: Path) -> list[Path]:
    """Image files under ``in_dir`` (recursively, by suffix), in a stable order."""
    return sorted(p for p in in_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def output_names(names: Sequence[str]) -> dict[str, Path]:
    """``dir/name.png`` for each input; ``dir/name_ext.png`` where two inputs share a folder and a stem."""
    stems: dict[Path, int] = {}
    for name in names:
        key = Path(name).with_suffix("")
        stems[key] = stems.get(key, 0) + 1
    out = {}
    for name in names:
        path = Path(name)
        clash = stems[path.with_suffix("")] > 1
        out[name] = path.with_name(f"{path.stem}_{path.suffix.lstrip('.').lower()}.png") if clash \
            else path.with_suffix(".png")
    return out


def _read_report(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


def _write_report(path: Path, rows: list[dict[str, str]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=REPORT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# What anonymize_photo assumes when an option is not given: a rerun that spells a default out
# (the CLI) and one that leaves it implicit have the same options.
PHOTO_DEFAULTS: dict[str, Any] = {"margin": 0.0, "steps": STEPS, "seed": 0, "candidates": 1, "variant": "official",
                                  "already_aligned": False, "pool_size": None}


class FalcoFolderJob(FolderJob):
    """FALCO over a folder: one photo per item through :func:`anonymize_photo` (the tab's function),
    the pasted-back photo and the anonymised face as PNGs, one CSV row."""

    name = "falco_folder"
    fields = REPORT_FIELDS
    key_field = "file"
    report_name = REPORT_NAME

    def __init__(self, photo_options: dict[str, Any], *, preload: bool = False):
        self.photo_options = {**PHOTO_DEFAULTS, **photo_options}
        self.standin = standin_enabled()  # the driver's choice travels to every worker
        self.preload = preload

    @property
    def options(self) -> dict[str, Any]:
        return {**self.photo_options, "standin": self.standin}

    def setup(self) -> None:
        if self.standin:
            enable_standin(True)
        if self.preload:  # a Ray worker: load the networks and the fake pool before the first photo
            from .models import get_models
            from .optimisation import get_variant
            from .pool import build_pool, pool_dir

            variant = get_variant(self.photo_options.get("variant", "official"))
            models = get_models(variant)
            with _locked(pool_dir() / ".build.lock"):  # workers sharing a cache build the pool once
                build_pool(models, variant, size=self.photo_options.get("pool_size"))

    def failure_status(self, error: InputError) -> str:
        return "no_face" if isinstance(error, NoFaceError) else "failed"

    def run(self, state: None, item: Item, progress: ProgressFn | None = None) -> Outcome:
        path, target = item.payload
        res = anonymize_photo(Path(path), progress=progress, **self.photo_options)
        row = self.blank_row(item.key)
        row.update(status="ok", identity_cosine=f"{res.cos_final:.4f}",
                   attribute_similarity=f"{res.attr_similarity:.4f}", output=target)
        face = str(Path(target).with_name(Path(target).stem + "_face.png"))
        return Outcome(row, files={target: _png(res.pasted), face: _png(res.anonymized)},
                       extra={"standin": bool(res.standin)})


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created), held for the block: one process at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def folder_items(in_dir: Path) -> list[Item]:
    """One work item per image under ``in_dir``: key = relative path, payload = (path, output name)."""
    images = list_images(in_dir)
    if not images:
        raise InputError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) were found in {in_dir}.")
    names = [str(p.relative_to(in_dir)) for p in images]
    targets = output_names(names)
    return [Item(name, (str(path), str(targets[name]))) for name, path in zip(names, images, strict=True)]


def anonymize_folder(in_dir: str | Path, out_dir: str | Path, *, progress: ProgressFn | None = None,
                     run: RunOptions | None = None, on_progress: Callable[[Progress, str], None] | None = None,
                     manifest: bool | None = None, **options: Any) -> FolderReport:
    """Anonymise every image under ``in_dir`` into ``out_dir`` (same relative paths, ``.png``).

    Resumable: a rerun skips the photos listed in ``report.csv``. With ``manifest`` (the CLI's
    choice, and always on Ray; default: only on Ray) ``out_dir/manifest.jsonl`` also records every
    finished photo, its outputs and the options, so a rerun redoes photos whose outputs are gone and
    refuses other options (see :mod:`backends.jobs.manifest`). Faces that fail (no face,
    unreadable file) are listed in the report with their reason; every success with its identity
    cosine. Nothing in ``in_dir`` is written. ``run`` chooses where it runs (this process by
    default, or a Ray cluster: :class:`backends.jobs.RunOptions`); the results are the same.
    """
    in_dir, out_dir = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not in_dir.is_dir():
        raise InputError(f"The input folder {in_dir} does not exist.")
    if out_dir == in_dir or in_dir in out_dir.parents:
        raise InputError("The output folder must not be inside the input folder (the input is never modified).")
    items = folder_items(in_dir)
    names = [item.key for item in items]
    run = run or RunOptions()
    job = FalcoFolderJob(options, preload=run.ray is not None)
    position = {name: i for i, name in enumerate(names)}

    def item_progress(key: str, fraction: float, desc: str) -> None:
        if progress is not None:
            progress((position[key] + fraction) / len(names), f"{key}: {desc}")

    def job_progress(state: Progress, key: str) -> None:
        if progress is not None:
            progress((state.skipped + state.processed) / state.total, f"{key}: done")
        if on_progress is not None:
            on_progress(state, key)

    report = run_job(job, items, out_dir, run, on_progress=job_progress, item_progress=item_progress,
                     keep_manifest=bool(manifest))
    standin = any(entry.get("extra", {}).get("standin") for entry in report.entries)
    return FolderReport(report.rows, report.processed, report.skipped, report.report_path, standin, report)


def extract_zip(zip_path: str | Path, dest: Path, max_files: int = MAX_ZIP_FILES,
                max_bytes: int = MAX_ZIP_BYTES) -> int:
    """Extract the images of an uploaded zip (flat, safe names), refusing archives over the caps."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError("The upload is not a readable zip archive.") from exc
    with archive:
        members = [m for m in archive.infolist()
                   if not m.is_dir() and Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
                   and not Path(m.filename).name.startswith(".") and "__MACOSX" not in m.filename]
        if not members:
            raise InputError("The zip holds no images (jpg, png, webp, bmp, tif).")
        if len(members) > max_files:
            raise InputError(f"The zip holds {len(members)} images; at most {max_files} are processed per upload.")
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise InputError(f"The zip's images add up to {total / 2**20:.1f} MB uncompressed; "
                             f"the limit is {max_bytes / 2**20:.0f} MB.")
        dest.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(members):
            name = f"{i:03d}_{Path(m.filename).name}"  # flat and collision-free; no path from the archive
            (dest / name).write_bytes(archive.read(m))
    return len(members)


def anonymize_zip(zip_path: str | Path, work_dir: str | Path, *, progress: ProgressFn | None = None,
                  **options: Any) -> tuple[Path, FolderReport]:
    """Anonymise every image of a zip; returns a zip of the outputs plus the CSV report, and the report."""
    if zip_path is None:
        raise InputError("Please upload a zip of photos.")
    work = Path(work_dir)
    in_dir, out_dir = work / "in", work / "out"
    extract_zip(zip_path, in_dir)
    report = anonymize_folder(in_dir, out_dir, progress=progress, **options)
    bundle = work / "anonymized.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(out_dir.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(out_dir))
    return bundle, report
