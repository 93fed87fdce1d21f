"""The weight manager: one registry entry per checkpoint, resolution, download, verification.

Sources are tried in this order for a checkpoint file:
    1. ``$FACELAB_WEIGHTS_DIR/<filename>`` (or ``$FACELAB_WEIGHTS_DIR/<key>/<filename>``), a local mirror,
       then ``assets/weights/`` (files shipped with the code: the YuNet detector);
    2. what is already cached: the Hugging Face cache (``$FACELAB_HUB_REPO`` first, then the public
       hub repos) and Face Lab's own download cache (``$FACELAB_CACHE_DIR``);
    3. downloads, unless ``HF_HUB_OFFLINE=1``: ``$FACELAB_HUB_REPO``, then the public hub mirrors,
       then the authors' own links (Google Drive through ``gdown``, Dropbox and GitHub releases
       through plain HTTPS), in the order the registry lists them.

Every download lands in a ``.part`` file. It takes its final name only after it passed a check:
its sha256 where the registry knows one; otherwise the strict loader of that checkpoint reads it,
and its sha256 is written to the lock file (``weights.lock.json`` beside the download cache) so that
later reads and ``verify`` can tell whether it changed. An HTML page (a quota or error page) is never
renamed into place: the error names what each source answered and which source was tried next.

With stand-in weights on (``FACELAB_STAND_IN=1`` or ``app.py --stand-in-weights``) every key
resolves to deterministic seeded tensors in the official checkpoint structure instead.

CLI: ``python -m backends.weights list | fetch KEY... | fetch --tab TAB | fetch --all | verify | tabs | preload``.

Modules:

* :mod:`.entry`: what is recorded per checkpoint (:class:`Source`, :class:`Checkpoint`);
* :mod:`.data`: the records, one module per tab (``shared`` for files several tabs use);
* :mod:`.registry`: the assembled ``REGISTRY``, tabs, the cache folder;
* :mod:`.download`: resolution (mirror, caches), downloads with progress, the missing-file message;
* :mod:`.lock`: sha256, the lock file, structure checks; :mod:`.checks`: the strict loaders per key;
* :mod:`.folders`: checkpoints that are a folder (SD-Turbo's diffusers pipeline): the files fetched, the folder
  check, the lock record of every file (sha256, size) that ``verify`` reads;
* :mod:`.load`: :func:`load_checkpoint` by key, or its stand-in;
* :mod:`.report`: tables for the Models tab and the CLI, and ``verify``;
* :mod:`.cli`: ``python -m backends.weights``.
"""

from __future__ import annotations

from .cli import main
from .download import (
    BUNDLED_DIR,
    DownloadProgress,
    FetchResult,
    ProgressCallback,
    download_sources,
    entry_of_error,
    fetch,
    fetch_many,
    find_local,
    fix_command,
    forget_probes,
    missing_message,
    model_name,
    report_downloads,
    unreachable,
    visitor_message,
    weights_path,
)
from .entry import Checkpoint, Source
from .load import Loaded, load_checkpoint
from .lock import check_file, check_structure, known_sha256, lock_path, read_lock, sha256_of
from .registry import (
    CACHE_DIR_ENV,
    CLI,
    HUB_REPO_ENV,
    LOCK_NAME,
    REGISTRY,
    TABS,
    WEIGHTS_DIR_ENV,
    cache_dir,
    get_entry,
    human_size,
    keys_for_tab,
    offline,
)
from .report import preload_lines, status_of, summary_rows, tab_rows, table_rows, verify

__all__ = [
    "BUNDLED_DIR",
    "CACHE_DIR_ENV",
    "CLI",
    "Checkpoint",
    "DownloadProgress",
    "FetchResult",
    "HUB_REPO_ENV",
    "LOCK_NAME",
    "Loaded",
    "ProgressCallback",
    "REGISTRY",
    "Source",
    "TABS",
    "WEIGHTS_DIR_ENV",
    "cache_dir",
    "check_file",
    "check_structure",
    "download_sources",
    "entry_of_error",
    "fetch",
    "fetch_many",
    "find_local",
    "fix_command",
    "forget_probes",
    "get_entry",
    "human_size",
    "keys_for_tab",
    "known_sha256",
    "load_checkpoint",
    "lock_path",
    "main",
    "missing_message",
    "model_name",
    "offline",
    "preload_lines",
    "read_lock",
    "report_downloads",
    "sha256_of",
    "status_of",
    "summary_rows",
    "tab_rows",
    "table_rows",
    "unreachable",
    "verify",
    "visitor_message",
    "weights_path",
]
