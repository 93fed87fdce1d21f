"""Videos and photos to probabilities: frame sampling, face tracking and crops, windows over time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..device import gpu_task
from ..errors import NoFaceError, VideoError
from ..face.track import fill_gaps, track_faces
from ..networks.dfer_clip import (
    NUM_FRAMES,
)
from .annotate import write_annotated_video
from .classifiers import FEATURE_BATCH, STANDIN_NOTICE, ExpressionClassifier, choose_classifier

CROP_SIZE = 224
FACE_BOX_SCALE = 1.25  # context around the detector box, close to the face crops of DFEW/MAFW
WINDOW_SECONDS = 2.0
WINDOW_STEP_SECONDS = 1.0
MAX_WINDOWS = 12
MAX_FACE_CROPS_SHOWN = 4
TRACK_SMOOTH_WINDOW = 5  # frames (of those analysed) in the centred average of the face box


# --------------------------------------------------------------------------- result

@dataclass
class ExpressionResult:
    """What the Expression tab shows for one video or photo."""

    mode: str
    mode_label: str
    classes: list[str]
    probabilities: dict[str, float]
    top_class: str
    timeline: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    face_crops: list[Image.Image] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    standin: bool = False
    fallback_reason: str | None = None
    dataset: str | None = None
    frames_analysed: int = 0
    frames_without_face: int = 0
    annotated_video: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (face crops are left out; their count is given)."""
        return {
            "mode": self.mode,
            "mode_label": self.mode_label,
            "dataset": self.dataset,
            "classes": list(self.classes),
            "probabilities": dict(self.probabilities),
            "top_class": self.top_class,
            "timeline": [{"t": t, "probabilities": dict(p)} for t, p in self.timeline],
            "notices": list(self.notices),
            "standin": self.standin,
            "fallback_reason": self.fallback_reason,
            "frames_analysed": self.frames_analysed,
            "frames_without_face": self.frames_without_face,
            "face_crops": len(self.face_crops),
            # Only the file name: server paths stay private (the file itself is a separate output).
            "annotated_video": None if self.annotated_video is None else self.annotated_video.name,
        }


# --------------------------------------------------------------------------- frame sampling

def sample_indices(n: int, num_segments: int = NUM_FRAMES) -> list[int]:
    """The official test-time frame choice for a video of ``n`` frames.

    Longer videos: the middle frame of ``num_segments`` equal segments,
    ``int(tick / 2 + tick * i)`` with ``tick = n / num_segments``. Shorter ones: every
    frame, then the last frame repeated up to ``num_segments``.
    """
    if n <= 0:
        raise VideoError("The video has no frames.")
    if n > num_segments:
        tick = n / float(num_segments)
        return [int(tick / 2.0 + tick * i) for i in range(num_segments)]
    return list(range(n)) + [n - 1] * (num_segments - n)


def plan_windows(n: int, fps: float, window_seconds: float = WINDOW_SECONDS,
                 step_seconds: float = WINDOW_STEP_SECONDS, max_windows: int = MAX_WINDOWS) -> list[tuple[int, int]]:
    """(start, length) of the sliding windows over ``n`` frames; one window for short clips."""
    length = max(1, round(window_seconds * fps))
    if n <= length:
        return [(0, n)]
    step = max(1, round(step_seconds * fps))
    span = n - length
    if span // step + 1 > max_windows:  # keep the cost bounded: widen the step
        step = -(-span // (max_windows - 1))
    starts = list(range(0, span + 1, step))
    if starts[-1] != span:
        starts.append(span)  # the last window ends on the last frame
    return [(s, length) for s in starts]


# --------------------------------------------------------------------------- faces

def crop_face(rgb: np.ndarray, box: Sequence[float], scale: float = FACE_BOX_SCALE,
              size: int = CROP_SIZE) -> np.ndarray:
    """A square crop around ``box`` (reflected at the borders), resized with PIL bilinear.

    PIL bilinear, not a warp, because that is how the official loader brings face
    frames to 224 x 224.
    """
    h, w = rgb.shape[:2]
    x, y, bw, bh = (float(v) for v in box)
    side = max(2, int(round(max(bw, bh) * scale)))
    left = int(round(x + bw / 2.0 - side / 2.0))
    top = int(round(y + bh / 2.0 - side / 2.0))
    pad = max(0, -left, -top, left + side - w, top + side - h)
    if pad:
        mode = "reflect" if pad < min(h, w) else "edge"
        rgb = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode=mode)
        left, top = left + pad, top + pad
    region = np.ascontiguousarray(rgb[top: top + side, left: left + side])
    return np.asarray(Image.fromarray(region).resize((size, size), Image.Resampling.BILINEAR))


