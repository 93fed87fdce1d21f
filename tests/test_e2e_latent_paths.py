"""The Latent paths tab in headless Chromium (Debian's package) on stand-in weights: a seed walked along a path."""

from __future__ import annotations

from tests.app_server import running_app


def test_a_seed_walks_along_a_path(browser, tmp_path):
    with running_app(standin=True) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(url, wait_until="load")  # not networkidle: a gr.State keeps the heartbeat stream open
        page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
        page.get_by_role("tab", name="Latent paths").click()
        page.get_by_text("Latent-path editing · ContraCLIP").first.wait_for(state="visible", timeout=10_000)
        # The sentences of the chosen path are shown.
        page.get_by_text("a picture of a female face.", exact=False).first.wait_for(state="visible")
        page.get_by_label("Seed", exact=True).check()
        page.locator("#cc-run").click()
        page.locator("#cc-result img").first.wait_for(state="visible", timeout=180_000)
        page.get_by_text("Stand-in weights are in use: the images are not results of ContraCLIP.").first.wait_for(
            state="visible", timeout=10_000
        )
        page.screenshot(path=str(tmp_path / "latent_paths.png"), full_page=True)
        page.close()
