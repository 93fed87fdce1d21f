"""The VoxCeleb stack HyperReenact and the GAN-directions engine share, loaded once.

* the 256-px VoxCeleb StyleGAN2 (channel multiplier 1, 14 W+ rows) and its truncation centre,
  ``G.mean_latent(4096, seed=0)`` (the official code draws fresh random z at every start);
* the VoxCeleb e4e, whose raw codes feed the generator (no ``latent_avg``);
* DECA's ``E_flame`` encoder on the 224 DECA crop;
* the face pipeline's 68 landmarks (2DFAN-4 on the detector's box, :mod:`backends.face.landmarks68`):
  the VoxCeleb crop of a photo or frame is built from them (:func:`backends.face.align_vox`), and they
  are carried into crop coordinates for DECA's crop and HyperReenact's 5 ArcFace points. The official
  code runs the FAN a second time on the 256 crop for those two; the crop is an axis-aligned resize, so
  the points are mapped instead (one FAN pass per face).

Source inversions are cached by pixel content, so moving a slider never re-inverts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .. import memory
from ..device import get_device, get_dtype, gpu_task
from ..face import AlignedFace, align_vox, detect_largest, face_landmarks68, map_points, prepare_face
from ..inversion import LRUCache, content_hash, tensor_to_pil
from ..media import ImageSource, load_image
from ..networks.deca import DecaEncoder, DecaOutput, deca_crop, deca_crop_matrix, load_deca_encoder
from ..networks.e4e import E4EInverter, load_e4e_voxceleb_checkpoint, preprocess_aligned
from ..networks.stylegan2 import Generator, load_rosinality_checkpoint
from ..standin import standin_enabled
from ..weights import load_checkpoint
from .engine import Side

CROP_SIZE = 256
MEAN_LATENT_SAMPLES = 4096
MEAN_LATENT_SEED = 0
VOX_WEIGHTS = ("stylegan2_vox256", "e4e_voxceleb", "deca_model", "fan68")


@dataclass(frozen=True)
class VoxModels:
    generator: Generator
    encoder: E4EInverter
    mean_latent: torch.Tensor  # [1, 512], in ``dtype``
    standin: bool
    device: torch.device
    dtype: torch.dtype = torch.float32  # the device policy's (bfloat16 on CPUs with units); outputs are float32


@memory.managed("VoxCeleb G-256 + e4e")
@functools.lru_cache(maxsize=1)
def _cached_vox(standin: bool, device: str, dtype: torch.dtype = torch.float32) -> VoxModels:
    g = load_checkpoint("stylegan2_vox256")
    e = load_checkpoint("e4e_voxceleb")
    generator = load_rosinality_checkpoint(g.obj, size=256, channel_multiplier=1, device=device)
    encoder = load_e4e_voxceleb_checkpoint(e.obj).to(device)
    used_standin = g.standin or e.standin
    del g, e
    with torch.inference_mode():  # averaged in float32, then cast with the models
        mean_latent = generator.mean_latent(MEAN_LATENT_SAMPLES, seed=MEAN_LATENT_SEED).to(dtype)
    generator, encoder = generator.to(dtype=dtype), encoder.to(dtype=dtype)
    return VoxModels(generator, encoder, mean_latent, used_standin, torch.device(device), dtype)


def get_vox_models() -> VoxModels:
    """G-256 (VoxCeleb), its e4e and the truncation centre, loaded on first use and kept."""
    device = get_device()
    return _cached_vox(standin_enabled(), str(device), get_dtype(device, network="stylegan2_vox256"))


@memory.managed("DECA encoder")
@functools.lru_cache(maxsize=1)
def _cached_deca(standin: bool, device: str) -> DecaEncoder:
    return load_deca_encoder(load_checkpoint("deca_model").obj).to(device)


def get_deca() -> DecaEncoder:
    return _cached_deca(standin_enabled(), str(get_device()))


@dataclass
class VoxFace:
    """A VoxCeleb crop as the engines read it, in crop coordinates."""

    tensor: torch.Tensor  # [1, 3, 256, 256] in [-1, 1]
    landmarks68: np.ndarray  # [68, 2] float32, crop pixels (2DFAN-4's points on the photo, mapped)
    wplus: torch.Tensor | None = None  # [1, 14, 512] for a source
    cache: dict = field(default_factory=dict)  # per-face features (f_app, DECA) computed once


_SOURCES = LRUCache(8)


def clear_caches() -> None:
    _SOURCES.clear()


def vox_face(crop: AlignedFace, landmarks68: np.ndarray) -> VoxFace:
    """The crop as the engines read it, with the photo's 68 landmarks carried into crop pixels."""
    points = map_points(crop.matrix, landmarks68).astype(np.float32)
    return VoxFace(preprocess_aligned(crop.image).unsqueeze(0), points)


