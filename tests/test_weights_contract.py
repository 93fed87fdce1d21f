"""Weights through the app, as a user meets them: first-use download with progress, failures, the per-tab table.

The app runs in-process; its sources are pointed at a loopback server (no test reaches the internet).
"""

from __future__ import annotations

import dataclasses
import re
import shutil

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from backends import weights
from backends.weights import REGISTRY, Source
from tests.app_server import running_app
from tests.test_weights import QUOTA_PAGE, LoopbackServer


@pytest.fixture(scope="module")
def client():
    with running_app() as url:
        yield Client(url, verbose=False)


@pytest.fixture
def server():
    srv = LoopbackServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def online(monkeypatch, tmp_path, shared_weights):
    """Downloads on, an empty download cache, a mirror holding only YuNet (the face detector)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(shared_weights / "face_detection_yunet_2026may.onnx", mirror)
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(mirror))
    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FACELAB_HUB_REPO", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    return tmp_path


@pytest.fixture
def astronaut_png(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    path = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


def test_first_use_downloads_with_progress(client, online, server, shared_weights, astronaut_png, monkeypatch):
    """The expression tab's first photo fetches the baseline's weights; the handler reports the download."""
    from backends import expression as dfer_clip

    server.files["/mini_xception.hdf5"] = (shared_weights / "fer2013_mini_xception.hdf5").read_bytes()
    entry = REGISTRY["fer_mini_xception"]
    url = server.url("/mini_xception.hdf5")
    monkeypatch.setitem(REGISTRY, entry.key, dataclasses.replace(entry, sources=(Source(url=url),)))
    seen: list[weights.DownloadProgress] = []
    bridge = weights.report_downloads

    def recording(callback):
        def both(event):
            seen.append(event)
            callback(event)  # the gr.Progress bridge of demos/common.py, inside a real request

        return bridge(both)

    monkeypatch.setattr(weights, "report_downloads", recording)
    dfer_clip._cached_mini_xception.cache_clear()
    try:
        mode_line, *_, details, _ = client.predict(
            handle_file(astronaut_png), "baseline_mini_xception", api_name="/expression_photo"
        )
    finally:
        dfer_clip._cached_mini_xception.cache_clear()
    assert server.requests == ["/mini_xception.hdf5"]
    assert (online / "cache" / "fer2013_mini_xception.hdf5").read_bytes() == server.files["/mini_xception.hdf5"]
    assert seen[0].describe() == f"Downloading fer2013_mini_xception.hdf5 of 852.4 KB from {url}"
    assert seen[-1].describe() == "fer2013_mini_xception.hdf5 ready (852.4 KB)"
    assert details["mode"] == "baseline_mini_xception"


def test_failed_download_lists_sources_and_the_fix(client, online, server, astronaut_png, monkeypatch):
    server.html["/quota"] = QUOTA_PAGE
    url = server.url("/quota")
    entry = REGISTRY["stylegan2_ffhq1024"]
    monkeypatch.setitem(REGISTRY, entry.key, dataclasses.replace(entry, sources=(Source(url=url),)))
    with pytest.raises(AppError) as info:
        client.predict(
            handle_file(astronaut_png), handle_file(astronaut_png), "stylemask", True, False, False,
            api_name="/reenact_image",
        )
    assert str(info.value).startswith(
        "This Space is missing the StyleGAN2 FFHQ 1024 generator; the owner can fetch it with one command."
        "<details><summary>Details for the Space owner</summary>"
        "Missing weights: stylegan2-ffhq-config-f.pt (StyleGAN2 FFHQ 1024 generator (rosinality format, g_ema)), "
        f"needed by the reenactment, latent paths and anonymization tabs. Every source failed, in the order tried:"
        f"<br>(1) {url} answered an HTML page "
        "titled 'Google Drive - Quota exceeded' instead of the file; no source left. Run "
        "<code>python -m backends.weights fetch stylegan2_ffhq1024</code> (or <code>python -m backends.weights fetch "
        "--tab reenactment</code> for the whole tab), or put the file in $FACELAB_WEIGHTS_DIR. To try the app"
    )
    assert str(info.value).count(url) == 1  # each source once, with what it answered
    assert not (online / "cache" / "stylegan2-ffhq-config-f.pt").exists()


def test_models_tab_says_what_each_tab_misses(client, monkeypatch, tmp_path):
    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "empty"))
    table = client.predict(api_name="/models_by_tab")
    rows = {row[0]: row for row in table["data"]}
    assert set(rows) == set(weights.TABS)
    reenactment = rows["reenactment"]
    assert "stylemask_1024" in reenactment[2]
    assert reenactment[3] == "python -m backends.weights fetch --tab reenactment"
    assert reenactment[4] == ""  # DECA has its authors' Drive link: nothing is left to the host
    assert re.fullmatch(r"\d+", reenactment[1])
