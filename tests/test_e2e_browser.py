"""End to end in headless Chromium (Debian's package), driven by Playwright for Python.

Opens the app, visits every tab, and runs the face pipeline on the astronaut photo.
Never downloads a browser: it uses /usr/bin/chromium, which .ci/run installs.
"""

from __future__ import annotations

import pytest
from PIL import Image

from tests.app_server import running_app

TABS = ["Reenactment", "Latent paths", "PoS subspaces", "Anonymization", "Expression", "Models & about"]


@pytest.fixture(scope="module")
def app_url():
    with running_app() as url:
        yield url


def test_every_tab_opens_and_the_face_pipeline_aligns(browser, app_url, tmp_path, shared_weights):
    skimage_data = pytest.importorskip("skimage.data")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(app_url, wait_until="load")  # not networkidle: a gr.State keeps the heartbeat stream open
    page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
    page.get_by_text("Face Lab", exact=False).first.wait_for()
    assert page.get_by_text("Stand-in weights are in use").count() == 0

    headings = {
        "Reenactment": "Reenactment · StyleMask",
        "Latent paths": "Latent-path editing · ContraCLIP",
        "PoS subspaces": "PoS subspaces · removing a visual theme",
        "Anonymization": "Anonymization · FALCO",
        "Expression": "Expression recognition · DFER-CLIP",
        "Models & about": "Models and weights",
    }
    for tab in TABS:
        page.get_by_role("tab", name=tab).click()
        page.get_by_text(headings[tab], exact=False).first.wait_for(state="visible", timeout=10_000)

    # Models tab is open: upload the astronaut to the face pipeline and wait for the aligned crop.
    page.locator("#face-check-input input[type=file]").set_input_files(str(photo))
    page.locator("#face-check-input img").first.wait_for(state="visible", timeout=20_000)
    page.locator("#face-check-run").click()
    page.locator("#face-check-crop img").first.wait_for(state="visible", timeout=60_000)
    src = page.locator("#face-check-crop img").first.get_attribute("src")
    assert src and ("/file=" in src or "gradio_api/file" in src or src.startswith("data:"))
    page.screenshot(path=str(tmp_path / "face_check.png"), full_page=True)
    page.close()


def test_reenactment_from_the_examples_with_standin_weights(browser, shared_weights):
    """A visitor picks the example pair and reenacts it; the banner says the output is not a result."""
    with running_app(standin=True) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url, wait_until="load")  # not networkidle: a gr.State keeps the heartbeat stream open
        page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
        page.get_by_text("Stand-in weights are in use").first.wait_for(state="visible", timeout=15_000)
        page.get_by_role("tab", name="Reenactment").click()
        page.get_by_text("Example photos", exact=False).first.wait_for()
        page.locator("tr.tr-body").first.click()  # astronaut as source, camera as driving
        page.locator("#reenact-run").click()
        page.locator("#reenact-result img").first.wait_for(state="visible", timeout=180_000)
        page.get_by_text("Stand-in weights are in use: the images are not results of StyleMask.").first.wait_for(
            state="visible", timeout=10_000
        )
        page.close()
