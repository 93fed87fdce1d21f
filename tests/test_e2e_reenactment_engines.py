"""Headless Chromium (Debian's package, never a downloaded browser): the reenactment engine selector.

A visitor picks the GAN-directions engine, reenacts the example pair, then moves the source with the
yaw slider's button; both outputs appear and the banner says the images are not results.
"""

from __future__ import annotations

from pathlib import Path

from tests.app_server import running_app

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_gan_directions_engine_and_sliders(browser, shared_weights):
    with running_app(standin=True) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(url, wait_until="load")  # not networkidle: a gr.State keeps the heartbeat stream open
        page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
        page.get_by_role("tab", name="Reenactment").click()
        page.get_by_text("Example photos", exact=False).first.wait_for()
        page.locator("#reenact-engine input").click()
        page.get_by_role("option", name="GAN directions").click()
        page.locator("tr.tr-body").first.click()  # astronaut as source, camera as driving
        page.locator("#reenact-run").click()
        page.locator("#reenact-result img").first.wait_for(state="visible", timeout=240_000)
        page.get_by_text("not results of GAN directions").first.wait_for(state="visible", timeout=10_000)

        page.get_by_text("GAN directions: move one direction at a time", exact=False).first.click()
        page.locator("#directions-run").click()
        page.locator("#directions-result img").first.wait_for(state="visible", timeout=120_000)
        page.close()


def test_run_card_downloads_and_compare_mode_lists_every_engine(browser, shared_weights, monkeypatch, tmp_path):
    """The photo result's run card downloads (a JSON card of the run), and "Compare every engine" fills a
    table with one row per engine: the metrics of the engine that ran, the reason for the others."""
    import json

    from backends.reenactment import common
    from backends.reenactment.engine import EngineStatus

    real_status = common.engine_status
    monkeypatch.setattr(common, "engine_status", lambda key: real_status(key) if key == "gan_directions"
                        else EngineStatus(key, False, f"{key} weights are not here (test)"))
    with running_app(standin=True) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1400}, accept_downloads=True)
        page.goto(url, wait_until="load")
        page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
        page.get_by_role("tab", name="Reenactment").click()
        page.get_by_text("Example photos", exact=False).first.wait_for()
        page.locator("#reenact-engine input").click()
        page.get_by_role("option", name="GAN directions").click()
        # Uploaded, not an example row: an example may run its own (cached) engine.
        page.locator("#reenact-source input[type=file]").set_input_files(str(ASSETS / "astronaut.png"))
        page.locator("#reenact-driving input[type=file]").set_input_files(str(ASSETS / "camera.png"))
        page.locator("#reenact-driving img").first.wait_for(state="visible", timeout=30_000)
        page.locator("#reenact-run").click()
        page.locator("#reenact-result img").first.wait_for(state="visible", timeout=240_000)
        link = page.locator("#reenact-card a").first
        link.wait_for(state="visible", timeout=180_000)  # filled in by the chained metrics event
        with page.expect_download(timeout=30_000) as download:
            link.click()
        card = json.loads(download.value.path().read_text())
        assert card["card_version"] == 1 and card["engine"] == "gan_directions" and card["standin"] is True
        assert card["replay"]["inputs"] == ["source", "driving"] and card["outputs"]["final"]["pixels_sha256"]
        # ... and replays: the same inputs give the same pixels (same device and dtype), as the CLI reports.
        from backends.replay import replay

        report = replay(download.value.path(), [ASSETS / "astronaut.png", ASSETS / "camera.png"])
        assert report.input_mismatches == [] and report.identical, report.to_dict()

        page.locator("#reenact-compare").click()
        table = page.locator("#reenact-compare-table")
        table.get_by_text("stand-in weights: not meaningful").first.wait_for(state="visible", timeout=240_000)
        text = table.inner_text()
        for name in ("StyleMask", "HyperReenact", "GAN directions"):
            assert name in text
        assert text.count("weights are not here (test)") == 2
        assert "CSIM" in text and "pose error" in text
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
        page.close()
