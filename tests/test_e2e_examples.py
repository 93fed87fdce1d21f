"""Examples in headless Chromium (Debian's package): a click shows a result, the first time and again.

The examples of Reenactment, Latent paths and Expression are cached lazily: the first click runs the
tab's default settings and stores the result; later clicks read it back. gradio 6.31 could leave such a
click pending for ever (a plot update broke its cache writer, an empty video its reader), so each
example is clicked twice here and the second click must show the stored result.
"""

from __future__ import annotations

import collections
import functools

import pytest

from tests.app_server import running_app

EXAMPLE_FUNCTIONS = [
    ("demos.expression", "_example_photo"),
    ("demos.expression", "_example_video"),
    ("demos.reenactment", "_example_photo"),
    ("demos.latent_paths", "_example_edit"),
]
RUNS: collections.Counter = collections.Counter()  # how often each example function really ran


def _counted(name: str, fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        RUNS[name] += 1
        return fn(*args, **kwargs)

    return run


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    import importlib

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACELAB_CACHE_DIR", str(tmp_path_factory.mktemp("examples_cache")))
        for module_name, attr in EXAMPLE_FUNCTIONS:  # the tabs pick these up when the app is built
            module = importlib.import_module(module_name)
            mp.setattr(module, attr, _counted(f"{module_name}.{attr}", getattr(module, attr)))
        with running_app(standin=True) as url:
            yield url


def _open(browser, url: str, tab: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1200})
    page.goto(url, wait_until="load")  # not networkidle: a gr.State keeps the heartbeat stream open
    page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
    page.get_by_role("tab", name=tab).first.click()
    return page


def _click_example(page, examples_id: str, index: int = 0) -> None:
    page.locator(f"#{examples_id} .gallery-item, #{examples_id} tr.tr-body").nth(index).click()


def _wait_done(page, timeout: int) -> None:
    """Until no output on the page shows gradio's "processing | N s" any more."""
    page.wait_for_function("() => !document.body.innerText.includes('processing |')", timeout=timeout)


def _no_error(page) -> None:
    toasts = page.get_by_test_id("toast-body")
    texts = [toasts.nth(i).inner_text() for i in range(toasts.count())]
    assert not [t for t in texts if "error" in t.lower()], texts


def test_expression_photo_and_video_examples_show_results_twice(browser, app_url, tmp_path):
    page = _open(browser, app_url, "Expression")
    page.get_by_role("tab", name="Photo").click()
    mode_line = page.locator("#expr-mode-used")
    for _ in range(2):
        _click_example(page, "expr-photo-examples")
        mode_line.get_by_text("stand-in weights — not a result").wait_for(state="visible", timeout=180_000)
        _wait_done(page, 60_000)
        page.locator("#expr-label").get_by_text("%").first.wait_for(state="visible", timeout=10_000)
        assert not page.locator("#expr-timeline").is_visible()  # a photo has no timeline
        _no_error(page)
        page.reload(wait_until="load")
        page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
        page.get_by_role("tab", name="Expression").first.click()
        page.get_by_role("tab", name="Photo").click()
    page.get_by_role("tab", name="Video or webcam").click()
    for _ in range(2):
        _click_example(page, "expr-video-examples")
        page.locator("#expr-timeline").wait_for(state="visible", timeout=240_000)
        mode_line.get_by_text("stand-in weights — not a result").wait_for(state="visible", timeout=240_000)
        page.locator("#expr-timeline").get_by_text("happiness").first.wait_for(state="visible", timeout=240_000)
        _wait_done(page, 60_000)
        _no_error(page)
    page.screenshot(path=str(tmp_path / "expression_examples.png"), full_page=True)
    page.close()
    # One run per example: the second click (after a reload) read the stored result back.
    assert RUNS["demos.expression._example_photo"] == 1
    assert RUNS["demos.expression._example_video"] == 1


def test_reenactment_and_latent_path_examples_show_results_twice(browser, app_url, tmp_path):
    page = _open(browser, app_url, "Reenactment")
    for _ in range(2):
        _click_example(page, "reenact-examples")
        page.locator("#reenact-result img").first.wait_for(state="visible", timeout=400_000)
        page.locator("#reenact-review").get_by_text("identity", exact=False).first.wait_for(
            state="visible", timeout=60_000)
        _no_error(page)
        page.reload(wait_until="load")
        page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
        page.get_by_role("tab", name="Reenactment").first.click()

    page.get_by_role("tab", name="Latent paths").first.click()
    for _ in range(2):
        _click_example(page, "cc-examples")
        page.locator("#cc-result img").first.wait_for(state="visible", timeout=300_000)
        _wait_done(page, 60_000)
        _no_error(page)
        page.reload(wait_until="load")
        page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
        page.get_by_role("tab", name="Latent paths").first.click()
    page.screenshot(path=str(tmp_path / "examples.png"), full_page=True)
    page.close()
    assert RUNS["demos.reenactment._example_photo"] == 1
    assert RUNS["demos.latent_paths._example_edit"] == 1