def prepare_photo(source: ImageSource, *, what: str, already_aligned: bool, invert: bool
                  ) -> tuple[Image.Image, AlignedFace, VoxFace, list[str]]:
    """Photo -> input policy -> face -> 68 landmarks -> VoxCeleb crop (256) -> crop tensor, landmarks and,
    for a source, e4e W+.

    With ``already_aligned`` the photo's centre square is the crop and the face (and its 68 landmarks)
    is found in it.
    Cached by pixel content (one entry per photo, options and weights).
    """
    models = get_vox_models()
    loaded = load_image(source, what=what)
    key = (content_hash(np.asarray(loaded.image)), already_aligned, invert, models.standin, str(models.device))
    hit = _SOURCES.get(key)
    if hit is not None:
        return hit
    prepared = prepare_face(loaded.image, size=CROP_SIZE, crop="vox", already_aligned=already_aligned, what=what)
    notices = loaded.notices + prepared.notices
    if prepared.face is None:  # already aligned: the crop is the photo; find the face inside it
        face, more = detect_largest(np.asarray(prepared.aligned.image), what=what)
        notices += more
        identity = AlignedFace(prepared.aligned.image, np.array([[1.0, 0, 0], [0, 1.0, 0]]), CROP_SIZE,
                               prepared.aligned.quad)
        face_data = vox_face(identity, face_landmarks68(np.asarray(prepared.aligned.image), face))
    else:
        face_data = vox_face(prepared.aligned, prepared.landmarks68)
    if invert:
        face_data.wplus = encode(models, face_data.tensor)
    out = (prepared.photo, prepared.aligned, face_data, notices)
    _SOURCES.put(key, out)
    return out


def prepare_video_frame(frame: np.ndarray, landmarks: np.ndarray, box: np.ndarray) -> tuple[AlignedFace, VoxFace]:
    """A driving video frame's VoxCeleb crop from the 68 landmarks found in its (smoothed) detector box.

    ``landmarks`` (the tracker's 5 points) are not used: the crops of both VoxCeleb engines come from the 68.
    """
    points68 = face_landmarks68(frame, tuple(float(v) for v in box))  # type: ignore[arg-type]
    crop = align_vox(frame, points68, CROP_SIZE)
    return crop, vox_face(crop, points68)


@gpu_task(duration=30)
def encode(models: VoxModels, crop: torch.Tensor) -> torch.Tensor:
    """Raw VoxCeleb e4e codes [1, 14, 512] (float32, CPU) of a crop tensor in [-1, 1]."""
    return models.encoder.invert(crop.to(device=models.device, dtype=models.dtype)).float().cpu()


def deca_of(face: VoxFace) -> tuple[DecaOutput, torch.Tensor]:
    """DECA's output on the face's 224 crop (cached on the face) and the crop itself [1, 3, 224, 224]."""
    if "deca" not in face.cache:
        crop = deca_crop(face.tensor, deca_crop_matrix(face.landmarks68))
        with torch.inference_mode():
            out = get_deca()(crop.to(get_device()))
        face.cache["deca"] = (DecaOutput(out.params.float().cpu(), out.features.float().cpu()), crop)
    return face.cache["deca"]


@gpu_task(duration=30)
def render(wplus: torch.Tensor, psi: float, weight_deltas=None) -> torch.Tensor:
    """The VoxCeleb generator's image of W+ codes (truncated, optionally with weight offsets), float32 CPU."""
    return render_on_device(wplus, psi, weight_deltas)


def render_on_device(wplus: torch.Tensor, psi: float, weight_deltas=None) -> torch.Tensor:
    """:func:`render` without the GPU seam, for engine steps that are already inside one."""
    models = get_vox_models()
    with torch.inference_mode():
        deltas = None if weight_deltas is None else [
            None if d is None else d.to(device=models.device, dtype=models.dtype) for d in weight_deltas]
        image = models.generator(wplus.to(device=models.device, dtype=models.dtype), truncation=psi,
                                 truncation_latent=models.mean_latent, weight_deltas=deltas)
        return image.float().cpu()


def inversion_image(face: VoxFace, truncate: bool) -> Image.Image:
    """The source's inversion rendered like the results (cached on the face)."""
    key = ("inversion", truncate)
    if key not in face.cache:
        face.cache[key] = tensor_to_pil(render(face.wplus, 0.7 if truncate else 1.0))
    return face.cache[key]


def deca_crop_image(face: VoxFace) -> Image.Image:
    """DECA's 224 input as a picture (what the pose encoder sees)."""
    _, crop = deca_of(face)
    x = (crop[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(x)


class VoxCelebSides:
    """Face preparation shared by the VoxCeleb engines (HyperReenact, GAN directions): the VoxCeleb crop
    of a photo (inverted with the VoxCeleb e4e for the source only) or of a tracked video frame."""

    def prepare_source(self, source: ImageSource, *, already_aligned: bool) -> Side:
        photo, aligned, face, notices = prepare_photo(source, what="source photo",
                                                          already_aligned=already_aligned, invert=True)
        return Side(photo, aligned, face, list(notices))

    def prepare_driving(self, driving: ImageSource, *, already_aligned: bool) -> Side:
        photo, aligned, face, notices = prepare_photo(driving, what="driving photo",
                                                          already_aligned=already_aligned, invert=False)
        return Side(photo, aligned, face, list(notices))

    def prepare_frame(self, frame: np.ndarray, landmarks: np.ndarray, box: np.ndarray) -> Side:
        crop, face = prepare_video_frame(frame, landmarks, box)
        return Side(None, crop, face)
