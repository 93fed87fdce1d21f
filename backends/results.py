"""Per-request result folders, kept private and short-lived.

Faces are personal data, so every file a request writes lives in its own folder under
:func:`results_root`, made ``0700`` with files ``0600`` (only the server's user can read them),
and is deleted:

- by age: the sweep removes folders older than ``RESULTS_TTL_SECONDS - SWEEP_SECONDS``; it runs at
  start-up, every :data:`SWEEP_SECONDS` on a background timer (:func:`start_sweeper`) and at every
  new request, so nothing outlives ``RESULTS_TTL_SECONDS`` (6 h);
- by size: when the folders together pass :func:`max_bytes` (``FACELAB_RESULTS_MAX_MB``), the
  oldest go first until they fit again;
- at shutdown: :func:`purge_all` (the app calls it on SIGTERM, SIGINT and at exit).

A folder is made only when a request has a result to write (:func:`results_dir`), never before
its input is checked, so a refused request leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger("facelab.results")

RESULTS_TTL_SECONDS = 6 * 3600  # the promise made in README and the UI: gone within 6 hours
SWEEP_SECONDS = 600  # the timer's period; folders are removed past TTL - SWEEP so the promise holds
DEFAULT_MAX_MB = 2048  # a busy Space writes ~1 GB per hour of reenactments; 2 GB caps the disk use
RESULTS_DIR_ENV = "FACELAB_RESULTS_DIR"
MAX_MB_ENV = "FACELAB_RESULTS_MAX_MB"

_sweeper: threading.Thread | None = None
_sweeper_stop = threading.Event()


def results_root() -> Path:
    """Where per-request result folders live: $FACELAB_RESULTS_DIR, else a folder in the system temp dir."""
    return Path(os.environ.get(RESULTS_DIR_ENV, Path(tempfile.gettempdir()) / "facelab_results"))


def max_bytes() -> int:
    """The size bound of all result folders together ($FACELAB_RESULTS_MAX_MB, default 2048 MB)."""
    return int(float(os.environ.get(MAX_MB_ENV, DEFAULT_MAX_MB)) * 2**20)


def deadline_seconds() -> float:
    """Age past which the sweep removes a folder, so that the timer's lag still keeps the TTL promise."""
    return max(0.0, RESULTS_TTL_SECONDS - SWEEP_SECONDS)


def results_dir(kind: str) -> Path:
    """A new private (0700) folder for one request's result files; sweeps old folders first.

    Call it only once the request has produced something to write; use :func:`seal` (or write
    through :func:`private_file`) so the files are 0600.
    """
    root = results_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    sweep()
    return Path(tempfile.mkdtemp(prefix=f"{kind}_", dir=root))  # mkdtemp makes it 0700


def seal(folder: Path) -> Path:
    """Make every file in ``folder`` 0600 and the folder 0700 (PIL and PyAV write with the umask)."""
    folder = Path(folder)
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(stat.S_IRUSR | stat.S_IWUSR)
        elif path.is_dir():
            path.chmod(stat.S_IRWXU)
    folder.chmod(stat.S_IRWXU)
    return folder


def _folders(root: Path) -> list[tuple[float, int, Path]]:
    """(mtime, bytes, path) of every result folder, oldest first."""
    found = []
    for folder in root.iterdir() if root.is_dir() else ():
        try:
            if not folder.is_dir():
                continue
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            found.append((folder.stat().st_mtime, size, folder))
        except OSError:
            continue  # removed by another request meanwhile
    return sorted(found)


def sweep(*, now: float | None = None, ttl: float | None = None, limit: int | None = None) -> list[Path]:
    """Remove folders past the age limit, then the oldest until all fit in the size limit; returns them."""
    now = time.time() if now is None else now
    ttl = deadline_seconds() if ttl is None else ttl
    limit = max_bytes() if limit is None else limit
    folders = _folders(results_root())
    total = sum(size for _, size, _ in folders)
    removed = []
    for mtime, size, folder in folders:
        if now - mtime > ttl or total > limit:
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            removed.append(folder)
    if removed:
        log.info("removed %d result folder(s); %.1f MB left", len(removed), total / 2**20)
    return removed


def purge_all() -> None:
    """Remove every result folder (at shutdown)."""
    root = results_root()
    for _, _, folder in _folders(root):
        shutil.rmtree(folder, ignore_errors=True)


def start_sweeper(period: float = SWEEP_SECONDS) -> threading.Thread:
    """Sweep on a timer in a daemon thread (once per process; later calls return the running one)."""
    global _sweeper
    if _sweeper is not None and _sweeper.is_alive():
        return _sweeper
    _sweeper_stop.clear()

    def loop() -> None:
        while True:  # first at start-up: what a killed server left behind goes as soon as it is due
            try:
                sweep()
            except Exception:  # a sweep must never stop the timer
                log.exception("result sweep failed")
            if _sweeper_stop.wait(period):
                return

    _sweeper = threading.Thread(target=loop, name="facelab-results-sweeper", daemon=True)
    _sweeper.start()
    return _sweeper


def stop_sweeper() -> None:
    _sweeper_stop.set()
