"""The anonymization tab in headless Chromium (Debian's package), with stand-in weights.

A visitor uploads the astronaut, sets one optimisation step and anonymises; the pasted-back
photo and the identity-cosine summary appear, and the page says the output is not a result.
"""

from __future__ import annotations

import pytest
from PIL import Image

from tests.app_server import running_app


def test_anonymize_one_photo_with_standin_weights(browser, shared_weights, tmp_path, monkeypatch):
    skimage_data = pytest.importorskip("skimage.data")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    monkeypatch.setenv("FACELAB_FALCO_POOL_SIZE", "1")
    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "cache"))
    with running_app(standin=True) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url, wait_until="load")  # not networkidle: a gr.State keeps the heartbeat stream open
        page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
        page.get_by_role("tab", name="Anonymization").click()
        page.get_by_text("Anonymization · FALCO", exact=False).first.wait_for(state="visible", timeout=10_000)
        page.locator("#falco-photo input[type=file]").set_input_files(str(photo))
        page.locator("#falco-photo img").first.wait_for(state="visible", timeout=20_000)
        steps = page.locator("#falco-steps input[type=number]")
        steps.fill("1")
        steps.press("Enter")
        page.locator("#falco-run").click()
        page.locator("#falco-result img").first.wait_for(state="visible", timeout=300_000)
        summary = page.locator("#falco-summary")
        summary.get_by_text("Identity cosine", exact=False).wait_for(state="visible", timeout=10_000)
        assert "1 steps" in summary.inner_text() and "stand-in weights" in summary.inner_text()
        page.get_by_text("Stand-in weights are in use: the images are not results of FALCO.").first.wait_for(
            state="visible", timeout=10_000
        )
        page.screenshot(path=str(tmp_path / "anonymization.png"), full_page=True)
        page.close()
