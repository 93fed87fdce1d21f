"""The papers' own metrics, computed the same way on every tab's results.

One module every tab imports (it is infrastructure: it uses ``networks/``, ``face/`` and the weight
manager, never a tab package). Each metric is a plain function; the networks it needs are loaded on
first use and kept (one cached loader per network, keyed by stand-in use and device), and every
function also accepts a network a tab has already loaded, so nothing is loaded twice.

Identity (CSIM). ArcFace IR-SE50 on the face crop the pSp / e4e / FALCO identity losses read, which is
the path ``tests/test_irse_parity.py`` checks against the official code (cases b and c): the face is
FFHQ-aligned (5 landmarks, :func:`backends.face.align_ffhq`) at 256x256 (or taken as given when it is
already an aligned crop), mapped to [-1, 1], cropped to rows 35:223, columns 32:220 (the 188x188 face
region), average-pooled to 112x112 (:func:`backends.networks.irse.falco_identity_embedding`), embedded
and L2-normalised; the metric is the cosine of the two embeddings.

Pose and expression. DECA's ``E_flame`` on its official 224 crop of the face, placed by the face's 68
landmarks (2DFAN-4 on the detector box, :func:`backends.face.face_landmarks68`, then
:func:`backends.networks.deca.deca_crop_matrix`), as the VoxCeleb engines read DECA. The FLAME global
rotation (``pose[:3]``, axis-angle) is turned into yaw, pitch and roll in degrees with
``R = Ry(yaw) · Rx(pitch) · Rz(roll)`` (intrinsic Y-X'-Z''); the pose error is the absolute difference
of each angle (wrapped to ±180°). The expression error is the mean absolute difference of the 50
expression coefficients; the jaw opening is the jaw's rotation about the x axis (``pose[3]``) in degrees.

Perceptual distance (LPIPS). The AlexNet v0.1 LPIPS of :mod:`backends.networks.lpips` (the paper's
formula, the official files' weights through the weight manager) on the two images in [-1, 1], the
second resized to the first's size when they differ.

With stand-in weights every number is computed the same way and flagged ``meaningful: False``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .device import get_device
from .errors import InputError, NoFaceError
from .face import align_ffhq, face_landmarks68
from .face.detect import detect_faces
from .networks import irse
from .networks.clip import ClipEncoder, load_clip
from .networks.deca import DecaEncoder, deca_box_matrix, deca_crop, deca_crop_matrix, load_deca_encoder
from .networks.lpips import Lpips, load_lpips
from .standin import standin_enabled
from .weights import load_checkpoint

IDENTITY_SIZE = 256  # the aligned crop size of the identity path (FALCO_CROP is defined on it)
NOT_MEANINGFUL = "stand-in weights: not meaningful"

# --------------------------------------------------------------------------- what each metric means


@dataclass(frozen=True)
class MetricInfo:
    """How the UI presents a metric: its name, one sentence, and which direction is better."""

    key: str
    name: str
    description: str
    higher_is_better: bool | None  # None: neither (a reading, not a score)
    unit: str = ""

    @property
    def better(self) -> str:
        return {True: "higher is better", False: "lower is better", None: "a reading"}[self.higher_is_better]


METRICS: dict[str, MetricInfo] = {m.key: m for m in (
    MetricInfo("identity_cosine", "Identity (CSIM)",
               "Cosine of ArcFace IR-SE50 embeddings of the two aligned faces (1 = same identity).", True),
    MetricInfo("identity_cosine_anonymized", "Identity after anonymization",
               "ArcFace cosine of the anonymized face to the original; lower means the identity is better hidden.",
               False),
    MetricInfo("pose_error", "Head-pose error",
               "Mean absolute difference of DECA's yaw, pitch and roll between the two faces, in degrees.", False,
               "°"),
    MetricInfo("yaw_error", "Yaw error", "Absolute difference of DECA's head yaw (turning left/right), in degrees.",
               False, "°"),
    MetricInfo("pitch_error", "Pitch error", "Absolute difference of DECA's head pitch (nodding), in degrees.",
               False, "°"),
    MetricInfo("roll_error", "Roll error", "Absolute difference of DECA's head roll (tilting), in degrees.",
               False, "°"),
    MetricInfo("expression_error", "Expression error",
               "Mean absolute difference of DECA's 50 FLAME expression coefficients between the two faces.", False),
    MetricInfo("jaw_error", "Jaw-opening error",
               "Absolute difference of DECA's jaw opening (rotation about the x axis) in degrees.", False, "°"),
    MetricInfo("psnr", "PSNR",
               "Peak signal-to-noise ratio of the result against the target image (8-bit), in dB.", True, "dB"),
    MetricInfo("lpips", "LPIPS",
               "Learned perceptual distance (AlexNet, v0.1) of the result to the target image (0 = identical).",
               False),
    MetricInfo("reidentification", "Re-identification",
               "Rank of the anonymized face by ArcFace cosine to the original among it and decoy faces "
               "(rank 1 = re-identified, so a higher rank hides the identity better).", True),
    MetricInfo("attribute_similarity", "Attribute similarity (FaRL)",
               "Cosine of FaRL embeddings of the original and the result (1 = same facial attributes).", True),
    MetricInfo("identity_cosine_to_start", "Identity to the start",
               "ArcFace cosine of each frame of a latent path to its starting face (1 = identity kept).", True),
    MetricInfo("theme_similarity_as_written", "Theme presence, prompt as written",
               "Mean CLIP cosine of the image to the theme's words (the reference level).", None),
    MetricInfo("theme_similarity_removed", "Theme presence, theme removed",
               "Mean CLIP cosine of the image to the theme's words after removal (below the reference = "
               "the theme is weaker).", False),
    MetricInfo("clip_similarity", "CLIP similarity to words",
               "Cosine of the CLIP ViT-B/32 image embedding to each word's text embedding.", None),
)}


def present(values: dict[str, Any], *, standin: bool) -> dict[str, Any]:
    """Metric values as the UI and the API show them: each with its direction, unit and meaning flag.

    The one-sentence descriptions are given once per panel by :func:`about`.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        info = METRICS.get(key)
        entry: dict[str, Any] = {"value": _rounded(value)}
        if info is not None:
            entry["better"] = info.better
            if info.unit:
                entry["unit"] = info.unit
        entry["meaningful"] = not standin
        if standin:
            entry["note"] = NOT_MEANINGFUL
        out[key] = entry
    return out


