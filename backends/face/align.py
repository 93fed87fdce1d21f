"""Face crops: FFHQ-style alignment, the VoxCeleb crop (from 68 landmarks), square crops, and paste-back.

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


def align_vox(rgb: np.ndarray, landmarks68: np.ndarray, size: int = 256) -> AlignedFace:
    """The VoxCeleb-style crop HyperReenact and the GAN-directions model were trained on (no rotation).

    The official preprocessing (``crop_using_landmarks``) crops a square twice the 68-landmark extent,
    centred a sixth of that extent above the landmarks' centre, and resizes it bicubically; this is
    reproduced exactly from the 68 landmarks (:func:`backends.face.landmarks68.face_landmarks68`).
    """
    return crop_box_resized(np.asarray(rgb), vox_crop_box(landmarks68), size)


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


# --------------------------------------------------------------------------- similarity fits and the VoxCeleb crop


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3×3 least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Umeyama's closed form, which is what ``skimage.transform.estimate_transform('similarity', src, dst)``
    computes; the official HyperReenact and DECA crops are defined through it. Points are (x, y) rows.
    """
    # Like the reference, each point set keeps its own precision (float32 landmarks give float32
    # means), integers become float64; the parity of the official crops depends on it.
    src, dst = np.asarray(src), np.asarray(dst)
    src = src if np.issubdtype(src.dtype, np.floating) else src.astype(np.float64)
    dst = dst if np.issubdtype(dst.dtype, np.floating) else dst.astype(np.float64)
    n, dim = src.shape
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    d = np.ones(dim)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    out = np.eye(dim + 1)
    if rank == 0:
        raise InputError("The face landmarks are degenerate; the face cannot be aligned.")
    if rank == dim - 1:
        # Collinear points: the reference keeps a proper rotation and does not flip d for good.
        if np.linalg.det(u) * np.linalg.det(vt) > 0:
            out[:dim, :dim] = u @ vt
        else:
            d_r = d.copy()
            d_r[-1] = -1
            out[:dim, :dim] = u @ np.diag(d_r) @ vt
    else:
        out[:dim, :dim] = u @ np.diag(d) @ vt
    # Same operation order as the reference (1/var first: float32 points keep a float32 reciprocal).
    scale = 1.0 / src_c.var(axis=0).sum() * (s @ d)
    out[:dim, dim] = dst_mean - scale * (out[:dim, :dim] @ src_mean)
    out[:dim, :dim] *= scale
    return out


def vox_crop_box(landmarks68: np.ndarray) -> tuple[int, int, int, int]:
    """The official VoxCeleb crop box (x1, y1, x2, y2), exclusive, from 68 landmarks.

    HyperReenact's and the GAN-directions repo's ``crop_using_landmarks``: the centre of the landmarks'
    bounding box (rounded), moved up by a sixth of the box's long side (integer division), and a square
    of twice that long side around it.
    """
    pts = np.asarray(landmarks68, dtype=np.float64).reshape(-1, 2)
    center = np.round((pts.min(0) + pts.max(0)) / 2).astype(int)
    extent = pts.max(0) - pts.min(0)
    size = int(max(extent[0], extent[1]))
    center[1] -= size // 6
    return int(center[0] - size), int(center[1] - size), int(center[0] + size), int(center[1] + size)


def map_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (x, y) through a 2×3 affine matrix (photo -> crop coordinates)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ np.asarray(matrix, dtype=np.float64)[:, :2].T + np.asarray(matrix, dtype=np.float64)[:, 2]


def crop_box_resized(rgb: np.ndarray, crop_box: tuple[int, int, int, int], size: int = 256) -> AlignedFace:
    """Cut an integer box out of the photo (padding outside it as the official crop does) and resize it.

    Outside the photo the official ``pad_img_to_fit_bbox`` reflects the borders, then fades them toward a
    blurred copy and the median colour; the square is resized with PIL's bicubic filter.
    """
    rgb = np.asarray(rgb)
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = crop_box
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise InputError("The face is too small to crop.")
    if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
        patch = _padded_patch(rgb, crop_box)
    else:
        patch = rgb[y1:y2, x1:x2]
    image = Image.fromarray(np.ascontiguousarray(patch).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    scale = size / float(x2 - x1)
    matrix = np.array([[scale, 0.0, -x1 * scale], [0.0, size / float(y2 - y1), -y1 * size / float(y2 - y1)]])
    quad = np.array([[x1, y1], [x1, y2], [x2, y2], [x2, y1]], dtype=np.float64)
    return AlignedFace(image=image, matrix=matrix, size=size, quad=quad)


def _padded_patch(rgb: np.ndarray, crop_box: tuple[int, int, int, int]) -> np.ndarray:
    """The official out-of-photo padding: reflect, then blend toward a blur and the median near the edges."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = crop_box
    top, bottom, left, right = -min(0, y1), max(y2 - h, 0), -min(0, x1), max(x2 - w, 0)
    img = cv2.copyMakeBorder(rgb, top, bottom, left, right, cv2.BORDER_REFLECT)
    y2, y1, x2, x1 = y2 + top, y1 + top, x2 + left, x1 + left
    pad = np.array([max(-crop_box[0], 0), max(-crop_box[1], 0), max(crop_box[2] - w, 0), max(crop_box[3] - h, 0)],
                   dtype=np.float32)
    pad[pad == 0] = 1e-10
    hh, ww = img.shape[:2]
    yy, xx = np.ogrid[:hh, :ww]
    xx, yy = xx.astype(np.float32)[..., None], yy.astype(np.float32)[..., None]
    mask = np.maximum(1.0 - np.minimum(xx / pad[0], (ww - 1 - xx) / pad[2]),
                      1.0 - np.minimum(yy / pad[1], (hh - 1 - yy) / pad[3]))
    img = img.astype(np.float32)
    # scipy.ndimage.gaussian_filter(sigma 5, truncate 4, 'reflect') == a 41-tap Gaussian with reflected borders.
    blurred = cv2.GaussianBlur(img, (41, 41), 5.0, borderType=cv2.BORDER_REFLECT)
    img += (blurred - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return img[y1:y2, x1:x2]