@dataclass
class TrackedCrops:
    """Face crops for the requested frame indices, and how many had to reuse a neighbour's crop.

    ``boxes`` holds the smoothed face box of every frame where a face was found.
    """

    crops: dict[int, np.ndarray]
    missing: int
    notices: list[str] = field(default_factory=list)
    boxes: dict[int, tuple[float, ...]] = field(default_factory=dict)


def track_face_crops(frames: Sequence[np.ndarray], indices: Iterable[int], detector: Any) -> TrackedCrops:
    """Crop the tracked face in each frame of ``indices`` (in time order).

    The face is followed with :func:`backends.face.track.track_faces` (largest face first,
    then by overlap) and its box averaged over neighbouring frames to steady the crop. A
    frame without a face reuses the last good crop (the first good one for leading frames).
    """
    order = sorted(set(indices))
    track = track_faces(frames, detector, order)
    if not track.found:
        raise NoFaceError(
            f"No face was found in any of the {len(order)} frames analysed. Use a video where the face "
            "is clearly visible, facing the camera and well lit."
        )
    smoothed = track.smoothed_boxes(TRACK_SMOOTH_WINDOW)
    boxes = {i: tuple(float(v) for v in box) for i, box in zip(order, smoothed, strict=True) if box is not None}
    found = {i: crop_face(frames[i], box) for i, box in boxes.items()}
    crops = dict(zip(order, fill_gaps([found.get(i) for i in order]), strict=True))
    notices = []
    if track.missing:
        notices.append(f"No face was found in {track.missing} of {len(order)} analysed frames; "
                       "the nearest earlier face crop was reused for them.")
    if track.frames_with_several_faces:
        notices.append("Several faces are visible; the largest one was tracked.")
    return TrackedCrops(crops, track.missing, notices, boxes)


# --------------------------------------------------------------------------- analysis

@gpu_task(duration=60)
def _features_for(classifier: ExpressionClassifier, crops: np.ndarray) -> torch.Tensor:
    """Frame features in batches; the one heavy step of a request."""
    with torch.no_grad():
        parts = [classifier.frame_features(crops[i: i + FEATURE_BATCH]) for i in range(0, len(crops), FEATURE_BATCH)]
        return torch.cat(parts)


def _probabilities_dict(classes: Sequence[str], probs: np.ndarray) -> dict[str, float]:
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum()
    return {c: float(p) for c, p in zip(classes, probs, strict=True)}


def classify_crops(classifier: ExpressionClassifier, crops: dict[int, np.ndarray],
                   overall: Sequence[int], windows: Sequence[tuple[float, Sequence[int]]] = ()
                   ) -> tuple[dict[str, float], list[tuple[float, dict[str, float]]]]:
    """Overall and per-window probabilities; each distinct frame is encoded once."""
    order = sorted(crops)
    position = {idx: k for k, idx in enumerate(order)}
    features = _features_for(classifier, np.stack([crops[i] for i in order]))

    def probs(indices: Sequence[int]) -> dict[str, float]:
        with torch.no_grad():
            window = features[[position[i] for i in indices]]
            return _probabilities_dict(classifier.classes, classifier.window_probabilities(window))

    return probs(overall), [(t, probs(indices)) for t, indices in windows]


