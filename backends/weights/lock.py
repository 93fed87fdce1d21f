"""Verification: sha256 digests, the lock file of files accepted by their strict loader, structure checks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..checkpoints import safe_load
from ..errors import CheckpointError
from .entry import Checkpoint
from .registry import CLI, LOCK_NAME, cache_dir, get_entry, log


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the lock file

def lock_path() -> Path:
    """The lock file beside the download cache: sha256 of files first fetched without a known digest."""
    return cache_dir() / LOCK_NAME


def read_lock() -> dict[str, dict[str, Any]]:
    path = lock_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("ignoring unreadable lock file %s", path)
        return {}
    files = data.get("files", {}) if isinstance(data, dict) else {}
    return files if isinstance(files, dict) else {}


def _write_lock(key: str, record: dict[str, Any]) -> None:
    files = read_lock()
    files[key] = record
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version": 1, "files": files}, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def known_sha256(key: str, path: Path | None = None) -> tuple[str | None, str]:
    """The digest a file of ``key`` must have and where it comes from: ``registry``, ``lock`` or ``none``.

    A lock entry describes the very file Face Lab downloaded; with ``path`` given, it applies only there
    (a file the host put in the mirror is the host's choice).
    """
    entry = get_entry(key)
    if entry.sha256:
        return entry.sha256, "registry"
    record = read_lock().get(key)
    if not record or record.get("filename") != entry.filename or not record.get("sha256"):
        return None, "none"
    if path is not None and record.get("path") != str(path):
        return None, "none"
    return str(record["sha256"]), "lock"


def _check_digest(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise _SourceFailed(f"{what} (sha256 {actual[:12]}..., expected {expected[:12]}...)")


def check_structure(entry: Checkpoint, path: Path) -> None:
    """Raise CheckpointError unless ``path`` has the structure of ``entry`` (its strict loader reads it)."""
    with _readable_name(path, entry.filename) as readable:
        checker = entry.checker()
        if checker is None:
            _generic_check(entry, readable)
            return
        try:
            checker(readable)
        except CheckpointError:
            raise
        except Exception as exc:  # a loader tripping over an odd file is a structure error too
            raise CheckpointError(f"{type(exc).__name__}: {exc}") from exc


def _generic_check(entry: Checkpoint, path: Path) -> None:
    if path.suffix.lower() in {".pt", ".pth", ".tar", ".ckpt", ".bin", ".safetensors"}:
        obj = safe_load(path, what=entry.title)
        missing = [k for k in entry.expect_keys if not (isinstance(obj, dict) and k in obj)]
        if missing:
            found = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
            raise CheckpointError(f"it has no {', '.join(repr(k) for k in missing)} entry (found {found})")
    elif path.stat().st_size == 0:
        raise CheckpointError("the file is empty")


@contextlib.contextmanager
def _readable_name(path: Path, filename: str) -> Iterator[Path]:
    """Readers pick their format by suffix: show a ``.part`` file under its final suffix (a hard link)."""
    if path.suffix != ".part":
        yield path
        return
    name = Path(filename).name  # a registry file name may name a folder too (contraclip_attributes/...)
    alias = path.with_name(f"{name}.check{Path(name).suffix}")
    alias.unlink(missing_ok=True)
    try:
        os.link(path, alias)
    except OSError:
        shutil.copyfile(path, alias)
    try:
        yield alias
    finally:
        alias.unlink(missing_ok=True)


_HTML_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _refuse_html(path: Path) -> None:
    """A quota or error page saved instead of the file is refused, naming the page."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    start = head.lstrip()[:15].lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        match = _HTML_TITLE.search(head)
        title = match.group(1).decode("utf-8", "replace").strip() if match else ""
        raise _SourceFailed("an HTML page" + (f" titled '{title}'" if title else "") + " instead of the file")


_VERIFIED: dict[tuple[str, int, float], str] = {}


def _verified_sha(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a process hashes a big file once."""
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime)
    if memo not in _VERIFIED:
        _VERIFIED[memo] = sha256_of(path)
    return _VERIFIED[memo]


def check_file(key: str, path: Path) -> None:
    """Raise CheckpointError when ``path`` differs from the registry's or the lock file's sha256."""
    entry = get_entry(key)
    expected, origin = known_sha256(key, path)
    if expected and _verified_sha(path) != expected:
        recorded = "the lock file recorded at its first download" if origin == "lock" else "the registry's"
        raise CheckpointError(
            f"{path} does not match the sha256 of {entry.filename} ({recorded}): it is corrupt or a different "
            f"release. Delete it and run `{CLI} fetch {key}` again."
        )




class _SourceFailed(Exception):
    """A source did not give a usable file; ``answer`` says what it gave instead."""

    def __init__(self, answer: str):
        super().__init__(answer)
        self.answer = answer
