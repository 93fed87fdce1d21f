"""The Expression tab's backend: modes, sampling, tracking, bad inputs and the evaluate CLI."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from backends import expression as expr
from backends.errors import NoFaceError, VideoError
from backends.media import write_video
from backends.networks.dfer_clip import DFEW_CLASSES, MAFW_CLASSES
from backends.networks.mini_xception import FER2013_CLASSES
from backends.standin import STANDIN_ENV
from tests.media_factories import audio_only

skimage_data = pytest.importorskip("skimage.data")


# --------------------------------------------------------------------------- helpers

def astronaut_frames(n: int, side: int = 240) -> list[np.ndarray]:
    """``n`` frames of the astronaut's face region, drifting by a pixel per frame."""
    photo = skimage_data.astronaut()
    frames = []
    for i in range(n):
        dx = i % 8
        region = photo[0:300, 80 + dx: 380 + dx]
        frames.append(np.asarray(Image.fromarray(region).resize((side, side), Image.Resampling.BILINEAR)))
    return frames


def faceless_frames(n: int, side: int = 160) -> list[np.ndarray]:
    """Smooth colour gradients: nothing a face detector should take for a face."""
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    frames = []
    for i in range(n):
        r = np.tile(ramp, (side, 1))
        g = np.tile(ramp[:, None], (1, side))
        b = np.full((side, side), (i * 17) % 256, np.float32)
        frames.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
    return frames


@pytest.fixture
def no_standin(monkeypatch):
    monkeypatch.setenv(STANDIN_ENV, "0")