def about(keys: Sequence[str]) -> dict[str, str]:
    """``{name: description (direction)}`` of the registered metrics among ``keys``, for the panel's legend."""
    return {METRICS[k].name: f"{METRICS[k].description} ({METRICS[k].better})" for k in dict.fromkeys(keys)
            if k in METRICS}


def _rounded(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 4)
    if isinstance(value, float):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")  # JSON has no infinities
    return value


# --------------------------------------------------------------------------- networks, loaded once


def _frozen(module: torch.nn.Module, device: str) -> torch.nn.Module:
    return module.to(device).eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def _arcface(standin: bool, device: str) -> tuple[irse.Backbone, bool]:
    loaded = load_checkpoint("ir_se50")
    return _frozen(irse.load_arcface_checkpoint(loaded.obj), device), loaded.standin  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def _deca(standin: bool, device: str) -> tuple[DecaEncoder, bool]:
    loaded = load_checkpoint("deca_model")
    return _frozen(load_deca_encoder(loaded.obj), device), loaded.standin  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def _clip(standin: bool, device: str) -> tuple[ClipEncoder, bool]:
    loaded = load_checkpoint("clip_vit_b32")
    return ClipEncoder(load_clip(loaded.obj, device=device)).to(device), loaded.standin


@functools.lru_cache(maxsize=1)
def _lpips(standin: bool, device: str) -> tuple[Lpips, bool]:
    backbone, linear = load_checkpoint("alexnet_torchvision"), load_checkpoint("lpips_alex_v01")
    return _frozen(load_lpips(backbone.obj, linear.obj), device), backbone.standin or linear.standin  # type: ignore[return-value]


def arcface() -> tuple[irse.Backbone, bool]:
    """ArcFace IR-SE50 (frozen, on the device) and whether it is a stand-in."""
    return _arcface(standin_enabled(), str(get_device()))


def deca() -> tuple[DecaEncoder, bool]:
    """DECA's ``E_flame`` (host-supplied weights) and whether it is a stand-in."""
    return _deca(standin_enabled(), str(get_device()))


def clip() -> tuple[ClipEncoder, bool]:
    """CLIP ViT-B/32 (unit embeddings of images and sentences) and whether it is a stand-in."""
    return _clip(standin_enabled(), str(get_device()))


def lpips_net() -> tuple[Lpips, bool]:
    """LPIPS (AlexNet backbone and v0.1 linear layers, frozen, on the device) and whether it is a stand-in."""
    return _lpips(standin_enabled(), str(get_device()))


def clear_caches() -> None:
    for cached in (_arcface, _deca, _clip, _lpips):
        cached.cache_clear()


# --------------------------------------------------------------------------- face crops


@dataclass
class FaceCrop:
    """An image prepared for a metric network, and how the face was found."""

    tensor: torch.Tensor  # [1, 3, H, W] in [-1, 1]
    how: str  # "detected" or "as given"


def _rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError("Metrics need 8-bit RGB images.")
    return np.ascontiguousarray(arr)


def _to_pm1(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).float().div(127.5).sub(1.0)


