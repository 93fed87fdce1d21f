"""Photo → FFHQ-aligned face → e4e W+ → reconstruction: the first steps of every StyleGAN tab.

1. **Align**: the input policy and the FFHQ crop at 1024 (:func:`backends.face.prepare_face`);
2. **Invert**: e4e on the crop resized to 256 gives W+ codes [1, 18, 512];
3. **Reconstruct**: the generator's image of those codes, shown to people so they can judge
   what the inversion kept before any edit.

Both steps are cached by the photo's pixels and options, so moving a slider, switching the
truncation or choosing another engine never inverts the same photo twice.

The methods' code truncates even inverted codes toward a mean latent (ψ = 0.7, "faithful");
that mean is ``G.mean_latent(4096, seed=0)``, seeded here so results repeat (the official code
draws fresh random z at every start).

Precision follows the one device policy (:func:`backends.device.get_dtype`): float16 on CUDA with
``FACELAB_FP16=1``, bfloat16 on CPUs with bfloat16 units (``FACELAB_CPU_DTYPE``), float32 everywhere
else. The models are cast when loaded (the mean
latent is computed in float32 first, then cast), inputs are cast to the models' dtype inside
the GPU steps, and every tensor handed back to callers is float32 on CPU, so images, W+ codes
and caches never change dtype.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import memory
from .device import get_device, get_dtype, gpu_task
from .face import AlignedFace, prepare_face
from .media import ImageSource, load_image
from .networks.e4e import E4EInverter, load_e4e_checkpoint, preprocess_aligned
from .networks.stylegan2 import Generator, load_rosinality_checkpoint
from .standin import standin_enabled
from .weights import load_checkpoint

FAITHFUL_PSI = 0.7  # the official repos' truncation, applied even to inverted codes
MEAN_LATENT_SAMPLES = 4096
MEAN_LATENT_SEED = 0
ALIGN_SIZE = 1024
ENCODER_SIZE = 256
CACHE_SIZE = 8


@dataclass(frozen=True)
class InversionModels:
    """The FFHQ-1024 generator, the e4e encoder and the truncation centre, on one device and dtype."""

    generator: Generator
    encoder: E4EInverter
    mean_latent: torch.Tensor  # [1, 512], in ``dtype`` on ``device``
    standin: bool
    device: torch.device
    dtype: torch.dtype = torch.float32  # float16 on CUDA with FACELAB_FP16=1, bfloat16 on CPUs with units


@memory.managed("FFHQ G-1024 + e4e (inversion; reenactment, latent paths, anonymization)", shared=True)
@functools.lru_cache(maxsize=1)
def _cached_models(standin: bool, device: str, dtype: torch.dtype = torch.float32) -> InversionModels:
    g = load_checkpoint("stylegan2_ffhq1024")
    e = load_checkpoint("e4e_ffhq_encode")
    generator = load_rosinality_checkpoint(g.obj, size=1024, channel_multiplier=2, device=device)
    encoder = load_e4e_checkpoint(e.obj).to(device).eval()
    used_standin = g.standin or e.standin
    del g, e  # the checkpoint dicts hold a second copy of every weight
    with torch.inference_mode():
        # The truncation centre is averaged in float32 (4096 mapped z), then cast with the models.
        mean_latent = generator.mean_latent(MEAN_LATENT_SAMPLES, seed=MEAN_LATENT_SEED).to(dtype)
    generator = generator.to(dtype=dtype)
    encoder = encoder.to(dtype=dtype)
    return InversionModels(generator, encoder, mean_latent, used_standin, torch.device(device), dtype)


def get_models() -> InversionModels:
    """The generator and encoder, loaded on first use and kept (one set per stand-in mode, device and dtype)."""
    device = get_device()
    return _cached_models(standin_enabled(), str(device), get_dtype(device, network="stylegan2_ffhq1024"))


def psi_for(truncate: bool) -> float:
    """ψ = 0.7 for the faithful setting, 1 (no truncation) for higher fidelity."""
    return FAITHFUL_PSI if truncate else 1.0


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """A raw generator image [3, H, W] or [1, 3, H, W] in about [-1, 1] as 8-bit RGB (clamped)."""
    if image.ndim == 4:
        image = image[0]
    x = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(x.permute(1, 2, 0).cpu().numpy())


def content_hash(array: np.ndarray | torch.Tensor) -> str:
    """A key for caches: the shape and bytes of an image or a code."""
    data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    digest = hashlib.sha256(repr(data.shape).encode())
    digest.update(np.ascontiguousarray(data).tobytes())
    return digest.hexdigest()


@gpu_task(duration=30)
def encode(models: InversionModels, crops: torch.Tensor) -> torch.Tensor:
    """e4e W+ codes [B, 18, 512] (float32, on CPU) of aligned crops [B, 3, 256, 256] in [-1, 1]."""
    return models.encoder.invert(crops.to(device=models.device, dtype=models.dtype)).float().cpu()


def encode_crop(models: InversionModels, crop: Image.Image) -> torch.Tensor:
    """The W+ code [1, 18, 512] of one aligned crop of any size."""
    return encode(models, preprocess_aligned(crop).unsqueeze(0))


@gpu_task(duration=30)
def render(models: InversionModels, wplus: torch.Tensor, psi: float) -> torch.Tensor:
    """The generator's image of W+ codes after truncation, float32 on CPU."""
    with torch.inference_mode():
        image = models.generator(
            wplus.to(device=models.device, dtype=models.dtype), truncation=psi, truncation_latent=models.mean_latent
        )
        return image.float().cpu()