def _result(classifier: ExpressionClassifier, fallback: str | None, probabilities: dict[str, float],
            timeline: list, crops: list[np.ndarray], notices: list[str], frames: int, missing: int
            ) -> ExpressionResult:
    notices = list(notices)
    if fallback:
        notices.insert(0, fallback)
    if classifier.standin:
        notices.insert(0, STANDIN_NOTICE)
    return ExpressionResult(
        mode=classifier.mode,
        mode_label=classifier.label(),
        classes=list(classifier.classes),
        probabilities=probabilities,
        top_class=max(probabilities, key=probabilities.get),
        timeline=timeline,
        face_crops=[Image.fromarray(c) for c in crops],
        notices=notices,
        standin=classifier.standin,
        fallback_reason=fallback,
        dataset=classifier.dataset,
        frames_analysed=frames,
        frames_without_face=missing,
    )


def _evenly(items: Sequence[Any], k: int) -> list[Any]:
    if len(items) <= k:
        return list(items)
    return [items[int(round(i * (len(items) - 1) / (k - 1)))] for i in range(k)]


def analyze_frames(frames: Sequence[np.ndarray], fps: float, mode: str = "auto", dataset: str = "dfew",
                   notices: Sequence[str] = (), detector: Any = None, annotate: bool = False) -> ExpressionResult:
    """Expression probabilities for decoded RGB frames (the core of :func:`analyze_video`).

    With ``annotate``, every frame is also written to an MP4 with the face box and the
    expression of its window (see :func:`write_annotated_video`).
    """
    if len(frames) == 0:
        raise VideoError("The video has no frames.")
    classifier, fallback = choose_classifier(mode, dataset)
    overall = sample_indices(len(frames))
    windows = plan_windows(len(frames), fps)
    window_indices = [((s + n / 2.0) / fps, [s + i for i in sample_indices(n)]) for s, n in windows]
    if len(windows) == 1:
        window_indices = [(len(frames) / 2.0 / fps, overall)]
    needed = set(overall).union(*(set(ix) for _, ix in window_indices))
    if detector is None:
        from ..face.detect import get_detector

        detector = get_detector("auto")
    tracked = track_face_crops(frames, needed, detector)
    probabilities, timeline = classify_crops(classifier, tracked.crops, overall, window_indices)
    shown = [tracked.crops[i] for i in _evenly(sorted(set(overall)), MAX_FACE_CROPS_SHOWN)]
    result = _result(classifier, fallback, probabilities, timeline, shown, [*notices, *tracked.notices],
                     len(needed), tracked.missing)
    if annotate:
        result.annotated_video = write_annotated_video(frames, fps, needed, tracked.boxes, windows, timeline)
    return result


def analyze_video(path: str | Path, mode: str = "auto", dataset: str = "dfew",
                  annotate: bool = False) -> ExpressionResult:
    """Expression recognition on a video upload (capped by the media policy, with a notice).

    ``annotate`` also writes the annotated MP4 (``result.annotated_video``) at the source frame rate.
    """
    from ..media import read_video

    video = read_video(path)
    return analyze_frames(video.frames, video.fps, mode, dataset, notices=video.notices, annotate=annotate)


def analyze_photo(image: Any, mode: str = "auto", dataset: str = "dfew",
                  progress: Callable[[float, str], None] | None = None) -> ExpressionResult:
    """Expression recognition on one photo: the largest face, as a clip of one repeated frame.

    ``progress(fraction, stage)`` hears each stage as it starts.
    """
    from ..face.detect import detect_largest
    from ..media import load_image

    report = progress or (lambda _f, _d: None)
    loaded = load_image(image, what="photo")
    report(0.0, "Finding the face")
    rgb = np.asarray(loaded.image)
    face, face_notices = detect_largest(rgb, what="photo")
    crop = crop_face(rgb, face.box)
    report(0.3, "Loading the expression model")
    classifier, fallback = choose_classifier(mode, dataset)
    report(0.6, f"Reading the expression ({classifier.label()})")
    overall = sample_indices(1)
    probabilities, _ = classify_crops(classifier, {0: crop}, overall)
    return _result(classifier, fallback, probabilities, [], [crop], [*loaded.notices, *face_notices], 1, 0)
