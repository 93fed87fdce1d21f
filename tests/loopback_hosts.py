"""A loopback HTTP server standing in for the Hugging Face hub, Google Drive, Dropbox and GitHub.

Used by the first-run test (tests/test_e2e_first_run.py): every public host is a path prefix on one
server, ``http://127.0.0.1:PORT/<host>/<path>``, so the request log names the host each download
asked for. Files are built when a client first asks for them and served from disk (``sendfile``), so
gigabytes cost no memory.

* the hub (``/huggingface.co``, pointed at with ``HF_ENDPOINT``): ``HEAD``/``GET
  /{repo}/resolve/{revision}/{path}`` with the headers huggingface_hub reads (``X-Repo-Commit``,
  ``ETag``/``X-Linked-Etag``, ``Content-Length``), ``/api/models/{repo}[/revision/{rev}]`` (model info
  with its file list, which diffusers reads) and ``/api/models/{repo}/tree/{rev}`` (what
  ``snapshot_download`` lists); unknown repos and files answer 404 with the hub's error codes;
* Google Drive (``/drive.google.com/uc?id=``): small files come at once, large ones after Drive's
  virus-scan page whose form points at ``drive.usercontent.google.com/download`` (gdown follows it);
* any other host (Dropbox, GitHub releases, raw.githubusercontent.com, a personal site): plain files,
  behind the same 302 redirects to a download host as the real Dropbox and GitHub (:func:`redirect_of`).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HUB_HOST = "huggingface.co"
DRIVE_HOST = "drive.google.com"
DRIVE_CONTENT_HOST = "drive.usercontent.google.com"
DRIVE_HOSTS = (DRIVE_HOST, DRIVE_CONTENT_HOST)
DRIVE_CONFIRM_BYTES = 100 * 1024 * 1024  # above this Drive shows its "cannot scan for viruses" page first
HUB_COMMIT = "1f1ab5c0ffee0ddba11f00d5eed0facade1abe11"  # the one commit every fake repo is at


def loopback_url(url: str, base: str) -> str:
    """``https://host/path?query`` as the same request to the loopback server at ``base``."""
    parts = urllib.parse.urlsplit(url)
    local = f"{base}/{parts.hostname}{parts.path}"
    return f"{local}?{parts.query}" if parts.query else local


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def redirect_of(path: str) -> str:
    """Where the real host sends a download of ``/<host>/<path>`` ("" where it answers with the file itself).

    Dropbox's ``?dl=1`` links and GitHub's release assets answer 302 to a download host, and GitHub's
    ``/raw/`` links to raw.githubusercontent.com; the server does the same, on loopback.
    """
    host, _, rest = path.lstrip("/").partition("/")
    if host == "www.dropbox.com":
        return f"/dl.dropboxusercontent.com/{rest}"
    if host == "github.com" and "/releases/download/" in rest:
        return f"/objects.githubusercontent.com/{rest}"
    if host == "github.com" and "/raw/" in rest:
        return "/raw.githubusercontent.com/" + rest.replace("/raw/", "/", 1)
    return ""


@dataclass
class HubFile:
    """One file of a fake hub repo: where it lies here, its size and its sha256 (the LFS oid)."""

    path: Path
    size: int
    sha256: str

    @classmethod
    def of(cls, path: Path, sha256: str = "") -> HubFile:
        return cls(path, path.stat().st_size, sha256 or file_sha256(path))


FileProvider = Callable[[], Path]  # builds the file on first call (the server asks when a client does)
RepoProvider = Callable[[], dict[str, HubFile]]  # builds a repo's files: path in repo -> file


