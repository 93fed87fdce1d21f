"""Face tracking through video frames: continuity, restarts, gaps and smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from backends.face.detect import Face
from backends.face.track import box_iou, fill_gaps, moving_average, track_faces


class ScriptedDetector:
    """Returns the scripted boxes of each frame (frames are numbered by their first pixel)."""

    def __init__(self, script: dict[int, list[tuple[float, float, float, float]]]):
        self.script = script

    def detect(self, rgb: np.ndarray) -> list[Face]:
        boxes = self.script.get(int(rgb[0, 0, 0]), [])
        faces = [Face(b, np.tile([b[0] + b[2] / 2, b[1] + b[3] / 2], (5, 1)), 0.9) for b in boxes]
        return sorted(faces, key=lambda f: f.area, reverse=True)


def _frames(n: int) -> list[np.ndarray]:
    return [np.full((8, 8, 3), i, np.uint8) for i in range(n)]


BIG, SMALL = (20.0, 20.0, 120.0, 120.0), (150.0, 150.0, 40.0, 40.0)


def test_track_keeps_the_overlapping_face_and_restarts_when_lost():
    script = {
        0: [],
        1: [BIG, SMALL],
        2: [(160.0, 20.0, 125.0, 125.0), (24.0, 22.0, 118.0, 118.0)],  # a larger face appears elsewhere
        3: [],
        4: [(22.0, 20.0, 120.0, 120.0)],
        5: [SMALL],  # the tracked face is gone: restart on what is there
    }
    track = track_faces(_frames(6), ScriptedDetector(script))
    assert [None if f is None else f.box for f in track.faces] == [
        None, BIG, (24.0, 22.0, 118.0, 118.0), None, (22.0, 20.0, 120.0, 120.0), SMALL
    ]
    assert track.segments == [None, 0, 0, None, 0, 1]
    assert track.found == [1, 2, 4, 5] and track.missing == 2
    assert track.frames_with_several_faces == 2
    boxes = track.smoothed_boxes(window=5)
    np.testing.assert_allclose(boxes[2], np.mean([BIG, (24, 22, 118, 118), (22, 20, 120, 120)], axis=0))
    np.testing.assert_allclose(boxes[5], SMALL)  # not averaged across the restart


def test_indices_visit_only_some_frames():
    track = track_faces(_frames(10), ScriptedDetector({3: [BIG], 7: [BIG]}), indices=[7, 3, 3])
    assert [f.box for f in track.faces] == [BIG, BIG]


def test_moving_average_is_centred_and_skips_gaps():
    pts = [np.full((5, 2), v, float) for v in (0.0, 10.0, 20.0)] + [None, np.full((5, 2), 40.0)]
    out = moving_average(pts, window=3)
    assert out[3] is None
    np.testing.assert_allclose(out[0], 5.0)
    np.testing.assert_allclose(out[1], 10.0)
    np.testing.assert_allclose(out[2], 15.0)
    np.testing.assert_allclose(out[4], 40.0)


def test_fill_gaps_uses_the_nearest_earlier_value():
    assert fill_gaps([None, 1, None, None, 4, None]) == [1, 1, 1, 1, 4, 4]
    with pytest.raises(ValueError):
        fill_gaps([None, None])


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
