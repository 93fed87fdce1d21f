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
if SHARED_WEIGHTS.is_dir():
    os.environ.setdefault("FACELAB_WEIGHTS_DIR", str(SHARED_WEIGHTS))


@pytest.fixture
def shared_weights() -> Path:
    """The folder of real checkpoints that can be had on these machines."""
    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"real test weights not found at {SHARED_WEIGHTS}")
    return SHARED_WEIGHTS