@pytest.fixture(scope="module")
def standin_dfer_clip():
    """The stand-in DFEW DFER-CLIP, built once for the module (real size)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(STANDIN_ENV, "1")
        classifier = expr.get_classifier("dfer_clip", "dfew")
    return classifier


class FakeFace:
    def __init__(self, box):
        self.box = box


class FakeDetector:
    """Returns the scripted faces of each frame (frames are identified by their first pixel)."""

    def __init__(self, script: dict[int, list[tuple[float, float, float, float]]]):
        self.script = script

    def detect(self, rgb):
        return [FakeFace(b) for b in self.script.get(int(rgb[0, 0, 0]), [])]


# --------------------------------------------------------------------------- sampling and classes

@pytest.mark.parametrize("n,expected", [
    (5, [0, 1, 2, 3, 4] + [4] * 11),
    (16, list(range(16))),
    (37, [1, 3, 5, 8, 10, 12, 15, 17, 19, 21, 24, 26, 28, 31, 33, 35]),
    (100, [3, 9, 15, 21, 28, 34, 40, 46, 53, 59, 65, 71, 78, 84, 90, 96]),
])
def test_frame_sampling_rule(n, expected):
    assert expr.sample_indices(n) == expected


def test_frame_sampling_refuses_empty_video():
    with pytest.raises(VideoError):
        expr.sample_indices(0)


def test_class_order():
    assert DFEW_CLASSES == ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")
    assert expr.CLASSES_BY_DATASET["ferv39k"] == DFEW_CLASSES
    assert MAFW_CLASSES == DFEW_CLASSES + ("contempt", "anxiety", "helplessness", "disappointment")
    assert FER2013_CLASSES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_sliding_windows_cover_the_video():
    assert expr.plan_windows(30, 25.0) == [(0, 30)]
    windows = expr.plan_windows(250, 25.0)
    assert windows[0] == (0, 50) and windows[-1] == (200, 50)
    assert all(b[0] - a[0] == 25 for a, b in zip(windows, windows[1:], strict=False))
    assert len(expr.plan_windows(100_000, 25.0)) <= expr.MAX_WINDOWS + 1


# --------------------------------------------------------------------------- faces

def test_tracking_follows_the_face_and_reuses_crops():
    frames = [np.full((200, 200, 3), i, np.uint8) for i in range(6)]
    big, small = (20.0, 20.0, 120.0, 120.0), (150.0, 150.0, 40.0, 40.0)
    script = {
        0: [],  # leading frame without a face
        1: [big, small],
        2: [(160.0, 20.0, 125.0, 125.0), (24.0, 22.0, 118.0, 118.0)],  # the larger face is elsewhere
        3: [],
        4: [(22.0, 20.0, 120.0, 120.0)],
        5: [small],
    }
    tracked = expr.track_face_crops(frames, range(6), FakeDetector(script))
    assert sorted(tracked.crops) == list(range(6))
    assert tracked.missing == 2
    assert all(c.shape == (224, 224, 3) and c.dtype == np.uint8 for c in tracked.crops.values())
    # Frame 2 keeps the track (averaged with its neighbours) instead of jumping to the larger
    # face; frame 5 has lost it and restarts on the face it has.
    np.testing.assert_allclose(tracked.boxes[2], np.mean([big, script[2][1], script[4][0]], axis=0))
    assert tracked.boxes[5] == small
    assert sorted(tracked.boxes) == [1, 2, 4, 5]
    # Frames without a face reuse a neighbouring crop (the first good one for leading frames).
    np.testing.assert_array_equal(tracked.crops[0], tracked.crops[1])
    np.testing.assert_array_equal(tracked.crops[3], tracked.crops[2])
    assert any("No face was found in 2 of 6" in n for n in tracked.notices)


def test_no_face_in_any_frame_is_an_error():
    frames = [np.zeros((64, 64, 3), np.uint8)] * 4
    with pytest.raises(NoFaceError):
        expr.track_face_crops(frames, range(4), FakeDetector({}))


def test_crop_is_pil_bilinear_of_the_square_region():
    rgb = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    crop = expr.crop_face(rgb, (100, 100, 80, 80), scale=1.0)
    expected = np.asarray(Image.fromarray(rgb[100:180, 100:180]).resize((224, 224), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(crop, expected)
    assert expr.crop_face(rgb, (-40, -40, 100, 100)).shape == (224, 224, 3)  # padded at the border


# --------------------------------------------------------------------------- modes

def test_baseline_says_happy_on_the_astronaut():
    result = expr.analyze_photo(skimage_data.astronaut(), mode="baseline_mini_xception")
    assert result.mode == "baseline_mini_xception"
    assert result.top_class == "happy"
    assert result.probabilities["happy"] > 0.9
    assert result.classes == list(FER2013_CLASSES)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert not result.standin


def test_auto_without_dfer_clip_weights_falls_back_to_the_baseline(no_standin):
    result = expr.analyze_photo(skimage_data.astronaut(), mode="auto")
    assert result.mode == "baseline_mini_xception"
    assert result.fallback_reason and "DFER-CLIP" in result.fallback_reason
    assert result.notices[0] == result.fallback_reason
    assert "baseline" in result.mode_label


def test_dfer_clip_standin_on_a_photo(standin_dfer_clip, monkeypatch):
    monkeypatch.setenv(STANDIN_ENV, "1")
    result = expr.analyze_photo(skimage_data.astronaut(), mode="auto")
    assert result.mode == "dfer_clip" and result.standin
    assert result.classes == list(DFEW_CLASSES)
    assert list(result.probabilities) == list(DFEW_CLASSES)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert expr.STANDIN_NOTICE in result.notices
    assert "stand-in" in result.mode_label
    data = result.to_dict()
    assert data["mode"] == "dfer_clip" and data["standin"] is True and data["face_crops"] == 1


def test_text_features_are_cached_and_independent_of_the_video(standin_dfer_clip, monkeypatch):
    model = standin_dfer_clip.model
    model.clear_text_cache()
    calls = []
    original = model.text_encoder.forward
    monkeypatch.setattr(model.text_encoder, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    # Two different "videos", as frame features (the visual tower is exercised by the other tests).
    generator = torch.Generator().manual_seed(0)
    videos = [torch.randn(1, 16, 512, generator=generator) for _ in range(2)]
    with torch.no_grad():
        first_text = model.text_features()
        logits = [model.logits_from_frame_features(v) for v in videos]
    assert len(calls) == 1
    assert model.text_features() is first_text
    assert not torch.allclose(logits[0], logits[1])
    for out in logits:
        assert torch.allclose(out.softmax(-1).sum(), torch.tensor(1.0), atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(torch.nn.functional.normalize(model.encode_text(), dim=-1).numpy(),
                                   first_text.numpy(), atol=1e-6)


def test_dfer_clip_standin_on_a_video(standin_dfer_clip, monkeypatch, tmp_path):
    monkeypatch.setenv(STANDIN_ENV, "1")
    path = write_video(astronaut_frames(12), tmp_path / "face.mp4", fps=8)
    result = expr.analyze_video(path, mode="dfer_clip")
    assert result.mode == "dfer_clip" and result.standin
    assert result.frames_analysed == 12 and result.frames_without_face == 0
    assert len(result.timeline) == 1
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert 1 <= len(result.face_crops) <= expr.MAX_FACE_CROPS_SHOWN


def test_zero_shot_clip_standin(monkeypatch):
    monkeypatch.setenv(STANDIN_ENV, "1")
    result = expr.analyze_photo(skimage_data.astronaut(), mode="zero_shot_clip")
    assert result.mode == "zero_shot_clip" and result.standin
    assert "Zero-shot CLIP" in result.mode_label
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    classifier = expr.get_classifier("zero_shot_clip", "dfew")
    assert classifier.model.text_features() is classifier.model.text_features()


# --------------------------------------------------------------------------- bad inputs

def test_audio_only_file_is_refused(tmp_path):
    with pytest.raises(VideoError, match="audio"):
        expr.analyze_video(audio_only(tmp_path / "voice.m4a"), mode="baseline_mini_xception")


def test_zero_frame_video_is_refused(tmp_path):
    path = tmp_path / "empty.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    with pytest.raises(VideoError):
        expr.analyze_video(path, mode="baseline_mini_xception")
    with pytest.raises(VideoError):
        expr.analyze_frames([], 25.0, mode="baseline_mini_xception")


def test_video_without_any_face_is_refused(tmp_path):
    path = write_video(faceless_frames(10), tmp_path / "noface.mp4", fps=10)
    with pytest.raises(NoFaceError):
        expr.analyze_video(path, mode="baseline_mini_xception")


def test_very_long_video_is_capped_with_a_notice_and_windowed(tmp_path):
    fps = 4
    path = write_video(astronaut_frames(14 * fps, side=160), tmp_path / "long.mp4", fps=fps)
    result = expr.analyze_video(path, mode="baseline_mini_xception")
    assert any("Only the first" in n for n in result.notices)
    assert len(result.timeline) > 5
    times = [t for t, _ in result.timeline]
    assert times == sorted(times) and times[-1] <= 10.0
    for _, probs in result.timeline:
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-9)
    assert result.top_class == "happy"


# --------------------------------------------------------------------------- annotated video

def test_annotated_video_draws_the_tracked_box_on_every_frame(tmp_path):
    from backends.face.detect import get_detector
    from backends.media import read_video

    frames = astronaut_frames(12)
    path = write_video(frames, tmp_path / "face.mp4", fps=8)
    result = expr.analyze_video(path, mode="baseline_mini_xception", annotate=True)
    assert result.annotated_video is not None and result.annotated_video.suffix == ".mp4"
    assert result.to_dict()["annotated_video"] == result.annotated_video.name == "expression_annotated.mp4"
    annotated, source = read_video(result.annotated_video), read_video(path)
    assert len(annotated) == result.frames_analysed == len(source) == 12
    assert annotated.fps == pytest.approx(8.0)
    # The clip is short, so every frame was tracked: the drawn box is the tracker's smoothed box.
    boxes = expr.track_face_crops(source.frames, range(12), get_detector("auto")).boxes
    for drawn, plain, i in zip(annotated.frames, source.frames, range(12), strict=True):
        x, y, w, h = (int(round(v)) for v in boxes[i])
        diff = np.abs(drawn.astype(np.int16) - plain.astype(np.int16)).max(axis=-1)
        left_edge = diff[y + h // 4: y + 3 * h // 4, max(0, x - 1): x + 2]
        inside = diff[y + h // 3: y + 2 * h // 3, x + w // 3: x + 2 * w // 3]
        assert left_edge.mean() > 40, i  # the box line replaced the picture there
        assert inside.mean() < 8, i  # the face itself is left as it was (only coding noise)


def test_annotated_video_is_off_by_default(tmp_path):
    path = write_video(astronaut_frames(6, side=160), tmp_path / "face.mp4", fps=6)
    result = expr.analyze_video(path, mode="baseline_mini_xception")
    assert result.annotated_video is None
    assert result.to_dict()["annotated_video"] is None


def test_nearest_boxes_borrow_from_the_closest_analysed_frame():
    a, b = (0.0, 0.0, 10.0, 10.0), (5.0, 5.0, 10.0, 10.0)
    # Frames 0, 4 and 8 were analysed; frame 8 had no face.
    boxes = expr.nearest_boxes(10, [0, 4, 8], {0: a, 4: b})
    assert boxes == [a, a, a, b, b, b, b, None, None, None]  # ties go to the earlier frame


def test_frame_labels_follow_the_window_around_each_frame():
    windows = [(0, 4), (2, 4), (4, 4)]  # centres 1.5, 3.5, 5.5
    timeline = [(0.0, {"happy": 0.9, "sad": 0.1}), (0.0, {"happy": 0.4, "sad": 0.6}),
                (0.0, {"happy": 0.2, "sad": 0.8})]
    labels = expr.frame_labels(8, windows, timeline)
    assert [name for name, _ in labels] == ["happy", "happy", "happy", "sad", "sad", "sad", "sad", "sad"]
    assert labels[0][1] == pytest.approx(0.9) and labels[7][1] == pytest.approx(0.8)


@pytest.mark.parametrize("side", [256, 720])
def test_draw_annotation_marks_only_the_box_and_its_tag(side):
    rgb = np.full((side, side, 3), 90, np.uint8)
    box = (side * 0.3, side * 0.4, side * 0.3, side * 0.3)
    out = expr.draw_annotation(rgb, box, "happiness 87%")
    assert out.shape == rgb.shape and np.all(rgb == 90)  # the input is not drawn on
    x, y, w, h = (int(v) for v in box)
    changed = np.any(out != rgb, axis=-1)
    assert changed[y + h // 2, x] and changed[y + h // 2, x + w]  # both sides of the box
    assert changed[y - 4, x + 2]  # the tag sits just above the box
    assert not changed[y + h // 3: y + 2 * h // 3, x + w // 3: x + 2 * w // 3].any()  # the face is untouched
    assert not changed[-side // 10:, :].any()  # nothing below the box
    no_box = np.any(expr.draw_annotation(rgb, None, "neutral 50%") != rgb, axis=-1)
    assert no_box[:side // 8, :side // 4].any() and not no_box[side // 4:, :].any()  # no box: a tag at top left


# --------------------------------------------------------------------------- evaluation

def _write_dataset(root: Path, labels_and_colours: list[tuple[int, int]]) -> Path:
    """Folders of 3-20 PNG frames, each uniformly coloured with the class the fake predictor 'sees'."""
    lines = []
    for k, (label, seen) in enumerate(labels_and_colours):
        folder = root / f"clip{k:03d}"
        folder.mkdir(parents=True)
        n = 3 + (k * 7) % 18
        for f in range(n):
            Image.new("RGB", (40, 30), (seen * 30, 0, 0)).save(folder / f"{f + 1:05d}.png")
        lines.append(f"clip{k:03d} {n} {label + 1}")
    annotations = root / "test.txt"
    annotations.write_text("\n".join(lines) + "\n")
    return annotations


def _colour_predictor(clip: torch.Tensor) -> torch.Tensor:
    assert clip.shape == (1, 16, 3, 224, 224)
    assert 0.0 <= float(clip.min()) and float(clip.max()) <= 1.0
    seen = int(round(float(clip[0, 0, 0, 0, 0]) * 255 / 30))
    return torch.nn.functional.one_hot(torch.tensor(seen), 7).float()


# (true label, predicted label), 0-based: class 0 has 3/4 right, class 1 has 1/2, class 2 has 0/1.
CASES = [(0, 0), (0, 0), (0, 0), (0, 3), (1, 1), (1, 0), (2, 5)]


def test_uar_war_against_a_hand_computation(tmp_path):
    annotations = _write_dataset(tmp_path, CASES)
    records = expr.read_annotations(annotations)
    assert [r.label for r in records] == [t for t, _ in CASES]
    result = expr.evaluate(records, tmp_path, _colour_predictor, num_classes=7)
    assert result.war == pytest.approx(100 * 4 / 7)
    assert result.uar == pytest.approx(100 * (3 / 4 + 1 / 2 + 0 / 1) / 3)
    assert result.confusion.sum() == len(CASES) and result.confusion[0, 3] == 1


def test_evaluate_cli_prints_uar_and_war(tmp_path, monkeypatch, capsys):
    annotations = _write_dataset(tmp_path, CASES)
    monkeypatch.setattr(expr.cli, "_load_model_for_evaluation", lambda checkpoint, dataset: None)
    monkeypatch.setattr(expr.cli, "_model_predictor", lambda model: _colour_predictor)
    code = expr.main(["evaluate", "--annotations", str(annotations), "--frames-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert f"UAR: {100 * (3 / 4 + 1 / 2) / 3:.2f}" in out
    assert f"WAR: {100 * 4 / 7:.2f}" in out


def test_predict_cli_reports_errors_cleanly(tmp_path, capsys):
    path = write_video(faceless_frames(4), tmp_path / "noface.mp4", fps=4)
    assert expr.main(["predict", str(path), "--mode", "baseline_mini_xception"]) == 2
    assert "No face" in capsys.readouterr().err
