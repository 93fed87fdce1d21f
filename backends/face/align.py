"""Face crops: FFHQ-style alignment, a VoxCeleb-style crop, square crops, and paste-back.

Each crop returns the affine transform from the original photo to the crop, so a
result computed on the crop can be pasted back into the photo with a feathered mask.

FFHQ alignment follows the recipe of the FFHQ data set, driven by 5 landmarks:
the eye centres and the mouth corners define an oriented square ("quad") around
the face, which is mapped onto the output square.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ..errors import InputError


@dataclass
class AlignedFace:
    """A face crop and the 2×3 affine ``matrix`` mapping photo coordinates to crop coordinates."""

    image: Image.Image
    matrix: np.ndarray
    size: int
    quad: np.ndarray  # the 4 photo-space corners of the crop: top-left, bottom-left, bottom-right, top-right

    @property
    def inverse(self) -> np.ndarray:
        return cv2.invertAffineTransform(self.matrix)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop quad (4×2) from 5 landmarks (left eye, right eye, nose, left mouth, right mouth)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_left, eye_right, mouth_left, mouth_right = pts[0], pts[1], pts[3], pts[4]
    eye_avg = (eye_left + eye_right) / 2.0
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) / 2.0
    eye_to_mouth = mouth_avg - eye_avg
    # The x axis of the crop bisects the eye line and the eye-to-mouth line turned by 90 degrees.
    x = eye_to_eye - np.flipud(eye_to_mouth) * np.array([-1.0, 1.0])
    norm = np.hypot(*x)
    if norm < 1e-6:
        raise InputError("The face landmarks are degenerate; the face cannot be aligned.")
    x /= norm
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * np.array([-1.0, 1.0])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _quad_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """The affine map sending quad corners TL, BL, BR to the crop's (0,0), (0,size), (size,size)."""
    src = np.asarray(quad[:3], dtype=np.float32)
    dst = np.array([[0, 0], [0, size], [size, size]], dtype=np.float32)
    return cv2.getAffineTransform(src, dst).astype(np.float64)


def warp_crop(rgb: np.ndarray, quad: np.ndarray, size: int) -> AlignedFace:
    """Resample the quad of ``rgb`` into a ``size``² crop with reflected borders and no aliasing."""
    rgb = np.asarray(rgb)
    matrix = _quad_matrix(quad, size)
    source, pre = rgb, np.eye(3)
    shrink = int(np.floor(np.hypot(*(quad[2] - quad[0])) / np.sqrt(2) / size / 2.0))
    if shrink > 1:
        # Shrink the photo first with area averaging, so a large face is not aliased by the warp.
        h, w = rgb.shape[:2]
        sw, sh = max(1, round(w / shrink)), max(1, round(h / shrink))
        source = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
        pre = np.diag([sw / w, sh / h, 1.0])
    full = np.vstack([matrix, [0, 0, 1]]) @ np.linalg.inv(pre)
    crop = cv2.warpAffine(
        source, full[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
    )
    return AlignedFace(image=Image.fromarray(crop), matrix=matrix, size=size, quad=np.asarray(quad, np.float64))


def align_ffhq(rgb: np.ndarray, landmarks: np.ndarray, size: int = 1024) -> AlignedFace:
    """FFHQ-aligned crop of the face with these 5 landmarks, at any output size."""
    return warp_crop(np.asarray(rgb), ffhq_quad(landmarks), size)


def square_quad(box: tuple[float, float, float, float], scale: float, shift_y: float = 0.0) -> np.ndarray:
    """An axis-aligned square quad ``scale`` times the box's long side, centred on the box."""
    x, y, w, h = box
    side = max(w, h) * scale
    cx, cy = x + w / 2.0, y + h / 2.0 + shift_y * h
    half = side / 2.0
    return np.array([[cx - half, cy - half], [cx - half, cy + half], [cx + half, cy + half], [cx + half, cy - half]])


def align_vox(rgb: np.ndarray, box: tuple[float, float, float, float], size: int = 256) -> AlignedFace:
    """A VoxCeleb-style crop: an axis-aligned square about 1.8× the face box, a little above its centre.

    VoxCeleb frames show the whole head with some shoulders; HyperReenact's generator was
    trained on such crops, so its inputs are framed the same way (no rotation).
    """
    return warp_crop(np.asarray(rgb), square_quad(box, 1.8, shift_y=-0.05), size)


def square_crop(rgb: np.ndarray, box: tuple[float, float, float, float], scale: float = 1.25,
                size: int = 224) -> np.ndarray:
    """A square crop around a face box (borders reflected), as uint8 RGB ``size``²."""
    return np.asarray(warp_crop(np.asarray(rgb), square_quad(box, scale), size).image)


def paste_back(rgb: np.ndarray, result: Image.Image | np.ndarray, aligned: AlignedFace,
               feather: float = 0.08) -> np.ndarray:
    """Paste a result computed on ``aligned`` back into the photo ``rgb`` with a feathered edge.

    ``result`` may have any square size; it is mapped back through the crop's transform.
    ``feather`` is the width of the soft edge as a fraction of the crop side.
    """
    photo = np.asarray(rgb)
    res = np.asarray(result)
    if res.shape[0] != aligned.size or res.shape[1] != aligned.size:
        res = cv2.resize(res, (aligned.size, aligned.size), interpolation=cv2.INTER_AREA)
    h, w = photo.shape[:2]
    back = cv2.invertAffineTransform(aligned.matrix)
    warped = cv2.warpAffine(res, back, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = _feather_mask(aligned.size, feather)
    soft = cv2.warpAffine(mask, back, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    out = photo.astype(np.float32) * (1.0 - soft) + warped.astype(np.float32) * soft
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _feather_mask(size: int, feather: float) -> np.ndarray:
    """1 inside, 0 at the border, a smooth ramp of ``feather·size`` pixels between."""
    ramp = max(1.0, feather * size)
    coords = np.arange(size, dtype=np.float32) + 0.5
    edge = np.minimum(coords, size - coords)
    one_d = np.clip(edge / ramp, 0.0, 1.0)
    one_d = one_d * one_d * (3.0 - 2.0 * one_d)  # smoothstep
    return np.outer(one_d, one_d).astype(np.float32)