def identity_crop(image: Image.Image | np.ndarray, *, aligned: bool = False) -> FaceCrop:
    """The 256 FFHQ-aligned face in [-1, 1]: detected and aligned, or (``aligned``) the image as given.

    A face that cannot be found (a stand-in result is noise) falls back to the image as given.
    """
    rgb = _rgb(image)
    if not aligned:
        try:
            face = detect_faces(rgb, what="image")[0]
            return FaceCrop(_to_pm1(np.asarray(align_ffhq(rgb, face.landmarks, IDENTITY_SIZE).image)), "detected")
        except NoFaceError:
            pass
    return FaceCrop(_to_pm1(rgb), "as given")


def identity_embedding(crop: torch.Tensor, net: irse.Backbone | None = None) -> torch.Tensor:
    """Unit ArcFace embeddings [B, 512] of aligned faces [B, 3, H, W] in [-1, 1] (the parity-checked path)."""
    net = net if net is not None else arcface()[0]
    device = next(net.parameters()).device
    with torch.inference_mode():
        return irse.falco_identity_embedding(crop.to(device, torch.float32), net).float().cpu()


def identity_pair(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, *, aligned: bool = False,
                  net: irse.Backbone | None = None) -> tuple[float, str]:
    """CSIM of the faces of ``a`` and ``b`` and how they were cropped.

    Both faces are read the same way: detected and aligned when a face is found in each, else both taken
    as given (two crops in one frame, such as a source crop and its reenactment, stay comparable).
    """
    ca, cb = identity_crop(a, aligned=aligned), identity_crop(b, aligned=aligned)
    if ca.how != cb.how:
        ca, cb = identity_crop(a, aligned=True), identity_crop(b, aligned=True)
    ea, eb = identity_embedding(ca.tensor, net), identity_embedding(cb.tensor, net)
    return float((ea * eb).sum()), ca.how


def identity_cosine(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, *, aligned: bool = False,
                    net: irse.Backbone | None = None) -> float:
    """CSIM: the cosine of the ArcFace embeddings of the faces of ``a`` and ``b``."""
    return identity_pair(a, b, aligned=aligned, net=net)[0]


def identity_curve(images: Sequence[Image.Image], reference: int = 0, *, aligned: bool = True,
                   net: irse.Backbone | None = None) -> list[float]:
    """The identity cosine of every image to ``images[reference]`` (a latent path's strip)."""
    crops = torch.cat([identity_crop(im, aligned=aligned).tensor for im in images])
    emb = identity_embedding(crops, net)
    return (emb @ emb[reference]).tolist()


# --------------------------------------------------------------------------- re-identification


@dataclass
class Reidentification:
    rank: int  # 1 = the anonymized face is the nearest to the original
    of: int  # anonymized + decoys
    cosine: float  # the anonymized face's cosine to the original
    best_decoy: float  # the highest decoy cosine (-1 without decoys)

    @property
    def reidentified(self) -> bool:
        return self.rank == 1

    def text(self) -> str:
        return f"re-identified: {'yes' if self.reidentified else 'no'} (rank {self.rank} of {self.of})"

    def to_dict(self) -> dict[str, Any]:
        return {"reidentified": self.reidentified, "rank": self.rank, "of": self.of, "cosine": round(self.cosine, 4),
                "best_decoy_cosine": round(self.best_decoy, 4), "text": self.text()}


def reidentification(original: torch.Tensor, anonymized: torch.Tensor, decoys: torch.Tensor) -> Reidentification:
    """Where the anonymized face ranks, by cosine to the original, among itself and ``decoys``.

    Embeddings are unit rows (``original`` [512] or [1, 512], ``decoys`` [N, 512]). A decoy tied with the
    anonymized face ranks ahead of it (ties do not count as re-identified).
    """
    q = original.reshape(-1).float()
    cos = float(anonymized.reshape(-1).float() @ q)
    d = decoys.reshape(-1, q.numel()).float() @ q if decoys.numel() else torch.empty(0)
    rank = 1 + int((d >= cos).sum())
    return Reidentification(rank, 1 + int(d.numel()), cos, float(d.max()) if d.numel() else -1.0)


