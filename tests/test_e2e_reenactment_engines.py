"""Headless Chromium (Debian's package, never a downloaded browser): the reenactment engine selector.

A visitor picks the GAN-directions engine, reenacts the example pair, then moves the source with the
yaw slider's button; both outputs appear and the banner says the images are not results.
"""

from __future__ import annotations

from tests.app_server import running_app


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