class LRUCache:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Inversion:
    """A photo, its aligned face and its e4e code."""

    photo: Image.Image
    aligned: AlignedFace
    wplus: torch.Tensor  # [1, 18, 512], CPU
    notices: list[str] = field(default_factory=list)


_INVERSIONS = LRUCache(CACHE_SIZE)
_RENDERS = LRUCache(CACHE_SIZE * 2)


def clear_caches() -> None:
    """Forget every cached inversion and reconstruction (tests, memory pressure)."""
    _INVERSIONS.clear()
    _RENDERS.clear()


def invert_photo(source: ImageSource, *, what: str = "photo", already_aligned: bool = False,
                 engine: str = "auto") -> Inversion:
    """Photo → input policy → FFHQ-aligned 1024 crop → 256 → e4e W+, cached by pixel content.

    The cache keeps the aligned face and the code, never the wording: a photo that was the driving face
    of one request and is the source of the next gets notices that name it as the source.
    Raises :class:`~backends.errors.NoFaceError` when the photo has no face.
    """
    models = get_models()
    loaded = load_image(source, what=what)
    key = (
        content_hash(np.asarray(loaded.image)), already_aligned, engine, models.standin, str(models.device),
        models.dtype,
    )
    hit = _INVERSIONS.get(key)
    if hit is None:
        prepared = prepare_face(
            loaded.image, size=ALIGN_SIZE, crop="ffhq", already_aligned=already_aligned, engine=engine, what=what
        )
        hit = (prepared, encode_crop(models, prepared.aligned.image))
        _INVERSIONS.put(key, hit)
    prepared, wplus = hit
    return Inversion(prepared.photo, prepared.aligned, wplus, loaded.notices + prepared.face_notices(what))


def reconstruction(inversion: Inversion, truncate: bool) -> Image.Image:
    """The generator's rendering of an inversion (truncated like the results), cached."""
    models = get_models()
    key = (content_hash(inversion.wplus), truncate, models.standin, str(models.device), models.dtype)
    hit = _RENDERS.get(key)
    if hit is None:
        hit = tensor_to_pil(render(models, inversion.wplus, psi_for(truncate)))
        _RENDERS.put(key, hit)
    return hit
