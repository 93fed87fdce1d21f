"""A newcomer's first minutes in headless Chromium (Debian's package).

Without weights (stand-ins off, no mirror, downloads off) a button answers at once with one short sentence,
and the host's account stays collapsed under it. With stand-ins, the PoS plot shows its legend inside its box
and Analyse clears the pictures of the previous prompt.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.app_server import running_app

CLASS_NAME = re.compile(r"\b\w*(?:Error|Exception)\b")


def test_without_weights_a_visitor_reads_one_sentence_and_the_detail_is_collapsed(browser, monkeypatch, tmp_path):
    monkeypatch.delenv("FACELAB_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("FACELAB_HUB_REPO", raising=False)
    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with running_app(standin=False) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url, wait_until="load")  # not networkidle: a gr.State keeps the heartbeat stream open
        page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
        page.get_by_role("tab", name="Reenactment").click()
        page.get_by_text("Engines and their weights").click()
        status = page.locator("#reenact-engine-status")
        status.get_by_text("This Space is missing the StyleGAN2 FFHQ 1024 generator", exact=False).first.wait_for()
        assert "ready" not in status.inner_text()
        page.get_by_text("Example photos", exact=False).first.wait_for()
        started = time.monotonic()
        page.locator("#reenact-examples tr.tr-body").first.click()  # an example runs at once (cached lazily)
        toast = page.get_by_test_id("toast-body").first
        toast.wait_for(state="visible", timeout=60_000)
        seconds = time.monotonic() - started
        text = toast.get_by_test_id("toast-text").first
        sentence, summary = text.inner_text().strip().splitlines()
        assert sentence == (
            "This Space is missing the StyleGAN2 FFHQ 1024 generator; the owner can fetch it with one command."
        )
        assert len(sentence) <= 160 and not CLASS_NAME.search(sentence) and summary == "Details for the Space owner"
        details = text.locator("details")
        assert details.evaluate("d => d.open") is False
        command = details.locator("code").first
        assert not command.is_visible()
        details.locator("summary").click()
        command.wait_for(state="visible")
        assert command.inner_text() == "python -m backends.weights fetch stylegan2_ffhq1024"
        assert "--stand-in-weights" in details.inner_text()
        assert not CLASS_NAME.search(text.inner_text())
        page.screenshot(path=str(tmp_path / "no_weights.png"), full_page=True)
        page.close()
    assert seconds < 20  # no retries of unreachable hosts (the issue measured about 24 s)


@pytest.fixture
def pos_app(monkeypatch, tmp_path):
    from backends import pos_subspaces as ps
    from backends.networks.text_to_image import TINY_ID

    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "pos_cache"))
    monkeypatch.setenv(ps.T2I_MODEL_ENV, TINY_ID)
    monkeypatch.setenv(ps.MAX_WORDS_ENV, "16")
    monkeypatch.setenv(ps.T2I_MAX_WORDS_ENV, "16")
    ps.clear_learned()
    with running_app(standin=True) as url:
        yield url
    ps.clear_learned()


def test_pos_legend_fits_its_plot_and_analyse_clears_old_pictures(browser, pos_app, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1200})
    page.goto(pos_app, wait_until="load")  # not networkidle: a gr.State keeps the heartbeat stream open
    page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
    page.get_by_role("tab", name="PoS subspaces").click()
    page.locator("#pos-generate").click()
    page.locator("#pos-original img").first.wait_for(state="visible", timeout=120_000)
    page.locator("#pos-analyse").click()
    page.locator("#pos-status").get_by_text("Analysed").wait_for(state="visible", timeout=120_000)
    assert page.locator("#pos-original img").count() == 0 and page.locator("#pos-removed img").count() == 0
    plot = page.locator("#pos-energy")
    plot.locator("svg").first.wait_for(state="visible", timeout=10_000)
    page.wait_for_timeout(500)  # the chart lays itself out once more after its data arrive
    box = plot.bounding_box()
    labels = plot.locator("svg g.role-legend text")
    entries = {labels.nth(i).text_content(): labels.nth(i).bounding_box() for i in range(labels.count())}
    assert {"as written", "theme removed"} <= set(entries)
    for name in ("as written", "theme removed"):  # drawn inside the plot's box, not clipped below it
        entry = entries[name]
        assert box["y"] <= entry["y"] and entry["y"] + entry["height"] <= box["y"] + box["height"], (name, entry, box)
    plot.screenshot(path=str(tmp_path / "pos_energy.png"))
    page.close()
