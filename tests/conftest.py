"""Suite-wide settings: offline, deterministic, real YuNet weights from ../shared/weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = Path(os.environ.get("FACELAB_TEST_WEIGHTS", REPO.parent / "shared" / "weights"))

# No test may reach the network: the hub is unreachable here and CI must not depend on it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("FACELAB_DEVICE", "cpu")
# Numbers must not depend on the runner's CPU (bfloat16 units or not): the suite runs float32 unless told
# otherwise. tests/test_cpu_bf16.py sets the modes itself; FACELAB_CPU_DTYPE=auto runs everything on the bf16 path.
os.environ.setdefault("FACELAB_CPU_DTYPE", "fp32")
if SHARED_WEIGHTS.is_dir():
    os.environ.setdefault("FACELAB_WEIGHTS_DIR", str(SHARED_WEIGHTS))


@pytest.fixture
def shared_weights() -> Path:
    """The folder of real checkpoints that can be had on these machines."""
    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"real test weights not found at {SHARED_WEIGHTS}")
    return SHARED_WEIGHTS


RELEASE_ABOVE_MB = float(os.environ.get("FACELAB_TEST_RELEASE_MB", "8000"))


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def release_model_caches() -> None:
    """Forget every cached model of the backends (lru caches and the modules' own clear_caches)."""
    import gc
    import sys

    for name, module in list(sys.modules.items()):
        if not name.startswith("backends"):
            continue
        for value in list(vars(module).values()):
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", "") == name:
                value.cache_clear()
        clear = getattr(module, "clear_caches", None)
        if callable(clear) and getattr(clear, "__module__", "") == name:
            clear()
    gc.collect()
    from backends.allocator import release_free_memory

    release_free_memory()  # the freed weights go back to the system, not only to the heap


@pytest.fixture(autouse=True, scope="module")
def _bounded_model_memory():
    """The suite runs in one process and each tab caches its real-size models: when a test module leaves
    the process above FACELAB_TEST_RELEASE_MB (8 GB), the caches are released so that the whole suite
    fits CI's 24 GB. Below it, later modules reuse the loaded models (loading costs seconds each)."""
    yield
    if _rss_mb() > RELEASE_ABOVE_MB:
        release_model_caches()


CHROMIUM = Path(os.environ.get("FACELAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (never `playwright install`: it downloads)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run must install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
