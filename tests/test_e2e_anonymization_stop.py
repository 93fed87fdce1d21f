"""The anonymization tab's long jobs in headless Chromium: Stop, page close, the result tab, the pool status.

FALCO's networks are tiny here (a 64 px generator slowed to 0.3 s per render, so a pool of 60,000 fakes
never finishes on its own) and the inversion is a fixed fake, so the test measures the UI's wiring and
the backend's cancellation, not the networks. The real-size networks are exercised by
test_e2e_anonymization.py and test_falco_contract.py.
"""

from __future__ import annotations

import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from backends import job_control as jobs
from tests.app_server import running_app

RENDER_SECONDS = 0.3


def _tiny_models():
    from backends import anonymization as falco
    from backends.networks import stylegan2
    from tests.test_falco_backend import STYLE_DIM, TinyIdentity, tiny_farl

    table = stylegan2.channel_table
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stylegan2, "channel_table", lambda cm: {k: 16 for k in table(cm)})
        torch.manual_seed(0)
        g = stylegan2.Generator(64, style_dim=STYLE_DIM, n_mlp=2, channel_multiplier=1).eval().requires_grad_(False)
    g.w_avg = g.mean_latent(256, seed=0)
    synthesis = g.synthesis

    def slow_synthesis(*args, **kwargs):
        time.sleep(RENDER_SECONDS)  # a render that takes a while, like G-1024 on a CPU
        return synthesis(*args, **kwargs)

    g.synthesis = slow_synthesis
    return falco.FalcoModels(g, TinyIdentity().eval().requires_grad_(False),
                             tiny_farl().eval().requires_grad_(False), True, torch.device("cpu"), "tiny")


def _fake_inversion(models):
    from backends.face.align import AlignedFace
    from backends.inversion import Inversion

    photo = Image.new("RGB", (128, 128), (180, 140, 120))
    crop = photo.resize((64, 64))
    g = models.generator
    with torch.no_grad():
        wplus = g.to_wplus(g.mapping(torch.randn(1, g.style_dim, generator=torch.Generator().manual_seed(5))))
    quad = np.array([[0, 0], [0, 128], [128, 128], [128, 0]], np.float64)
    aligned = AlignedFace(crop, np.array([[0.5, 0, 0], [0, 0.5, 0]], np.float64), 64, quad)
    return Inversion(photo, aligned, wplus.clone())


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from backends.anonymization import photo, pool

    models = _tiny_models()
    inversion = _fake_inversion(models)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACELAB_FALCO_POOL_SIZE", "2")  # the default pool: built in the background at once
        mp.setenv("FACELAB_CACHE_DIR", str(tmp_path_factory.mktemp("falco_cache")))
        mp.setattr(photo, "get_models", lambda variant: models)
        mp.setattr(pool, "get_models", lambda variant: models)
        mp.setattr(pool, "weights_on_disk", lambda: True)
        mp.setattr(pool, "_BACKGROUND", {})
        mp.setattr(photo, "invert_photo", lambda *a, **k: inversion)
        with running_app(standin=True) as url:
            yield url


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stop")
    photo = folder / "face.png"
    Image.new("RGB", (128, 128), (180, 140, 120)).save(photo)
    archive = folder / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(photo, "face.png")
    return {"photo": photo, "zip": archive}


def _wait(condition, timeout: float, what: str) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def _open_tab(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url, wait_until="load")  # not "networkidle": a gr.State opens the session heartbeat stream
    tab = page.get_by_role("tab", name="Anonymization")
    tab.wait_for(state="visible", timeout=30_000)
    tab.click()
    return page


def _start_long_job(page, files) -> None:
    page.locator("#falco-photo input[type=file]").set_input_files(str(files["photo"]))
    page.locator("#falco-photo img").first.wait_for(state="visible", timeout=20_000)
    page.locator("#falco-pool").get_by_text("60,000", exact=True).click()  # days of fakes: never finishes
    page.locator("#falco-run").click()
    _wait(lambda: jobs.running_jobs() == 1, 20, "the job starting")
    page.get_by_text("building the fake pool", exact=False).first.wait_for(state="visible", timeout=20_000)