@dataclass
class LoopbackHosts:
    """The server's tables (what it serves, built on first request) and its log (what was asked, in order)."""

    files: dict[str, FileProvider] = field(default_factory=dict)  # "/<host>/<path>" -> file
    redirects: dict[str, str] = field(default_factory=dict)  # "/<host>/<path>" -> "/<download host>/<path>"
    hub: dict[str, list[RepoProvider]] = field(default_factory=dict)  # repo -> its files
    drive: dict[str, FileProvider] = field(default_factory=dict)  # Drive file id -> file
    requests: list[str] = field(default_factory=list)  # "GET /www.dropbox.com/s/..." in arrival order
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="loopback-hosts", daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def hub_endpoint(self) -> str:
        """What ``HF_ENDPOINT`` is set to."""
        return f"{self.base}/{HUB_HOST}"

    def serve_url(self, url: str, file: FileProvider) -> str:
        """Serve ``file`` where ``url`` points (behind the host's redirect, where it has one); its loopback URL."""
        local = loopback_url(url, self.base)
        path = urllib.parse.urlsplit(local).path
        final = redirect_of(path)
        if final:
            self.redirects[path] = final
        self.files[final or path] = file
        return local

    def serve_hub(self, repo: str, files: RepoProvider) -> None:
        self.hub.setdefault(repo, []).append(files)

    def serve_drive(self, file_id: str, file: FileProvider) -> None:
        self.drive[file_id] = file

    def repo_files(self, repo: str) -> dict[str, HubFile] | None:
        """The files of a fake hub repo (built now if they were not), or None for an unknown repo."""
        if repo not in self.hub:
            return None
        return {name: file for provider in self.hub[repo] for name, file in provider().items()}

    def log(self, line: str) -> None:
        with self._guard:
            self.requests.append(line)

    def start(self) -> LoopbackHosts:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler_for(hosts: LoopbackHosts) -> type[http.server.BaseHTTPRequestHandler]:
    """The request handler class bound to ``hosts``'s tables."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real hosts answer

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(head=True)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(head=False)

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, head: bool) -> None:
            hosts.log(f"{self.command} {self.path}")
            path, _, query = self.path.partition("?")
            path = urllib.parse.unquote(path)
            params = dict(urllib.parse.parse_qsl(query))
            host, _, rest = path.lstrip("/").partition("/")
            if host == HUB_HOST:
                return self._hub(rest, head)
            if host == DRIVE_HOST and rest == "uc" and params.get("id") in hosts.drive:
                return self._drive_first(params["id"], head)
            if host == DRIVE_CONTENT_HOST and rest == "download" and params.get("id") in hosts.drive:
                return self._file(hosts.drive[params["id"]](), head, attachment=True)
            if path in hosts.redirects:
                return self._redirect(hosts.base + hosts.redirects[path])
            if path in hosts.files:
                return self._file(hosts.files[path](), head)
            return self._error(404, "Not Found")

        # ------------------------------------------------------------------ Google Drive

        def _drive_first(self, file_id: str, head: bool) -> None:
            """Drive's answer to ``uc?id=``: the file, or (large files) the page with the download form."""
            file = hosts.drive[file_id]()
            if file.stat().st_size <= DRIVE_CONFIRM_BYTES:
                return self._file(file, head, attachment=True)
            form = (
                f'<form id="download-form" action="https://{DRIVE_CONTENT_HOST}/download" method="get">'
                f'<input type="hidden" name="id" value="{file_id}">'
                '<input type="hidden" name="export" value="download">'
                '<input type="hidden" name="confirm" value="t">'
                '<input type="hidden" name="uuid" value="0b5e9d1c-first-run"></form>'
            )
            page = ("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>"
                    f"<p>{file.name} is too large for Google Drive to scan for viruses.</p>{form}</body></html>")
            return self._bytes(page.encode(), head, "text/html; charset=utf-8")

        # ------------------------------------------------------------------ the hub

        def _hub(self, rest: str, head: bool) -> None:
            parts = rest.split("/")
            if parts[0] == "api" and len(parts) >= 4 and parts[1] == "models":
                return self._hub_api(f"{parts[2]}/{parts[3]}", parts[4:], head)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._hub_resolve(f"{parts[0]}/{parts[1]}", "/".join(parts[4:]), head)
            return self._error(404, "Not Found")

        def _hub_api(self, repo: str, tail: list[str], head: bool) -> None:
            files = hosts.repo_files(repo)
            if files is None:
                return self._error(404, "Repository not found", code="RepoNotFound")
            if tail[:1] == ["tree"]:
                tree = [{"type": "file", "oid": hashlib.sha1(f.sha256.encode()).hexdigest(), "size": f.size,
                         "path": name, "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": 134}}
                        for name, f in sorted(files.items())]
                return self._json(tree, head)
            siblings = [{"rfilename": name} for name in sorted(files)]
            info = {"_id": repo, "id": repo, "modelId": repo, "sha": HUB_COMMIT, "private": False,
                    "disabled": False, "gated": False, "tags": [], "siblings": siblings}
            return self._json(info, head)

        def _hub_resolve(self, repo: str, name: str, head: bool) -> None:
            files = hosts.repo_files(repo)
            if files is None:
                return self._error(404, "Repository not found", code="RepoNotFound")
            if name not in files:
                return self._error(404, "Entry not found", code="EntryNotFound", commit=True)
            file = files[name]
            extra = {"X-Repo-Commit": HUB_COMMIT, "ETag": f'"{file.sha256}"', "X-Linked-Etag": f'"{file.sha256}"',
                     "X-Linked-Size": str(file.size), "Accept-Ranges": "bytes"}
            return self._file(file.path, head, extra=extra)

        # ------------------------------------------------------------------ answers

        def _file(self, path: Path, head: bool, attachment: bool = False, extra: dict[str, str] | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            if attachment:
                self.send_header("Content-Disposition", f'attachment; filename="{path.name}"')
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if head:
                return
            try:
                with open(path, "rb") as fh:
                    self.connection.sendfile(fh)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _bytes(self, body: bytes, head: bool, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, obj: object, head: bool) -> None:
            self._bytes(json.dumps(obj).encode(), head, "application/json")

        def _error(self, status: int, message: str, code: str = "", commit: bool = False) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if code:
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
            if commit:
                self.send_header("X-Repo-Commit", HUB_COMMIT)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler
