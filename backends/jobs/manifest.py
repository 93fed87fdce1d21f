"""The output folder's record of a job: ``manifest.jsonl`` (appended per item) and the CSV report.

The manifest's first line names the job and its options; every later line is one finished item
(its CSV row, its output files, the worker, the attempts). It is appended and flushed as each item
finishes, so an interrupted or killed driver loses nothing that finished. A rerun skips an item when

* the manifest has it (the last line for a key wins; a torn last line is ignored),
* every output file it lists exists (delete an output to have it redone),
* and, when the CSV report exists, the report lists it (delete a row to have it redone).

Failed items are skipped too unless ``retry_failed``. Output files are written under a temporary
name and renamed into place, so a crash never leaves a half-written file under a final name.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from .job import FolderJob, Outcome

MANIFEST_NAME = "manifest.jsonl"
TMP_SUFFIX = ".facelab-tmp"
FORMAT = 1


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name and a rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_csv_rows(path: Path, key_field: str) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {row[key_field]: row for row in csv.DictReader(fh) if row.get(key_field)}


def write_csv(path: Path, fields: Sequence[str], rows: Iterable[Mapping[str, str]]) -> None:
    """The CSV report, written whole and renamed into place."""
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(options), sort_keys=True, default=str))


class Manifest:
    """What the output folder already holds for one job (see the module docstring)."""

    def __init__(self, out_dir: Path, job: FolderJob, persist: bool = True):
        self.out_dir = out_dir
        self.job = job
        self.persist = persist  # False: the CSV report is the only record (no manifest file, no options check)
        self.path = out_dir / MANIFEST_NAME
        self.report_path = out_dir / job.report_name
        self.entries: dict[str, dict[str, Any]] = {}
        self._load()

    # ------------------------------------------------------------------ reading

    def _load(self) -> None:
        options = _jsonable(self.job.options)
        if not self.persist or not self.path.is_file():
            # No manifest (a folder from before it existed, or a run that keeps none): the CSV rows count
            # as finished items.
            for key, row in read_csv_rows(self.report_path, self.job.key_field).items():
                self.entries[key] = {"key": key, "status": row.get("status", "ok"), "row": row, "outputs": []}
            if self.persist:
                self._write_header(options)
            return
        lines = self.path.read_text().splitlines()
        header = _parse(lines[0]) if lines else None
        if header is None or header.get("manifest") != FORMAT:
            raise InputError(f"{self.path} is not a Face Lab manifest; choose another output folder.")
        if header.get("job") != self.job.name or header.get("options") != options:
            raise InputError(
                f"The output folder holds a '{header.get('job')}' run with other options "
                f"({_differences(header.get('options') or {}, options)}); rerun with the same options "
                "or choose another output folder."
            )
        for line in lines[1:]:
            entry = _parse(line)
            if entry is not None and isinstance(entry.get("key"), str):
                self.entries[entry["key"]] = entry

    def _write_header(self, options: dict[str, Any]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        header = {"manifest": FORMAT, "job": self.job.name, "options": options}
        write_atomic(self.path, (json.dumps(header) + "\n").encode())
        for entry in self.entries.values():
            self._append(entry)

    def finished(self, key: str, retry_failed: bool = False, report_keys: set[str] | None = None) -> bool:
        """Whether a rerun may skip ``key`` (see the module docstring)."""
        entry = self.entries.get(key)
        if entry is None or (report_keys is not None and key not in report_keys):
            return False
        if entry.get("status") != "ok":
            return not retry_failed
        return all((self.out_dir / name).is_file() for name in entry.get("outputs", []))

    def report_keys(self) -> set[str] | None:
        """Keys of the CSV report on disk, or None when there is none."""
        if not self.report_path.is_file():
            return None
        return set(read_csv_rows(self.report_path, self.job.key_field))

    # ------------------------------------------------------------------ writing

    def record(self, key: str, outcome: Outcome, attempts: int) -> None:
        """Write the item's files (atomically), then its manifest line (flushed to disk)."""
        outputs = []
        for name, data in outcome.files.items():
            target = (self.out_dir / name).resolve()
            if self.out_dir not in target.parents:
                raise ValueError(f"an output path leaves the output folder: {name}")
            write_atomic(target, data)
            outputs.append(name)
        entry = {"key": key, "status": outcome.status, "row": outcome.row, "outputs": outputs,
                 "worker": outcome.worker, "attempts": attempts, "seconds": round(outcome.seconds, 3),
                 "extra": _jsonable(outcome.extra)}
        self.entries[key] = entry
        if self.persist:
            self._append(entry)

    def _append(self, entry: dict[str, Any]) -> None:
        with self.path.open("ab+") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a torn line from a killed run: end it so ours stays whole
                    fh.write(b"\n")
            fh.write((json.dumps(entry) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())

    def write_report(self, keys: Sequence[str]) -> None:
        """The CSV report: one row per key that has one, in ``keys`` order."""
        write_csv(self.report_path, self.job.fields,
                  (self.entries[k]["row"] for k in keys if k in self.entries))

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files a killed run left behind; how many."""
        stale = [p for p in self.out_dir.rglob(f"*{TMP_SUFFIX}") if p.is_file()]
        for path in stale:
            path.unlink()
        return len(stale)


def _parse(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k))