def test_pool_status_then_a_run_with_both_identity_curves_in_the_legend(browser, app_url, files):
    page = _open_tab(browser, app_url)
    status = page.locator("#falco-pool-status")
    status.get_by_text("fake pool ready: 2 faces", exact=False).wait_for(state="visible", timeout=30_000)
    assert "s per fake measured here" in status.inner_text()  # the background build measured this machine
    page.locator("#falco-photo input[type=file]").set_input_files(str(files["photo"]))
    page.locator("#falco-photo img").first.wait_for(state="visible", timeout=20_000)
    steps = page.locator("#falco-steps input[type=number]")
    steps.fill("3")
    steps.press("Enter")
    page.locator("#falco-run").click()
    page.locator("#falco-result img").first.wait_for(state="visible", timeout=60_000)
    plot = page.locator("#falco-identity-plot")
    plot.locator("svg").first.wait_for(state="visible", timeout=10_000)
    frames = [plot.bounding_box(), plot.locator("svg").first.bounding_box()]
    for curve in ("identity loss |cos − m|", "identity cosine"):
        entry = plot.locator("svg text", has_text=curve).first
        entry.wait_for(state="visible", timeout=10_000)
        box = entry.bounding_box()
        for frame in frames:  # drawn inside the plot, not clipped below it (a fixed height did that)
            assert frame["y"] <= box["y"] and box["y"] + box["height"] <= frame["y"] + frame["height"], curve
    status.get_by_text("one optimisation step took", exact=False).wait_for(state="visible", timeout=10_000)
    page.close()


def test_stop_ends_the_job_within_a_step_and_frees_the_queue(browser, app_url, files):
    page = _open_tab(browser, app_url)
    _start_long_job(page, files)
    page.locator("#falco-stop").click()
    stopped_in = _wait(lambda: jobs.running_jobs() == 0, 10, "the backend job stopping")
    assert stopped_in < 5  # one pool render is 0.3 s: the loop stops at its next check
    page.get_by_text("building the fake pool", exact=False).first.wait_for(state="hidden", timeout=10_000)
    # The queue slot is free: the next request runs at once (and is stopped the same way).
    page.locator("#falco-run").click()
    _wait(lambda: jobs.running_jobs() == 1, 10, "the next request running")
    page.locator("#falco-stop").click()
    _wait(lambda: jobs.running_jobs() == 0, 10, "the second job stopping")
    page.close()


def test_anonymize_all_shows_the_zip_result_tab(browser, app_url, files):
    page = _open_tab(browser, app_url)
    page.locator("#falco-pool").get_by_text("60,000", exact=True).click()
    page.get_by_role("tab", name="Zip of photos").click()
    page.locator("#falco-zip input[type=file]").set_input_files(str(files["zip"]))
    page.get_by_text("faces.zip", exact=False).first.wait_for(state="visible", timeout=20_000)
    zip_tab = page.get_by_role("tab", name="Zip result")
    assert zip_tab.get_attribute("aria-selected") == "false"
    page.locator("#falco-run-zip").click()
    _wait(lambda: zip_tab.get_attribute("aria-selected") == "true", 10, "the Zip result tab showing")
    _wait(lambda: jobs.running_jobs() == 1, 20, "the zip job starting")
    page.locator("#falco-stop").click()
    _wait(lambda: jobs.running_jobs() == 0, 10, "the zip job stopping")
    page.close()


def test_closing_the_page_stops_its_job(browser, app_url, files):
    page = _open_tab(browser, app_url)
    _start_long_job(page, files)
    page.close()
    # The job's event stream drops; gradio marks the event dead and the job stops at its next check.
    _wait(lambda: jobs.running_jobs() == 0, 15, "the abandoned job stopping")
    # ... and its queue slot is free: the next visitor's request runs.
    page = _open_tab(browser, app_url)
    _start_long_job(page, files)
    page.locator("#falco-stop").click()
    _wait(lambda: jobs.running_jobs() == 0, 10, "the next visitor's job stopping")
    page.close()
