"""Contract tests of the Expression tab through gradio_client."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from backends.media import STILL_IMAGE_MESSAGE, read_video, write_video
from tests.app_server import running_app
from tests.media_factories import audio_only, corrupt_video, still_image, truncated_jpeg, upload_path, zero_frame_video

AUDIO_ONLY = "This file is an audio-only file: it has no video track."
NO_FRAMES = "The video has no frames."


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
    mode_line, label, timeline, crops, details, annotated = client.predict(
        handle_file(path), "auto", api_name="/expression_photo"
    )
    assert label["label"] == "happy"
    assert sum(c["confidence"] for c in label["confidences"]) == pytest.approx(1.0, abs=1e-4)
    assert details["mode"] == "baseline_mini_xception"
    assert details["standin"] is False
    assert mode_line.startswith("**Mode:** Per-frame baseline") and mode_line.endswith("real weights")
    assert len(crops) >= 1
    assert _video_path(annotated) is None  # photos never get an annotated video


def test_video_baseline(client, astronaut, tmp_path, shared_weights):
    frames = [np.roll(astronaut, shift=3 * i, axis=1) for i in range(8)]
    path = write_video(frames, tmp_path / "clip.mp4", fps=8)
    # Three arguments, as before the annotated-video checkbox existed: it defaults to off.
    mode_line, label, timeline, crops, details, annotated = client.predict(
        handle_file(path), "baseline_mini_xception", "dfew", api_name="/expression_video"
    )
    assert details["mode"] == "baseline_mini_xception"
    assert label["label"] in details["classes"]
    assert _video_path(annotated) is None and details["annotated_video"] is None


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
        mode_line, label, _, _, details, _ = Client(url, verbose=False).predict(
            handle_file(path), "dfer_clip", api_name="/expression_photo"
        )
    assert details["mode"] == "dfer_clip"
    assert details["standin"] is True
    assert "stand-in weights — not a result" in mode_line
    assert details["classes"] == ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
    assert sum(details["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert label["label"] == details["top_class"]


# --------------------------------------------------------------------------- helpers

def _video_path(output) -> str | None:
    """The file of a gr.Video output as the client returns it (an update dict when the handler sets visibility)."""
    if isinstance(output, dict):
        output = output.get("value", output.get("video"))
        if isinstance(output, dict):  # {"video": path, "subtitles": ...}
            output = output.get("video")
    return output or None


def _astronaut_clip(astronaut: np.ndarray, count: int, side: int = 160) -> list[np.ndarray]:
    """``count`` small frames of the astronaut's head, drifting a pixel per frame."""
    region = astronaut[0:300, 80:388]
    return [
        np.asarray(Image.fromarray(np.ascontiguousarray(region[:, i % 8: i % 8 + 300])).resize((side, side)))
        for i in range(count)
    ]


# --------------------------------------------------------------------------- bad and unusual videos

@pytest.mark.parametrize("suffix", [".m4a", ".mp4"])
def test_audio_only_file_is_refused(client, tmp_path, suffix):
    path = audio_only(tmp_path / f"voice{suffix}")
    with pytest.raises(AppError) as raised:
        client.predict(handle_file(path), "baseline_mini_xception", "dfew", api_name="/expression_video")
    assert str(raised.value) == AUDIO_ONLY


def test_zero_frame_video_is_refused(client, tmp_path):
    path = zero_frame_video(tmp_path / "empty.mp4")
    with pytest.raises(AppError) as raised:
        client.predict(handle_file(path), "baseline_mini_xception", "dfew", api_name="/expression_video")
    assert str(raised.value) == NO_FRAMES


def test_video_without_a_face_is_refused(client, tmp_path, shared_weights):
    path = write_video([np.full((96, 96, 3), 128, np.uint8)] * 6, tmp_path / "grey.mp4", fps=6)
    with pytest.raises(AppError) as raised:
        client.predict(handle_file(path), "baseline_mini_xception", "dfew", api_name="/expression_video")
    assert str(raised.value).startswith("No face was found")


def test_long_video_is_capped_with_a_notice_and_windowed(client, astronaut, tmp_path, shared_weights):
    fps = 10
    path = write_video(_astronaut_clip(astronaut, 14 * fps), tmp_path / "long.mp4", fps=fps)
    *_, timeline, _, details, annotated = client.predict(
        handle_file(path), "baseline_mini_xception", "dfew", api_name="/expression_video"
    )
    assert "Only the first 100 frames (10.0 s) were used; the limit is 10 s or 250 frames." in details["notices"]
    times = [point["t"] for point in details["timeline"]]
    assert len(times) >= 5 and times == sorted(times) and times[-1] <= 10.0
    assert details["top_class"] == "happy"
    assert _video_path(annotated) is None


def test_annotated_video_through_the_api(client, astronaut, tmp_path, shared_weights):
    frames = _astronaut_clip(astronaut, 12)
    path = write_video(frames, tmp_path / "clip.mp4", fps=8)
    *_, details, annotated = client.predict(
        handle_file(path), "baseline_mini_xception", "dfew", True, api_name="/expression_video"
    )
    local = _video_path(annotated)
    assert local is not None and local.endswith(".mp4") and Path(local).is_file()
    assert details["annotated_video"] and details["annotated_video"].endswith(".mp4")
    assert len(read_video(local)) == len(frames) == details["frames_analysed"]


@pytest.mark.parametrize("name", ["photo.jpg", "cut.jpg"])
def test_video_endpoint_refuses_still_images(client, tmp_path, name):
    """A photo (even a truncated JPEG the photo endpoint refuses) is not taken as a one-frame video."""
    path = truncated_jpeg(tmp_path / name) if name == "cut.jpg" else still_image(tmp_path / name)
    with pytest.raises(AppError) as raised:
        client.predict(handle_file(path), "baseline_mini_xception", "dfew", api_name="/expression_video")
    assert raised.value.message == STILL_IMAGE_MESSAGE


def test_video_errors_do_not_show_server_paths(client, tmp_path):
    path = corrupt_video(upload_path(tmp_path, "clip.mp4"))
    with pytest.raises(AppError) as raised:
        client.predict(handle_file(path), "baseline_mini_xception", "dfew", api_name="/expression_video")
    assert raised.value.message == (
        "This file is not a video Face Lab can read (Invalid data found when processing input)."
    )
