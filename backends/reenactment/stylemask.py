"""StyleMask (Bounareli et al., FG 2023): mix source and driving in style space with a learned mask.

1. **Align** both faces with the FFHQ recipe (1024 crop) — :func:`backends.face.prepare_face`;
2. **Invert** each crop with e4e (resized to 256) into StyleGAN2 W+ codes [18, 512];
3. **Truncate** toward the seeded mean latent (ψ = 0.7, "faithful") or not at all;
4. **Mix** in style space with the mask network (:mod:`backends.networks.stylemask`) and decode at
   1024 — layers ≥ 12 and every toRGB come from the source.

Both faces are inverted through the shared, cached inversion step (:mod:`backends.inversion`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .. import inversion, memory
from ..device import gpu_task
from ..face import align_ffhq
from ..inversion import InversionModels, invert_photo, reconstruction, tensor_to_pil
from ..media import ImageSource
from ..networks.e4e import preprocess_aligned
from ..networks.stylemask import MaskNetwork, load_mask_network, stylemask_forward
from ..standin import standin_enabled
from ..weights import load_checkpoint
from .engine import Rendered, Side

VIDEO_ALIGN_SIZE = 256  # driving frames are aligned straight to e4e's input size


@dataclass(frozen=True)
class ReenactmentModels:
    """The shared inversion models plus StyleMask's mask network."""

    inversion: InversionModels
    mask_net: MaskNetwork

    @property
    def standin(self) -> bool:
        return self.inversion.standin

    @property
    def device(self) -> torch.device:
        return self.inversion.device


@memory.managed("StyleMask mask network")
@functools.lru_cache(maxsize=1)
def _cached_mask_net(
    standin: bool, device: str, sections: tuple[int, ...], dtype: torch.dtype = torch.float32
) -> tuple[MaskNetwork, bool]:
    m = load_checkpoint("stylemask_1024")
    return load_mask_network(m.obj, list(sections)).to(device=device, dtype=dtype).eval(), m.standin


def get_models() -> ReenactmentModels:
    """G-1024, e4e and the mask network, loaded on first use and kept, all in the inversion models' dtype."""
    inv = inversion.get_models()
    mask_net, mask_standin = _cached_mask_net(
        standin_enabled(), str(inv.device), tuple(inv.generator.style_sections), inv.dtype
    )
    if mask_standin and not inv.standin:  # pragma: no cover - stand-in mode is process-wide
        raise RuntimeError("mixed real and stand-in weights")
    return ReenactmentModels(inv, mask_net)


@gpu_task(duration=30)
def reenact_codes(
    models: ReenactmentModels, w_source: torch.Tensor, w_driving: torch.Tensor, psi: float
) -> tuple[torch.Tensor, list[float]]:
    """StyleMask on two W+ codes: the decoded image [B, 3, 1024, 1024] (float32, CPU) and each layer's mean mask."""
    inv = models.inversion
    with torch.inference_mode():
        out = stylemask_forward(
            inv.generator,
            models.mask_net,
            w_source.to(device=inv.device, dtype=inv.dtype),
            w_driving.to(device=inv.device, dtype=inv.dtype),
            truncation=psi,
            truncation_latent=inv.mean_latent,
        )
        return out.image.float().cpu(), [float(m.float().mean()) for m in out.masks]


class StyleMaskEngine:
    key = "stylemask"
    name = "StyleMask"
    weights = ("stylegan2_ffhq1024", "e4e_ffhq_encode", "stylemask_1024")

    def load(self) -> bool:
        return get_models().standin

    def _side(self, source: ImageSource, what: str, already_aligned: bool) -> Side:
        inv = invert_photo(source, what=what, already_aligned=already_aligned)
        return Side(inv.photo, inv.aligned, inv, list(inv.notices))

    def prepare_source(self, source: ImageSource, *, already_aligned: bool) -> Side:
        return self._side(source, "source photo", already_aligned)

    def prepare_driving(self, driving: ImageSource, *, already_aligned: bool) -> Side:
        return self._side(driving, "driving photo", already_aligned)

    def prepare_frame(self, frame: np.ndarray, landmarks: np.ndarray, box: np.ndarray) -> Side:
        # Aligning straight to 256 (with the crop's anti-aliasing) skips a 1024 warp that e4e would shrink anyway.
        crop = align_ffhq(frame, landmarks, VIDEO_ALIGN_SIZE)
        wplus = inversion.encode_crop(get_models().inversion, crop.image)
        return Side(None, crop, inversion.Inversion(Image.fromarray(frame), crop, wplus))

    def render_frames(
        self, source: Side, frames: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], psi: float
    ) -> list[Image.Image]:
        """Several driving video frames (frame, landmarks, box) against one source, batched.

        The same steps as :meth:`prepare_frame` + :meth:`render` per frame, with one e4e pass and one
        StyleMask pass (masks, mixing, 1024 decode) for all of them; the generator's batched W+ path
        shares each layer's weight across the batch.
        """
        models = get_models()
        crops = [align_ffhq(frame, landmarks, VIDEO_ALIGN_SIZE) for frame, landmarks, _box in frames]
        codes = inversion.encode(models.inversion, torch.stack([preprocess_aligned(c.image) for c in crops]))
        w_source = source.state.wplus.expand(len(frames), -1, -1)
        images, _ = reenact_codes(models, w_source, codes, psi)
        return [tensor_to_pil(image) for image in images]

    def render(self, source: Side, driving: Side, psi: float) -> Rendered:
        image, mask_means = reenact_codes(get_models(), source.state.wplus, driving.state.wplus, psi)
        return Rendered(tensor_to_pil(image), {"mask_mean_per_layer": [round(m, 4) for m in mask_means]})

    def source_preview(self, source: Side, truncate: bool) -> Image.Image:
        return reconstruction(source.state, truncate)

    def driving_preview(self, driving: Side, truncate: bool) -> tuple[Image.Image, str]:
        return reconstruction(driving.state, truncate), "Driving inversion"


ENGINE = StyleMaskEngine()
