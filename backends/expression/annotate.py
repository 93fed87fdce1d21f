"""The annotated video: the tracked face box and the label of the window each frame falls in."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

ANNOTATION_COLOUR = (64, 220, 120)  # RGB: a light green that reads on skin, dark and bright backgrounds
ANNOTATED_VIDEO_NAME = "expression_annotated.mp4"


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
    from ..media import write_video
    from ..results import results_dir, seal

    folder = Path(out_dir) if out_dir is not None else results_dir("expression")
    frame_boxes = nearest_boxes(len(frames), analysed, boxes)
    labels = frame_labels(len(frames), windows, timeline)
    drawn = (draw_annotation(frame, box, f"{name} {100.0 * p:.0f}%")
             for frame, box, (name, p) in zip(frames, frame_boxes, labels, strict=True))
    path = write_video(drawn, folder / ANNOTATED_VIDEO_NAME, fps=fps)
    if out_dir is None:
        seal(folder)
    return path
