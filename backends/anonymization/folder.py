"""Folder and zip jobs: resumable, a CSV report, one row per photo."""

from __future__ import annotations

import csv
import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, NoFaceError
from .optimisation import ProgressFn
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


def anonymize_folder(in_dir: str | Path, out_dir: str | Path, *, progress: ProgressFn | None = None,
                     **options: Any) -> FolderReport:
    """Anonymise every image under ``in_dir`` into ``out_dir`` (same relative paths, ``.png``).

    Resumable: files already in ``out_dir/report.csv`` are skipped. Faces that
    fail (no face, unreadable file) are listed there with their reason; every
    success with its identity cosine. Nothing in ``in_dir`` is written.
    """
    in_dir, out_dir = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not in_dir.is_dir():
        raise InputError(f"The input folder {in_dir} does not exist.")
    if out_dir == in_dir or in_dir in out_dir.parents:
        raise InputError("The output folder must not be inside the input folder (the input is never modified).")
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / REPORT_NAME
    done = _read_report(report_path)
    images = list_images(in_dir)
    if not images:
        raise InputError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) were found in {in_dir}.")
    names = [str(p.relative_to(in_dir)) for p in images]
    targets = output_names(names)
    results = {name: done[name] for name in names if name in done}

    def rows() -> list[dict[str, str]]:
        return [results[name] for name in names if name in results]

    processed = standin = 0
    for i, path in enumerate(images):
        rel = str(path.relative_to(in_dir))
        if rel in done:
            continue
        start = time.perf_counter()
        target = out_dir / targets[rel]
        row = {"file": rel, "status": "ok", "identity_cosine": "", "attribute_similarity": "", "output": "",
               "seconds": "", "message": ""}

        def inner(f: float, d: str, i: int = i, rel: str = rel) -> None:
            if progress is not None:
                progress((i + f) / len(images), f"{rel}: {d}")

        try:
            res = anonymize_photo(path, progress=inner, **options)
        except InputError as exc:  # this file's problem; missing weights and the like stop the run
            row.update(status="no_face" if isinstance(exc, NoFaceError) else "failed", message=str(exc))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            res.pasted.save(target)
            res.anonymized.save(target.with_name(target.stem + "_face.png"))
            row.update(identity_cosine=f"{res.cos_final:.4f}", attribute_similarity=f"{res.attr_similarity:.4f}",
                       output=str(target.relative_to(out_dir)))
            standin = standin or res.standin
        row["seconds"] = f"{time.perf_counter() - start:.1f}"
        results[rel] = row
        processed += 1
        _write_report(report_path, rows())  # after every image, so an interruption loses at most one
    _write_report(report_path, rows())
    return FolderReport(rows(), processed, len(images) - processed, report_path, bool(standin))


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
