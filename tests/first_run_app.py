"""Test-only launcher: ``app.py``'s real ``main`` with the registry's hosts on a loopback server.

Run as ``python -m tests.first_run_app [app.py flags]`` (or ``... weights fetch KEY`` for the weights CLI),
with ``FACELAB_FIRST_RUN_MANIFEST`` naming a JSON file written by the first-run test: the loopback
server's address and the digests of the files it serves.

Before the app starts, three things change, and nothing else:

* the registry's plain URLs (Dropbox, GitHub, a personal site) point at the same path under the loopback
  server, ``http://127.0.0.1:PORT/<host>/<path>``; hub sources stay as they are (``HF_ENDPOINT`` points
  the hub client at the server) and Drive sources keep their file ids;
* the digest values (a file's ``sha256``, an archive's ``archive_sha256``) become those of the served
  stand-in bytes, so the same checking code runs on them;
* the network: host names resolve only to the loopback address (Google Drive's two hosts resolve to the
  server, so the app's reachability probe finds Drive there), connections anywhere else are refused, and
  requests' transport sends gdown's Drive requests to the server over plain HTTP (the one seam: gdown
  builds ``https://drive.google.com/uc?id=...`` itself, and there is no certificate for it here).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import socket
import sys
import urllib.parse
from pathlib import Path
from typing import Any

MANIFEST_ENV = "FACELAB_FIRST_RUN_MANIFEST"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""}


def read_manifest() -> dict[str, Any]:
    """The test's manifest: ``base`` (server URL), ``port``, ``sha256`` and ``archive_sha256`` per key."""
    return json.loads(Path(os.environ[MANIFEST_ENV]).read_text())


def point_registry_at(manifest: dict[str, Any]) -> None:
    """Rewrite every entry's URLs to the loopback server and its digests to the served files' (only those)."""
    from backends.weights import REGISTRY

    for key, entry in list(REGISTRY.items()):
        sources = tuple(_pointed(source, manifest, key) for source in entry.sources)
        sha256 = manifest["sha256"].get(key, entry.sha256) if entry.sha256 else None
        REGISTRY[key] = dataclasses.replace(entry, sources=sources, sha256=sha256)


def _pointed(source: Any, manifest: dict[str, Any], key: str) -> Any:
    """``source`` as served: a plain URL moves to the loopback server, its archive digest to the served one's."""
    from tests.loopback_hosts import loopback_url

    if source.kind != "url":
        return source
    changes = {"url": loopback_url(source.url, manifest["base"])}
    served = manifest["archive_sha256"].get(key)
    if source.archive_sha256 and served and served["url"] == source.url:
        changes["archive_sha256"] = served["sha256"]
    return dataclasses.replace(source, **changes)


def confine_network(port: int, routed: tuple[str, ...]) -> None:
    """Resolve ``routed`` host names to the loopback server, no other public name, and connect nowhere else."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if name in routed:
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        if name not in LOOPBACK_NAMES and not _is_loopback(name):
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: the first-run test resolves loopback names only")
        return real_getaddrinfo(host, service, *args, **kwargs)

    def refuse_outside(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(str(address[0])):
            raise ConnectionRefusedError(f"the first-run test connects to loopback only, not {address[0]}")

    def connect(self: socket.socket, address: Any) -> None:
        refuse_outside(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        refuse_outside(address)
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback or name in {"0.0.0.0", "::"}
    except ValueError:
        return name in LOOPBACK_NAMES


def route_drive_through(base: str, hosts: tuple[str, ...]) -> None:
    """requests' transport sends gdown's requests for the Drive hosts to ``base/<host>/<path>`` over HTTP."""
    import requests.adapters

    original = requests.adapters.HTTPAdapter.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        parts = urllib.parse.urlsplit(request.url)
        if parts.hostname in hosts:
            request.url = f"{base}/{parts.hostname}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        return original(self, request, **kwargs)

    requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    """Point the registry and the network at the loopback server, then run the app's own ``main``.

    ``weights ARGS...`` runs the weight manager's CLI instead (``python -m backends.weights ARGS...``), as the
    host of a Space runs it next to the app.
    """
    from tests.loopback_hosts import DRIVE_HOSTS

    args = sys.argv[1:] if argv is None else argv
    manifest = read_manifest()
    confine_network(manifest["port"], DRIVE_HOSTS)
    route_drive_through(manifest["base"], DRIVE_HOSTS)
    point_registry_at(manifest)
    if args[:1] == ["weights"]:
        from backends.weights import main as weights_main

        return weights_main(args[1:])
    import app

    app.main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
