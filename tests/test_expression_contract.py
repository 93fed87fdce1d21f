"""Contract tests of the Expression tab through gradio_client."""

from __future__ import annotations

import re

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from backends.media import write_video
from tests.app_server import running_app


@pytest.fixture(scope="module")
def client():
    with running_app() as url:
        yield Client(url, verbose=False)


@pytest.fixture(scope="module")
def astronaut():
    return pytest.importorskip("skimage.data").astronaut()


def test_photo_baseline_says_happy(client, astronaut, tmp_path, shared_weights):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    mode_line, label, timeline, crops, details = client.predict(handle_file(path), "auto", api_name="/expression_photo")
    assert label["label"] == "happy"
    assert sum(c["confidence"] for c in label["confidences"]) == pytest.approx(1.0, abs=1e-4)
    assert details["mode"] == "baseline_mini_xception"
    assert details["standin"] is False
    assert mode_line.startswith("**Mode:** Per-frame baseline") and mode_line.endswith("real weights")
    assert len(crops) >= 1


def test_video_baseline(client, astronaut, tmp_path, shared_weights):
    frames = [np.roll(astronaut, shift=3 * i, axis=1) for i in range(8)]
    path = write_video(frames, tmp_path / "clip.mp4", fps=8)
    mode_line, label, timeline, crops, details = client.predict(
        handle_file(path), "baseline_mini_xception", "dfew", api_name="/expression_video"
    )
    assert details["mode"] == "baseline_mini_xception"
    assert label["label"] in details["classes"]


def test_dfer_clip_without_weights_is_a_clear_error(client, astronaut, tmp_path, shared_weights):
    path = tmp_path / "a.png"
    Image.fromarray(astronaut).save(path)
    with pytest.raises(AppError, match=re.escape("Missing weights: DFEW-set1-model_best.pth")):
        client.predict(handle_file(path), "dfer_clip", api_name="/expression_photo")


def test_not_a_video(client, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00" * 2048)
    with pytest.raises(AppError, match="not a video Face Lab can read|no frames|damaged"):
        client.predict(handle_file(path), "auto", "dfew", api_name="/expression_video")


def test_standin_dfer_clip_is_flagged(astronaut, tmp_path, shared_weights):
    path = tmp_path / "a.png"
    Image.fromarray(astronaut).save(path)
    with running_app(standin=True) as url:
        mode_line, label, _, _, details = Client(url, verbose=False).predict(
            handle_file(path), "dfer_clip", api_name="/expression_photo"
        )
    assert details["mode"] == "dfer_clip"
    assert details["standin"] is True
    assert "stand-in weights — not a result" in mode_line
    assert details["classes"] == ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
    assert sum(details["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert label["label"] == details["top_class"]
