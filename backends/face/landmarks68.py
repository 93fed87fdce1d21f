"""68 landmarks of a detected face, found the way HyperReenact finds them: 2DFAN-4 on the detector's box.

The official pipeline (StelaBou/HyperReenact ``LandmarksEstimation.get_landmarks``) gives the FAN the box
of its SFD detector; here the box comes from the app's own detector (YuNet or RetinaFace), with the same
box -> centre/scale rule (:func:`backends.networks.fan68.box_center_scale`). The network, the crop and the
heatmap decoding are the official ones (:mod:`backends.networks.fan68`, with parity tests).

The points feed the VoxCeleb crop (:func:`backends.face.align.vox_crop_box`), DECA's 224 crop and the
5 ArcFace points of HyperReenact. The FAN is a registered checkpoint (``fan68``) like any other, loaded on
first use and kept; with stand-in weights its points are noise, as every stand-in output is.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from .. import memory
from ..device import get_device, gpu_task
from ..standin import standin_enabled
from ..weights import load_checkpoint
from .detect import Face

if TYPE_CHECKING:
    from ..networks.fan68 import FAN

FAN_KEY = "fan68"


@memory.managed("2DFAN-4 68 landmarks (VoxCeleb engines)")
@functools.lru_cache(maxsize=1)
def _cached_fan(standin: bool, device: str) -> FAN:
    from ..networks.fan68 import load_fan68_checkpoint

    return load_fan68_checkpoint(load_checkpoint(FAN_KEY).obj).to(device)


def get_fan() -> FAN:
    """2DFAN-4 in eval mode on the app's device, loaded on first use (per stand-in mode and device) and kept."""
    return _cached_fan(standin_enabled(), str(get_device()))


def fan_box(face: Face) -> tuple[float, float, float, float]:
    """The detector box (x, y, w, h) as the corners (x1, y1, x2, y2) an SFD box gives the FAN."""
    x, y, w, h = (float(v) for v in face.box)
    return x, y, x + w, y + h


def face_landmarks68(rgb: np.ndarray, face: Face | tuple[float, float, float, float]) -> np.ndarray:
    """The 68 landmarks [68, 2] float32 (x, y photo pixels, integer-valued as officially) of one face.

    ``face`` is a detected :class:`Face` or a detector box (x, y, w, h), e.g. a tracked, smoothed one.
    """
    if not isinstance(face, Face):
        face = Face(tuple(float(v) for v in face), np.zeros((5, 2), np.float32), 1.0)  # type: ignore[arg-type]
    fan = get_fan()  # loaded (or fetched) before the GPU step, as every checkpoint is
    return _run_fan(fan, np.asarray(rgb), fan_box(face))


@gpu_task(duration=15)
def _run_fan(fan: FAN, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The GPU step: crop, 2DFAN-4 and decoding of one face (about 20 GMAC)."""
    from ..networks.fan68 import get_landmarks

    return get_landmarks(fan, rgb, box).landmarks
