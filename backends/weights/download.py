"""Resolution and downloads: the local mirror, caches, the hub, then the authors' links, with progress."""

from __future__ import annotations

import contextlib
import datetime as _dt
import inspect
import os
import re
import shutil
import socket
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, MissingWeightsError
from ..standin import standin_enabled
from .entry import Checkpoint, Source
from .folders import check_folder, fetch_order, folder_record, folder_size, host_path, repo_path
from .lock import _check_digest, _refuse_html, _SourceFailed, _write_lock, check_structure, known_sha256, sha256_of
from .registry import CLI, HUB_REPO_ENV, TABS, WEIGHTS_DIR_ENV, cache_dir, get_entry, human_size, log, offline

# --------------------------------------------------------------------------- progress seam

@dataclass(frozen=True)
class DownloadProgress:
    """One progress event of a download; ``total`` is None when the source does not say."""

    key: str
    filename: str
    source: str
    stage: str  # "start", "bytes", "checking", "done", "failed"
    done: int = 0
    total: int | None = None
    message: str = ""

    def describe(self) -> str:
        of = f" of {human_size(self.total)}" if self.total else ""
        if self.stage == "bytes":
            return f"Downloading {self.filename}: {human_size(self.done)}{of}"
        if self.stage == "start":
            return f"Downloading {self.filename}{of} from {self.source}"
        if self.stage == "checking":
            return f"Checking {self.filename} ({human_size(self.done)})"
        if self.stage == "done":
            return f"{self.filename} ready ({human_size(self.done)})"
        return f"{self.filename}: {self.message}"

    @property
    def fraction(self) -> float | None:
        if self.stage == "done":
            return 1.0
        return min(self.done / self.total, 1.0) if self.total else None


ProgressCallback = Callable[[DownloadProgress], None]
_REPORTER: ContextVar[ProgressCallback | None] = ContextVar("facelab_download_reporter", default=None)


@contextlib.contextmanager
def report_downloads(callback: ProgressCallback | None) -> Iterator[None]:
    """Send the progress of every download started inside the block to ``callback``.

    The UI bridges this to ``gr.Progress`` (demos/common.py); the CLI prints it. A context
    variable keeps it per request: loaders deep inside a backend need no extra argument.
    """
    token = _REPORTER.set(callback)
    try:
        yield
    finally:
        _REPORTER.reset(token)


class _Reporter:
    """Throttled fan-out of one download's events to the active callback and the stderr printer."""

    def __init__(self, entry: Checkpoint, callback: ProgressCallback | None, printer: bool):
        self.entry = entry
        self.callbacks = [c for c in (callback, _REPORTER.get(), _print_progress if printer else None) if c]
        self.source = ""
        self.filename = entry.filename  # a folder's download names the file it is at
        self._last = 0.0

    def emit(self, stage: str, done: int = 0, total: int | None = None, message: str = "") -> None:
        now = time.monotonic()
        if stage == "bytes" and now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        event = DownloadProgress(self.entry.key, self.filename, self.source, stage, done, total, message)
        for callback in self.callbacks:
            callback(event)