# --------------------------------------------------------------------------- pose and expression


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: rotation matrices [..., 3, 3] of axis-angle vectors [..., 3] (radians)."""
    v = v.double()
    theta = v.norm(dim=-1, keepdim=True)
    k = v / theta.clamp_min(1e-12)
    kx, ky, kz = k.unbind(-1)
    zero = torch.zeros_like(kx)
    cross = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=v.dtype).expand_as(cross)
    return eye + s * cross + (1 - c) * (cross @ cross)


def yaw_pitch_roll(rotation: torch.Tensor) -> torch.Tensor:
    """Yaw, pitch, roll in degrees [..., 3] of rotation matrices with ``R = Ry(yaw) · Rx(pitch) · Rz(roll)``."""
    r = rotation.double()
    pitch = torch.asin((-r[..., 1, 2]).clamp(-1, 1))
    yaw = torch.atan2(r[..., 0, 2], r[..., 2, 2])
    roll = torch.atan2(r[..., 1, 0], r[..., 1, 1])
    return torch.rad2deg(torch.stack([yaw, pitch, roll], dim=-1))


@dataclass
class FacePose:
    """What the pose and expression metrics read of one face (from DECA's FLAME parameters)."""

    yaw_pitch_roll: tuple[float, float, float]  # degrees
    jaw_opening: float  # degrees
    expression: np.ndarray  # [50]
    how: str = ""

    @classmethod
    def from_params(cls, exp: torch.Tensor, pose: torch.Tensor, how: str = "") -> FacePose:
        """From DECA's ``exp`` [50] and ``pose`` [6] (global axis-angle, then jaw axis-angle)."""
        pose = pose.reshape(-1).double()
        angles = yaw_pitch_roll(axis_angle_to_matrix(pose[:3]))
        return cls(tuple(float(a) for a in angles), math.degrees(float(pose[3])),  # type: ignore[arg-type]
                   exp.reshape(-1).double().numpy(), how)


def _wrap(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def pose_errors(a: FacePose, b: FacePose) -> dict[str, float]:
    """Per-angle absolute pose differences (degrees), their mean, the expression L1 and the jaw difference."""
    diffs = [abs(_wrap(x - y)) for x, y in zip(a.yaw_pitch_roll, b.yaw_pitch_roll, strict=True)]
    return {
        "pose_error": sum(diffs) / 3.0,
        "yaw_error": diffs[0], "pitch_error": diffs[1], "roll_error": diffs[2],
        "expression_error": float(np.abs(a.expression - b.expression).mean()),
        "jaw_error": abs(a.jaw_opening - b.jaw_opening),
    }


def face_pose(image: Image.Image | np.ndarray, *, net: DecaEncoder | None = None) -> FacePose:
    """DECA's reading of the largest face of ``image``: its official 224 crop from the face's 68 landmarks
    (2DFAN-4 on the detector box, as the VoxCeleb engines find them), or the whole image when no face is found."""
    rgb = _rgb(image)
    h, w = rgb.shape[:2]
    try:
        face = detect_faces(rgb, what="image")[0]
        matrix, how = deca_crop_matrix(face_landmarks68(rgb, face)), "detected"
    except NoFaceError:
        matrix, how = deca_box_matrix(0.0, 0.0, float(w), float(h)), "as given"
    net = net if net is not None else deca()[0]
    device = next(net.parameters()).device
    crop = deca_crop(_to_pm1(rgb), matrix)
    with torch.inference_mode():
        out = net(crop.to(device))
    return FacePose.from_params(out.part("exp")[0].float().cpu(), out.part("pose")[0].float().cpu(), how)


# --------------------------------------------------------------------------- pixels and CLIP


def psnr(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    """PSNR in dB of two 8-bit images of one size (``inf`` when they are identical)."""
    x, y = _rgb(a).astype(np.float64), _rgb(b).astype(np.float64)
    if x.shape != y.shape:
        raise InputError(f"PSNR needs images of one size, got {x.shape[1::-1]} and {y.shape[1::-1]}.")
    mse = float(((x - y) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def lpips(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, *, net: Lpips | None = None) -> float:
    """LPIPS of two 8-bit images (``b`` is resized to ``a``'s size when they differ); 0 for identical images."""
    x, y = _rgb(a), _rgb(b)
    if x.shape != y.shape:
        y = np.asarray(Image.fromarray(y).resize((x.shape[1], x.shape[0]), Image.Resampling.LANCZOS))
    net = net if net is not None else lpips_net()[0]
    device = next(net.parameters()).device
    with torch.inference_mode():
        return float(net(_to_pm1(x).to(device), _to_pm1(y).to(device))[0])


def clip_similarity(image: Image.Image, words: Sequence[str], *, template: str = "{}",
                    encoder: ClipEncoder | None = None) -> dict[str, float]:
    """The cosine of CLIP's embedding of ``image`` to that of each word (as ``template.format(word)``)."""
    if not words:
        return {}
    encoder = encoder if encoder is not None else clip()[0]
    device = encoder.mean.device
    x = torch.from_numpy(_rgb(image).copy()).permute(2, 0, 1).unsqueeze(0).float().div(255.0).to(device)
    with torch.inference_mode():
        img = encoder.encode_images(x, generator_range=False).float()
        text = encoder.encode_texts([template.format(w) for w in words]).float()
    sims = (F.normalize(text, dim=-1) @ img[0]).cpu().tolist()
    return dict(zip(words, sims, strict=True))
