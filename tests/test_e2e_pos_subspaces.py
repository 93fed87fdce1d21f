"""PoS-subspaces tab in headless Chromium (Debian's package) on stand-in weights.

A visitor generates the example prompt (tiny wiring pipeline as the host's default model), sees both
images and the stand-in warning, then analyses the text and gets the energy plot and nearest words.
"""

from __future__ import annotations

import pytest

from backends import pos_subspaces as ps
from backends.networks.text_to_image import TINY_ID
from tests.app_server import running_app


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACELAB_CACHE_DIR", str(tmp_path_factory.mktemp("pos_cache")))
        mp.setenv(ps.T2I_MODEL_ENV, TINY_ID)
        mp.setenv(ps.MAX_WORDS_ENV, "16")
        mp.setenv(ps.T2I_MAX_WORDS_ENV, "16")
        ps.clear_learned()
        with running_app(standin=True) as url:
            yield url
        ps.clear_learned()


def test_generate_then_analyse(browser, app_url, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(app_url, wait_until="load")  # not networkidle: a gr.State keeps the heartbeat stream open
    page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
    page.get_by_role("tab", name="PoS subspaces").click()
    page.get_by_text("PoS subspaces · removing a visual theme", exact=False).first.wait_for(state="visible")
    page.locator("#pos-generate").click()
    page.locator("#pos-original img").first.wait_for(state="visible", timeout=120_000)
    page.locator("#pos-removed img").first.wait_for(state="visible", timeout=10_000)
    page.locator("#pos-status").get_by_text("stand-in weights — not a result").wait_for(state="visible")
    page.locator("#pos-analyse").click()
    page.locator("#pos-status").get_by_text("Analysed").wait_for(state="visible", timeout=120_000)
    page.locator("#pos-nearest").get_by_text("before: part").first.wait_for(state="visible", timeout=10_000)
    page.locator("#pos-energy").get_by_text("theme removed").first.wait_for(state="visible", timeout=10_000)
    # Picking "My own list" shows the list box.
    assert not page.locator("#pos-custom").is_visible()
    page.get_by_label("Theme to remove").click()
    page.get_by_role("option", name="My own list").click()
    page.locator("#pos-custom").wait_for(state="visible", timeout=10_000)
    page.screenshot(path=str(tmp_path / "pos_subspaces.png"), full_page=True)
    page.close()
