"""Following one face through the frames of a video.

The largest face of the first frame with a face starts the track. Each later
frame takes the detection that overlaps the track's last box most (IoU); when
nothing overlaps enough, the track restarts on that frame's largest face.
Frames without any face are ``None``. Positions are then smoothed over time
with a centred moving average, so crops made from them do not jitter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .detect import Face, FaceDetector

MIN_IOU = 0.2  # below this overlap the tracked face is considered lost
SMOOTH_WINDOW = 5  # frames in the centred moving average


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """The tracked face per frame (``None`` where no face was found) and what was seen on the way."""

    faces: list[Face | None]
    segments: list[int | None]  # which unbroken stretch of the track each face belongs to
    frames_with_several_faces: int = 0

    @property
    def found(self) -> list[int]:
        return [i for i, f in enumerate(self.faces) if f is not None]

    @property
    def missing(self) -> int:
        return sum(f is None for f in self.faces)

    def smoothed_boxes(self, window: int = SMOOTH_WINDOW) -> list[np.ndarray | None]:
        boxes = [None if f is None else np.asarray(f.box, np.float64) for f in self.faces]
        return moving_average(boxes, window, self.segments)

    def smoothed_landmarks(self, window: int = SMOOTH_WINDOW) -> list[np.ndarray | None]:
        points = [None if f is None else np.asarray(f.landmarks, np.float64) for f in self.faces]
        return moving_average(points, window, self.segments)


def track_faces(frames: Sequence[np.ndarray], detector: FaceDetector, indices: Iterable[int] | None = None) -> Track:
    """Detect and follow one face through ``frames`` (or only the frames at ``indices``, in time order).

    The returned track has one entry per visited frame, in the order visited.
    """
    order = range(len(frames)) if indices is None else sorted(set(indices))
    faces: list[Face | None] = []
    segments: list[int | None] = []
    several, segment = 0, -1
    last: Face | None = None
    for i in order:
        detections = detector.detect(frames[i])
        several += len(detections) > 1
        if not detections:
            faces.append(None)
            segments.append(None)
            continue
        last, continued = _follow(last, detections)
        segment += not continued
        faces.append(last)
        segments.append(segment)
    return Track(faces=faces, segments=segments, frames_with_several_faces=several)


def _follow(previous: Face | None, detections: Sequence[Face]) -> tuple[Face, bool]:
    """The detection that continues the track, or the largest one when starting or after losing it."""
    if previous is not None:
        best = max(detections, key=lambda f: box_iou(previous.box, f.box))
        if box_iou(previous.box, best.box) >= MIN_IOU:
            return best, True
    return detections[0], False


def moving_average(values: Sequence[np.ndarray | None], window: int = SMOOTH_WINDOW,
                   segments: Sequence[int | None] | None = None) -> list[np.ndarray | None]:
    """A centred moving average over time.

    ``None`` entries stay ``None`` and are left out of the averages; with ``segments``,
    only neighbours of the same segment are averaged (no smoothing across a jump of the track).
    """
    segments = list(segments) if segments is not None else [0] * len(values)
    half = max(0, window // 2)
    out: list[np.ndarray | None] = []
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        lo, hi = max(0, i - half), i + half + 1
        near = [v for v, s in zip(values[lo:hi], segments[lo:hi], strict=True) if v is not None and s == segments[i]]
        out.append(np.mean(np.stack(near), axis=0))
    return out


def fill_gaps(values: Sequence[object | None]) -> list[object]:
    """Replace ``None`` by the nearest earlier value (the first value for leading gaps)."""
    first = next((v for v in values if v is not None), None)
    if first is None:
        raise ValueError("no value to fill the gaps with")
    out, last = [], first
    for v in values:
        last = v if v is not None else last
        out.append(last)
    return out
