"""Folder and zip jobs: resumable, a CSV report, one row per photo."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

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


# Compression methods by their zip number, for the message when a member uses one this reader does not read.
# Only stored and Deflate members are read: the others either cannot be read here (Deflate64, PPMd...) or
# (bzip2, LZMA) decompress in unbounded steps through zipfile, which a bomb could use.
COMPRESSION_NAMES = {1: "Shrink", 6: "Implode", 9: "Deflate64", 12: "bzip2", 14: "LZMA", 18: "IBM TERSE",
                     19: "LZ77", 93: "Zstandard", 94: "MP3", 95: "XZ", 96: "JPEG", 97: "WavPack", 98: "PPMd",
                     99: "AES-encrypted"}
CHUNK_BYTES = 1 << 20  # decompressed bytes per step: memory stays bounded whatever the headers say
MAX_STEM_BYTES = 100  # of a member's own name in its flat local name (file systems allow 255)
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"
# What zipfile may raise on a hostile directory (OSError: a seek past the end of the upload).
_ZIP_READ_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, UnicodeDecodeError, NotImplementedError,
                    struct.error, OverflowError, IndexError, KeyError)
# What a member's own data may raise while it is decompressed (an OSError there is the server's disk).
_MEMBER_DATA_ERRORS = (zlib.error, ValueError, EOFError, OverflowError, struct.error)


@dataclass
class ZipContents:
    """What :func:`extract_zip` did: the images written (local names) and those it could not read, with why."""

    extracted: list[str]
    failed: dict[str, str]
    bytes_read: int = 0


class _MemberProblem(Exception):
    """One member of the zip cannot be read; the rest of the zip still is."""


def _local_name(index: int, member: str) -> str:
    """A flat, collision-free, short local name for a member: ``007_<its own name>``, no folder from the archive."""
    base = re.split(r"[\\/]", member)[-1]
    suffix = Path(base).suffix.lower()
    stem = base[: len(base) - len(suffix)] if suffix else base
    stem = "".join(c if c.isprintable() else "_" for c in stem)
    stem = stem.encode("utf-8")[:MAX_STEM_BYTES].decode("utf-8", errors="ignore")
    return f"{index:03d}_{stem}{suffix}"


def _copy_member(fp: BinaryIO, info: zipfile.ZipInfo, target: Path, already: int, max_bytes: int) -> int:
    """Decompress one member into ``target``, counting what actually comes out; the bytes written.

    The central directory's sizes are what the caps are checked against; here the data itself is held to
    them: a member that yields more than it declares is stopped at once (a bomb whose headers lie), one
    that yields less, ends early or fails its CRC is damaged. Raises :class:`_MemberProblem` with the
    reason, or :class:`InputError` when the zip's images, ``already`` bytes before this one, pass ``max_bytes``.
    """
    if info.flag_bits & 0x1:
        raise _MemberProblem("is encrypted (password-protected); Face Lab cannot open it. Add the photo to the "
                             "zip without a password.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        method = COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise _MemberProblem(f"uses {method} compression, which Face Lab does not read. Make the zip again with "
                             "the standard (Deflate) compression.")
    if info.header_offset < 0:
        raise _MemberProblem("is damaged: its data is not where the zip's directory says.")
    fp.seek(info.header_offset)
    header = fp.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise _MemberProblem("is damaged: its data is not where the zip's directory says.")
    *_, name_len, extra_len = _LOCAL_HEADER.unpack(header)
    fp.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
    inflate = zlib.decompressobj(-zlib.MAX_WBITS) if info.compress_type == zipfile.ZIP_DEFLATED else None
    left, written, crc = info.compress_size, 0, 0
    with target.open("wb") as out:
        def emit(data: bytes) -> None:
            nonlocal written, crc
            written += len(data)
            if written > info.file_size:
                raise _MemberProblem(f"holds more data than the {_size(info.file_size)} its header declares; "
                                     "it was stopped there (a zip built to expand without limit).")
            if already + written > max_bytes:  # each member is held to its declared size, so this is a last guard
                raise InputError(f"The zip's images decompress to more than {max_bytes / 2**20:.0f} MB, "
                                 "the limit.")
            crc = zlib.crc32(data, crc)
            out.write(data)

        while inflate is None and left > 0:  # stored: the data is the content
            chunk = fp.read(min(CHUNK_BYTES, left))
            if not chunk:
                break
            left -= len(chunk)
            emit(chunk)
        while inflate is not None and not inflate.eof:
            # At most CHUNK_BYTES come out per step; input zlib could not use yet waits in unconsumed_tail.
            given = inflate.unconsumed_tail
            if not given and left > 0:
                given = fp.read(min(CHUNK_BYTES, left))
                left -= len(given)
                if not given:
                    break  # the upload ends before the member's compressed size
            produced = inflate.decompress(given, CHUNK_BYTES)
            emit(produced)
            if not given and not produced:
                break  # nothing left to give and nothing more comes out: the stream ends early
    if (left > 0 and inflate is None) or (inflate is not None and not inflate.eof):
        raise _MemberProblem("is damaged: its data ends early (a truncated upload?).")
    if written != info.file_size:
        raise _MemberProblem(f"is damaged: it holds {_size(written)}, its header declares {_size(info.file_size)}.")
    if crc != info.CRC:
        raise _MemberProblem("is damaged: its checksum does not match its data.")
    return written


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 2**20 else f"{n / 2**20:.1f} MB"


MAX_ZIP_ENTRIES = 10_000  # entries of any kind a zip may list: reading its directory costs memory and time per entry
_EOCD = b"PK\x05\x06"  # the end-of-central-directory record's signature
_ZIP64_LOCATOR = b"PK\x06\x07"


def listed_entries(zip_path: str | Path) -> int | None:
    """How many entries a zip's directory lists, read from its end record alone (None if there is none).

    ``zipfile.ZipFile`` parses the whole directory before anything can be checked: 280 000 entries in a
    25 MB upload took about 5 s and 160 MB. The end record states the count in a few bytes.
    """
    with open(zip_path, "rb") as fp:
        fp.seek(0, os.SEEK_END)
        size = fp.tell()
        tail_len = min(size, 22 + 65_535 + 20)  # the record, its longest comment, a zip64 locator before it
        fp.seek(size - tail_len)
        tail = fp.read(tail_len)
        at = tail.rfind(_EOCD)
        if at < 0 or at + 22 > len(tail):
            return None
        entries = int.from_bytes(tail[at + 10:at + 12], "little")
        if entries != 0xFFFF or at < 20 or tail[at - 20:at - 16] != _ZIP64_LOCATOR:
            return entries
        # zip64: the locator points at the zip64 end record, which holds the count in 8 bytes at offset 32
        record_at = int.from_bytes(tail[at - 12:at - 4], "little")
        if record_at + 40 > size:
            return None
        fp.seek(record_at)
        record = fp.read(40)
    if record[:4] != b"PK\x06\x06":
        return None
    return int.from_bytes(record[32:40], "little")


def extract_zip(zip_path: str | Path, dest: Path, max_files: int = MAX_ZIP_FILES,
                max_bytes: int = MAX_ZIP_BYTES) -> ZipContents:
    """Extract the images of an uploaded zip (flat, short, safe names), refusing archives over the caps.

    Whole-zip problems (not a zip, too many images, too large) raise :class:`InputError`. A member that
    cannot be read (encrypted, an unsupported compression, damaged, lying about its size) is listed in
    ``failed`` with the reason, and the other images are still extracted.
    """
    try:
        listed = listed_entries(zip_path)
    except OSError as exc:
        raise InputError("The upload is not a readable zip archive.") from exc
    if listed is not None and listed > MAX_ZIP_ENTRIES:
        raise InputError(f"The zip lists {listed:,} entries; at most {MAX_ZIP_ENTRIES:,} are read "
                         f"(and {max_files} images processed) per upload.")
    try:
        archive = zipfile.ZipFile(zip_path)
    except _ZIP_READ_ERRORS as exc:
        raise InputError("The upload is not a readable zip archive.") from exc
    with archive:
        members = [m for m in archive.infolist()
                   if m.filename and not m.filename.endswith("/")  # ZipInfo.is_dir() fails on an empty name
                   and Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
                   and not re.split(r"[\\/]", m.filename)[-1].startswith(".") and "__MACOSX" not in m.filename]
        if not members:
            raise InputError("The zip holds no images (jpg, png, webp, bmp, tif).")
        if len(members) > max_files:
            raise InputError(f"The zip holds {len(members)} images; at most {max_files} are processed per upload.")
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise InputError(f"The zip's images add up to {total / 2**20:.1f} MB uncompressed; "
                             f"the limit is {max_bytes / 2**20:.0f} MB.")
        dest.mkdir(parents=True, exist_ok=True)
        contents = ZipContents([], {})
        with open(zip_path, "rb") as fp:
            for i, m in enumerate(members):
                name = _local_name(i, m.filename)
                target = dest / name
                try:
                    contents.bytes_read += _copy_member(fp, m, target, contents.bytes_read, max_bytes)
                except _MemberProblem as problem:
                    target.unlink(missing_ok=True)
                    contents.failed[name] = f"The image {problem}"
                except _MEMBER_DATA_ERRORS:
                    target.unlink(missing_ok=True)
                    contents.failed[name] = "The image is damaged: its compressed data cannot be read."
                except BaseException:
                    target.unlink(missing_ok=True)
                    raise
                else:
                    contents.extracted.append(name)
    return contents


def anonymize_zip(zip_path: str | Path, work_dir: str | Path, *, progress: ProgressFn | None = None,
                  **options: Any) -> tuple[Path, FolderReport]:
    """Anonymise every image of a zip; returns a zip of the outputs plus the CSV report, and the report."""
    if zip_path is None:
        raise InputError("Please upload a zip of photos.")
    work = Path(work_dir)
    in_dir, out_dir = work / "in", work / "out"
    contents = extract_zip(zip_path, in_dir)
    if contents.extracted:
        report = anonymize_folder(in_dir, out_dir, progress=progress, **options)
    else:  # nothing readable: the report lists why, one row per image
        out_dir.mkdir(parents=True, exist_ok=True)
        report = FolderReport([], 0, 0, out_dir / REPORT_NAME)
    if contents.failed:
        failed = [{"file": name, "status": "failed", "identity_cosine": "", "attribute_similarity": "", "output": "",
                   "seconds": "", "message": reason} for name, reason in contents.failed.items()]
        rows = sorted(report.rows + failed, key=lambda row: row["file"])
        _write_report(report.report_path, rows)
        report = dataclasses.replace(report, rows=rows, processed=report.processed + len(failed))
    bundle = work / "anonymized.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(out_dir.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(out_dir))
    return bundle, report