def _print_progress(event: DownloadProgress) -> None:
    if event.stage == "failed":  # the fetch table gives a reason per file; the log (--verbose) each answer
        return
    end = "" if event.stage == "bytes" else "\n"
    prefix = "\r" if event.stage in {"bytes", "checking", "done"} else ""
    print(f"{prefix}{event.describe()}".ljust(70), end=end, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- resolution

# Files small and freely licensed enough to ship with the code (see assets/LICENSES.md).
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "assets" / "weights"


def _host_repo() -> str:
    return os.environ.get(HUB_REPO_ENV, "").strip()


def _hub_sources(entry: Checkpoint) -> list[Source]:
    """Hub sources in the order tried: the host's own mirror repo first, when configured."""
    sources = [s for s in entry.sources if s.hub_repo]
    host_repo = _host_repo()
    if host_repo:
        sources.insert(0, Source(hub_repo=host_repo, hub_path=host_path(entry), verified=True,
                                 origin=f"${HUB_REPO_ENV}"))
    return sources


def download_sources(entry: Checkpoint) -> list[Source]:
    """Every source a download tries, in order: $FACELAB_HUB_REPO, public hub mirrors, the authors' links."""
    return _hub_sources(entry) + [s for s in entry.sources if s.kind in {"gdrive", "url"}]


def find_local(key: str) -> Path | None:
    """The file for ``key`` if it is already on disk (mirror, HF cache or download cache); never downloads."""
    entry = get_entry(key)
    mirror = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    if mirror:
        for candidate in (Path(mirror) / entry.filename, Path(mirror) / key / entry.filename):
            if candidate.is_file():
                return candidate
    bundled = BUNDLED_DIR / entry.filename
    if bundled.is_file():  # small files shipped in the repository (YuNet), so a clean clone works offline
        return bundled
    for source in _hub_sources(entry):
        cached = _hub_cached(source)
        if cached is not None and _complete(entry, cached):
            return cached
    url_cached = cache_dir() / entry.filename
    if url_cached.is_file():
        return url_cached
    return None


def _complete(entry: Checkpoint, index: Path) -> bool:
    """True unless ``entry`` is a folder missing some of its files beside ``index`` (a lone preloaded index)."""
    return all((index.parent / name).is_file() for name in entry.folder_files)


def _hub_cached(source: Source) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a requirement
        return None
    hit = try_to_load_from_cache(source.hub_repo, source.hub_path, revision=source.revision)
    return Path(hit) if isinstance(hit, str) and Path(hit).is_file() else None


@dataclass
class FetchResult:
    """What fetching one key did: for the summary table and the UI."""

    key: str
    status: str  # "present", "downloaded", "failed", "host supplies", "offline"
    path: Path | None = None
    source: str = ""
    size: int | None = None
    sha256: str = ""
    seconds: float = 0.0
    message: str = ""
    attempts: list[str] = field(default_factory=list)
    reason: str = ""  # a few words for the fetch table: why it is not here


def weights_path(
    key: str, *, download: bool = True, progress: bool = True, on_progress: ProgressCallback | None = None
) -> Path:
    """A local path for ``key``, downloading it if allowed; raises MissingWeightsError listing what was tried."""
    result = fetch(key, download=download, progress=progress, on_progress=on_progress)
    if result.path is None:
        raise MissingWeightsError(result.message, key=key, filename=get_entry(key).filename)
    return result.path


def fetch(
    key: str, *, download: bool = True, progress: bool = True, on_progress: ProgressCallback | None = None
) -> FetchResult:
    """Find ``key`` on disk or download it through its sources in order; never raises for a failed source."""
    entry = get_entry(key)
    local = find_local(key)
    if local is not None:
        return _present(key, local)
    if not download:
        return FetchResult(key, "missing", message=missing_message(entry), reason="not on this machine")
    if offline():
        reason = "Downloads are off (HF_HUB_OFFLINE=1). No source was tried; unset HF_HUB_OFFLINE to download."
        return FetchResult(key, "offline", message=missing_message(entry, reason),
                           reason="downloads are off (HF_HUB_OFFLINE=1)")
    sources = download_sources(entry)
    if not sources:
        return FetchResult(key, "host supplies", message=missing_message(entry),
                           reason="no public source: put it in $" + WEIGHTS_DIR_ENV)
    with _key_lock(key):  # two requests for the same file: the second waits and finds it on disk
        local = find_local(key)
        if local is not None:
            return _present(key, local)
        return _download_first_good(entry, sources, _Reporter(entry, on_progress, progress))


def _present(key: str, path: Path) -> FetchResult:
    digest, _ = known_sha256(key, path)  # the digest it must have; `verify` hashes the file
    return FetchResult(key, "present", path, _where(path), _stored_size(key, path), digest or "")


def _stored_size(key: str, path: Path) -> int:
    """The bytes ``key`` takes on disk: the whole folder for a folder entry."""
    return folder_size(key, path) if get_entry(key).is_folder else path.stat().st_size


_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


def _key_lock(key: str) -> threading.Lock:
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def _download_first_good(entry: Checkpoint, sources: list[Source], reporter: _Reporter) -> FetchResult:
    key = entry.key
    attempts: list[str] = []
    answers: list[str] = []
    started = time.monotonic()
    for index, source in enumerate(sources):
        reporter.source = source.location()
        try:
            path = _fetch_from(entry, source, reporter)
        except _SourceFailed as exc:
            following = sources[index + 1].location() if index + 1 < len(sources) else ""
            line = f"{source.location()} answered {exc.answer}"
            line += f"; next: {following}" if following else "; no source left"
            attempts.append(line)
            answers.append(exc.answer)
            log.warning("%s: %s", entry.filename, line)
            reporter.emit("failed", message=line)
            continue
        digest, _ = known_sha256(key)
        size = _stored_size(key, path)
        reporter.emit("done", size, size)
        return FetchResult(key, "downloaded", path, source.location(), size, digest or "",
                           time.monotonic() - started, attempts=attempts)
    tried = " ".join(f"({n}) {a}." for n, a in enumerate(attempts, 1))
    message = missing_message(entry, f"Every source failed, in the order tried: {tried}", tried=True)
    return FetchResult(key, "failed", seconds=time.monotonic() - started, message=message, attempts=attempts,
                       reason=_failure_reason(answers))


def _failure_reason(answers: Sequence[str]) -> str:
    """Why every source failed, in a few words (the message has each answer)."""
    unreached = [a for a in answers if a.startswith("nothing (") and ("cannot be found" in a or "connections" in a)]
    if answers and len(unreached) == len(answers):
        return "no source host reachable (offline?)"
    last = answers[-1] if answers else "no source"
    reason = f"{len(answers)} source(s) failed; last: {last}"
    return reason if len(reason) <= 90 else reason[:89] + "…"


def _where(path: Path) -> str:
    mirror = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    if mirror and Path(mirror) in path.parents:
        return f"${WEIGHTS_DIR_ENV}"
    if BUNDLED_DIR in path.parents:
        return "bundled"
    if cache_dir() in path.parents:
        return "download cache"
    return "hub cache"


# --------------------------------------------------------------------------- is the host there at all?

PROBE_SECONDS = 3.0  # a name lookup or a connection slower than this counts as unreachable
PROBE_TTL_SECONDS = 300.0  # a verdict is reused this long: one probe per host, not one per file
_PROBES: dict[tuple[str, int], tuple[float, str]] = {}
_PROBES_GUARD = threading.Lock()


def source_host(source: Source) -> tuple[str, int]:
    """The host and port a download from ``source`` connects to first."""
    if source.kind == "hub":
        from huggingface_hub import constants

        url = os.environ.get("HF_ENDPOINT", "").strip() or constants.ENDPOINT
    elif source.kind == "gdrive":
        url = "https://drive.google.com"
    else:
        url = source.url
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "", parts.port or (80 if parts.scheme == "http" else 443)


def _probe(host: str, port: int) -> str:
    """"" when a TCP connection to ``host:port`` opens within PROBE_SECONDS, else why not, in words.

    The name lookup runs in a thread because ``getaddrinfo`` has no timeout of its own; without this
    check the hub client retries an unreachable host five times (about 24 s) before the next source.
    """
    found: dict[str, Any] = {}

    def resolve() -> None:
        try:
            found["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            found["addresses"] = []

    lookup = threading.Thread(target=resolve, daemon=True, name=f"probe-{host}")
    lookup.start()
    lookup.join(PROBE_SECONDS)
    if not found.get("addresses"):
        return f"{host} cannot be found (no network, or no DNS)"
    for family, kind, proto, _, address in found["addresses"]:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(PROBE_SECONDS)
                sock.connect(address)
                return ""
        except OSError:
            continue
    return f"{host} does not accept connections"


def unreachable(host: str, port: int = 443) -> str:
    """Why ``host`` cannot be reached ("" when it can); probed once and remembered for a few minutes."""
    now = time.monotonic()
    with _PROBES_GUARD:
        seen = _PROBES.get((host, port))
    if seen is not None and now - seen[0] < PROBE_TTL_SECONDS:
        return seen[1]
    verdict = _probe(host, port)
    with _PROBES_GUARD:
        _PROBES[(host, port)] = (now, verdict)
    return verdict


def forget_probes() -> None:
    """Probe every host afresh next time (the network came back; tests)."""
    with _PROBES_GUARD:
        _PROBES.clear()


_CLASS_NAME = re.compile(r"\b(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exceeded|Warning)\b:?\s*")


def plain_words(text: str) -> str:
    """``text`` without exception class names (``urllib3.exceptions.NameResolutionError:`` and the like)."""
    text = text.split(" (Caused by ")[0]
    text = re.sub(r"\w*ConnectionPool\([^)]*\):\s*", "", text)
    return " ".join(_CLASS_NAME.sub("", text).split()).strip(" :;,") or "an error"


# --------------------------------------------------------------------------- one source


def _fetch_from(entry: Checkpoint, source: Source, reporter: _Reporter) -> Path:
    host, port = source_host(source)
    why = unreachable(host, port) if host else ""
    if why:
        raise _SourceFailed(f"nothing ({why})")
    if source.kind == "hub":
        return _fetch_hub_folder(entry, source, reporter) if entry.is_folder else _fetch_hub(entry, source, reporter)
    if entry.is_folder:
        raise _SourceFailed("nothing: a folder comes from a hub repo only")
    target = cache_dir() / entry.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    download = target.with_name(target.name + ".archive.part") if source.member else part
    try:
        if source.kind == "gdrive":
            _download_gdrive(source.gdrive_id, download, reporter)
        else:
            _download_url(source.url, download, reporter)
        _refuse_html(download)
        if source.member:
            if source.archive_sha256:
                _check_digest(download, source.archive_sha256, "an archive")
            _extract_member(download, source.member, part)
            download.unlink(missing_ok=True)
        _accept(entry, part, source, reporter, final=target)
    except BaseException:
        part.unlink(missing_ok=True)
        download.unlink(missing_ok=True)
        raise
    part.replace(target)
    return target


def _accept(entry: Checkpoint, path: Path, source: Source, reporter: _Reporter, *, final: Path) -> None:
    """Check a finished download before it takes its final name ``final``; record its digest when none was known."""
    reporter.emit("checking", path.stat().st_size)
    expected, origin = known_sha256(entry.key)
    if expected:
        _check_digest(path, expected, f"a file whose sha256 is not the {origin}'s")
        return
    try:
        check_structure(entry, path)
    except CheckpointError as exc:
        raise _SourceFailed(f"a file that is not {entry.title} ({exc})") from None
    _write_lock(entry.key, {
        "filename": entry.filename,
        "sha256": sha256_of(path),
        "size": path.stat().st_size,
        "source": source.location(),
        "origin": source.origin,
        "path": str(final),
        "recorded": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    })


def _extract_member(archive: Path, member: str, out: Path) -> None:
    """Copy one file out of a tar or zip archive (matched by its path, or the end of its path)."""
    def matches(name: str) -> bool:
        name = name.lstrip("./")
        return name == member or name.endswith("/" + member)

    with open(archive, "rb") as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"  # not zipfile.is_zipfile: a tar ending in a .pth (a zip) passes it
    if is_zip:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if matches(n)]
            if not names:
                raise _SourceFailed(f"an archive without {member}")
            with zf.open(names[0]) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return
    try:
        with tarfile.open(archive) as tf:
            for info in tf:
                if info.isfile() and matches(info.name):
                    src = tf.extractfile(info)
                    assert src is not None
                    with src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    return
    except tarfile.TarError as exc:
        raise _SourceFailed(f"a file that is not a readable archive ({exc})") from None
    raise _SourceFailed(f"an archive without {member}")


def _download_url(url: str, part: Path, reporter: _Reporter) -> None:
    """Plain HTTPS download into ``part`` with progress; short bodies are refused."""
    request = urllib.request.Request(url, headers={"User-Agent": "facelab-weights/1"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(part, "wb") as out:  # noqa: S310
            total = int(response.headers.get("Content-Length") or 0) or None
            reporter.emit("start", 0, total)
            done = 0
            while block := response.read1(1 << 20):  # read1: whatever has arrived, so progress moves
                out.write(block)
                done += len(block)
                reporter.emit("bytes", done, total)
    except urllib.error.HTTPError as exc:
        raise _SourceFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _SourceFailed(f"nothing (cannot connect: {exc.reason})") from None
    except (OSError, ValueError) as exc:  # IncompleteRead, resets, timeouts
        raise _SourceFailed(f"a cut-off transfer ({plain_words(str(exc)) or 'connection lost'})") from None
    if total is not None and done != total:
        raise _SourceFailed(f"a truncated file ({done} of {total} bytes)")


def _download_gdrive(file_id: str, part: Path, reporter: _Reporter) -> None:
    """A Google Drive file through gdown, which handles the confirm token and reports quota pages."""
    try:
        import gdown
    except ImportError:
        raise _SourceFailed("nothing: the gdown package is not installed (pip install -r requirements.txt)") from None
    reporter.emit("start")

    def on_bytes(done: int, total: int | None) -> None:
        reporter.emit("bytes", done, total)

    options: dict[str, Any] = {"quiet": True, "use_cookies": False}
    accepted = inspect.signature(gdown.download).parameters
    if "progress" in accepted:  # gdown >= 6 reports bytes; older releases only print
        options["progress"] = on_bytes
    if "timeout" in accepted:
        options["timeout"] = 60
    try:
        result = gdown.download(id=file_id, output=str(part), **options)
    except Exception as exc:  # gdown raises FileURLRetrievalError (quota, private), DownloadError, requests errors
        for stray in part.parent.glob(f"{part.name}?*.part"):  # gdown's own partial file, kept for resuming
            stray.unlink(missing_ok=True)
        raise _SourceFailed(plain_words(_gdown_reason(exc))) from None
    if result is None or not part.is_file():
        raise _SourceFailed("no file")


def _gdown_reason(exc: BaseException) -> str:
    """gdown wraps Drive's own words (e.g. the quota notice) in advice about browsers: keep Drive's words."""
    text = " ".join(str(exc).split())
    text = text.split(" You may still be able")[0].removeprefix("Failed to retrieve file url: ")
    text = text.split(" The received bytes are kept")[0]  # Face Lab removes them: a retry starts afresh
    return text[:300].rstrip(".") or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


_HUB_ANSWERS = {
    "EntryNotFoundError": "no such file (HTTP 404)",
    "RemoteEntryNotFoundError": "no such file (HTTP 404)",
    "RepositoryNotFoundError": "no such repository, or a private one (set HF_TOKEN)",
    "RevisionNotFoundError": "no such revision",
    "GatedRepoError": "a gated repository (accept its terms on the hub, then set HF_TOKEN)",
    "LocalEntryNotFoundError": "nothing (the hub could not be reached)",
    "OfflineModeIsEnabled": "nothing (downloads are off)",
}


def _hub_answer(exc: BaseException) -> str:
    """What the hub answered, in words: huggingface_hub's exception names mean nothing to a reader."""
    for kind in type(exc).__mro__:
        if kind.__name__ in _HUB_ANSWERS:
            return _HUB_ANSWERS[kind.__name__]
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return f"HTTP {status}"
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return "nothing (the connection failed)"
    return plain_words(_first_line(exc))


def _fetch_hub(entry: Checkpoint, source: Source, reporter: _Reporter) -> Path:
    """A hub file into the Hugging Face cache (huggingface_hub writes ``.incomplete`` files and checks LFS sha256)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a requirement
        raise _SourceFailed("nothing: huggingface_hub is not installed") from None
    try:
        path = Path(hf_hub_download(source.hub_repo, source.hub_path, revision=source.revision,
                                    tqdm_class=_tqdm_bridge(reporter)))
    except Exception as exc:  # EntryNotFound, RepositoryNotFound, GatedRepo, HTTP and connection errors
        raise _SourceFailed(_hub_answer(exc)) from None
    try:
        _accept(entry, path, source, reporter, final=path)
    except _SourceFailed:
        _drop_hub_file(path)
        raise
    return path


def _hub_download(repo: str, path: str, revision: str, tqdm_class: Any) -> Path:
    """One hub file into the Hugging Face cache (the seam the folder download goes through)."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo, path, revision=revision, tqdm_class=tqdm_class))


def _fetch_hub_folder(entry: Checkpoint, source: Source, reporter: _Reporter) -> Path:
    """A folder entry's files from one hub source, one by one (the index last), then checked and locked.

    Only ``entry.folder_files`` are fetched, each with its bytes reported under its own name; the first
    file the source lacks moves on to the next source. The index file is removed again when the check
    fails, so a half or bad folder is never found as present. Returns the index file's path.
    """
    fetched: dict[str, Path] = {}
    for name in fetch_order(entry):
        reporter.filename = name
        try:
            fetched[name] = _hub_download(source.hub_repo, repo_path(source, name), source.revision,
                                          _tqdm_bridge(reporter))
        except Exception as exc:  # EntryNotFound, RepositoryNotFound, GatedRepo, HTTP and connection errors
            raise _SourceFailed(f"{_hub_answer(exc)} for {repo_path(source, name)}") from None
        finally:
            reporter.filename = entry.filename
    index = fetched[entry.filename]
    reporter.emit("checking", sum(p.stat().st_size for p in fetched.values()))
    try:
        check_folder(index.parent)
    except CheckpointError as exc:
        _drop_hub_file(index)
        raise _SourceFailed(f"a folder that is not {entry.title} ({exc})") from None
    sizes = {name: path.stat().st_size for name, path in fetched.items()}
    _write_lock(entry.key, {
        "filename": entry.filename,
        "sha256": sha256_of(index),
        "size": sum(sizes.values()),
        "files": folder_record(index.parent, sizes),
        "source": source.location(),
        "origin": source.origin,
        "path": str(index),
        "recorded": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    })
    return index


def _drop_hub_file(path: Path) -> None:
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def _tqdm_bridge(reporter: _Reporter) -> Any:
    from tqdm import tqdm

    class Bridge(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            reporter.emit("start", 0, self.total)

        def update(self, n: float | None = 1) -> bool | None:
            self.n += n or 0
            reporter.emit("bytes", int(self.n), int(self.total) if self.total else None)
            return None

    return Bridge


def fetch_many(keys: Sequence[str], *, progress: bool = True) -> list[FetchResult]:
    """Fetch several keys one after another (a failure does not stop the others)."""
    return [fetch(key, progress=progress) for key in keys]


def fix_command(entry: Checkpoint) -> str:
    """The command that fetches ``entry`` (and, where it serves a tab, the one for the whole tab)."""
    command = f"`{CLI} fetch {entry.key}`"
    tab = next((t for t in entry.tabs if t in TABS), None)
    return command + (f" (or `{CLI} fetch --tab {tab}` for the whole tab)" if tab else "")


def _tab_words(tabs: Sequence[str]) -> str:
    """("reenactment", "latent_paths") -> "the reenactment and latent paths tabs"; ("all",) -> "every face tab"."""
    if "all" in tabs:
        return "every tab that finds faces"
    names = [t.replace("_", " ") for t in tabs]
    if len(names) == 1:
        return f"the {names[0]} tab"
    return f"the {', '.join(names[:-1])} and {names[-1]} tabs"


STANDIN_HINT = "To try the app without weights, start it with --stand-in-weights (outputs are not results)."


def missing_message(entry: Checkpoint, reason: str = "", *, tried: bool = False) -> str:
    """The full account of a missing checkpoint, for the host (CLI, log, the UI's collapsed detail).

    The file and the tabs that need it, why it is missing (``reason``), the sources in order unless
    ``reason`` already lists what each answered (``tried``), the command that fixes it, and the
    stand-in hint only when stand-ins are off. The visitor sees :func:`visitor_message` instead.
    """
    parts = [f"Missing weights: {entry.filename} ({entry.title}), needed by {_tab_words(entry.tabs)}."]
    if reason:
        parts.append(reason)
    if not entry.downloadable() and not _host_repo():
        where = "; ".join(s.describe() for s in entry.sources) or "no public source"
        parts.append(
            f"This file has no public source Face Lab can download from ({where}). Get it yourself, then put it "
            f"in ${WEIGHTS_DIR_ENV} or upload it to your own Hugging Face repo and set ${HUB_REPO_ENV} to that repo."
        )
    else:
        parts.append(f"Run {fix_command(entry)}, or put the file in ${WEIGHTS_DIR_ENV}.")
        if not tried:
            parts.append(f"Sources, in order: {'; '.join(s.describe() for s in download_sources(entry))}.")
    if entry.how_to_get:
        parts.append(entry.how_to_get)
    if not standin_enabled():
        parts.append(STANDIN_HINT)
    return " ".join(parts)


def model_name(entry: Checkpoint) -> str:
    """What a visitor calls the network: the entry's title without its parenthesised particulars."""
    return entry.name or entry.title.split(" (")[0]


def visitor_message(entry: Checkpoint) -> str:
    """One sentence for a visitor of the Space; the sources and commands are for the host (the detail)."""
    if entry.downloadable() or _host_repo():
        return f"This Space is missing the {model_name(entry)}; the owner can fetch it with one command."
    return f"This Space is missing the {model_name(entry)}; the owner has to supply it (no public download)."


def entry_of_error(key: str = "", filename: str = "", message: str = "") -> Checkpoint | None:
    """The registry entry a :class:`MissingWeightsError` is about: by key, by file name, or by its first words."""
    from . import registry

    if key in registry.REGISTRY:
        return registry.REGISTRY[key]
    for entry in registry.REGISTRY.values():
        if filename and entry.filename == filename:
            return entry
    for entry in registry.REGISTRY.values():
        if message.startswith(f"Missing weights: {entry.filename} "):
            return entry
    return None
