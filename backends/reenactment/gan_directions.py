"""GAN directions (Bounareli et al., BMVC 2022) as a reenactment engine, plus single-direction sliders.

DECA reads head pose (yaw, pitch, roll from the global rotation, the jaw opening) and 11 expression
coefficients from the source and the driving crops; their differences, scaled by the per-parameter
ranges that come with the checkpoint, form Δp; the learned matrix maps Δp to a shift of the first 8
W+ rows of the source's e4e codes, and the VoxCeleb generator renders the shifted codes with the
official truncation (applied after the shift). See :mod:`backends.networks.gan_directions`.

The sliders drive single directions on a source photo alone: degrees for the angles, radians for the
jaw, FLAME units for the expression coefficients.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import memory
from ..device import gpu_task
from ..errors import CheckpointError, InputError
from ..face.landmarks68 import get_fan
from ..inversion import tensor_to_pil
from ..media import ImageSource
from ..networks.gan_directions import (
    DIRECTION_NAMES,
    DirectionModel,
    ShiftScales,
    axis_angle_to_euler_degrees,
    delta_p_from_sliders,
    load_direction_matrix,
    shift_vector,
    shift_wplus,
)
from ..standin import standin_enabled
from ..weights import load_checkpoint
from . import vox
from .engine import Rendered, Side, require_engine

SLIDER_NAMES = DIRECTION_NAMES


@memory.managed("GAN directions: A matrix")
@functools.lru_cache(maxsize=1)
def _cached_model(standin: bool) -> tuple[DirectionModel, ShiftScales]:
    model = load_direction_matrix(load_checkpoint("gan_directions_vox").obj)
    ranges = load_checkpoint("gan_directions_ranges").obj
    if not isinstance(ranges, np.ndarray):
        raise CheckpointError("ranges_voxceleb.npy must hold a [54, 2] float array.")
    return model, ShiftScales.from_ranges(ranges, model.shift_scale)


def get_model() -> tuple[DirectionModel, ShiftScales]:
    """The A matrix and the Δp scales from the host's ranges, loaded on first use and kept."""
    return _cached_model(standin_enabled())


def deca_parameters(face: vox.VoxFace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(yaw, pitch, roll) degrees, DECA pose [6] and expression [50] of a crop."""
    out, _ = vox.deca_of(face)
    pose, exp = out.part("pose"), out.part("exp")
    angles = axis_angle_to_euler_degrees(pose[:, :3])[0]
    return angles.numpy(), pose[0].numpy(), exp[0].numpy()


def render_shift(wplus: torch.Tensor, delta_p: torch.Tensor, psi: float) -> torch.Tensor:
    """A·Δp + b added to W+ rows 0–7, rendered with truncation after the shift (float32 CPU image)."""
    model, _ = get_model()
    with torch.inference_mode():
        shift = model.matrix(delta_p.float())
    return vox.render(shift_wplus(wplus, shift), psi)


@gpu_task(duration=30)
def reenact_faces(engine: GanDirectionsEngine, source: Side, driving: Side, psi: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The GPU step: DECA on both crops, Δp, the shift and the render (image, Δp)."""
    dp = engine.delta_p(source, driving)
    model, _ = get_model()
    with torch.inference_mode():
        shift = model.matrix(dp)
    return vox.render_on_device(shift_wplus(source.state.wplus, shift), psi), dp


class GanDirectionsEngine(vox.VoxCelebSides):
    key = "gan_directions"
    name = "GAN directions"
    weights = (*vox.VOX_WEIGHTS, "gan_directions_vox", "gan_directions_ranges")

    def load(self) -> bool:
        get_model()
        vox.get_deca()
        get_fan()
        return vox.get_vox_models().standin

    def delta_p(self, source: Side, driving: Side) -> torch.Tensor:
        _, scales = get_model()
        a_s, p_s, e_s = deca_parameters(source.state)
        a_t, p_t, e_t = deca_parameters(driving.state)
        return shift_vector(scales, a_s, a_t, p_s, p_t, e_s, e_t)

    def render(self, source: Side, driving: Side, psi: float) -> Rendered:
        image, dp = reenact_faces(self, source, driving, psi)
        return Rendered(tensor_to_pil(image), {"delta_p": dict(zip(DIRECTION_NAMES, np.round(dp[0].numpy(), 4)
                                                                        .tolist(), strict=True))})

    def source_preview(self, source: Side, truncate: bool) -> Image.Image:
        return vox.inversion_image(source.state, truncate)

    def driving_preview(self, driving: Side, truncate: bool) -> tuple[Image.Image, str]:
        return vox.deca_crop_image(driving.state), "Driving, DECA crop (pose and expression input)"


ENGINE = GanDirectionsEngine()


@dataclass
class DirectionEdit:
    """A source photo moved along single learned directions."""

    source_aligned: Image.Image
    source_inversion: Image.Image
    result: Image.Image
    values: dict[str, float]
    delta_p: list[float]
    standin: bool
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"mode": "directions", "engine": "gan_directions", "values": self.values,
                "delta_p": [round(v, 4) for v in self.delta_p], "standin": self.standin,
                "seconds": round(self.seconds, 2), "notices": list(self.notices)}


def edit_directions(source: ImageSource, values: Sequence[float], *, truncate: bool = True,
                    already_aligned: bool = False) -> DirectionEdit:
    """Move the source along the directions: ``values`` = yaw, pitch, roll (degrees), jaw (radians),
    expression 0–10 (FLAME units), any prefix of that list; the rest are 0. No driving frame is needed.
    """
    start = time.perf_counter()
    if source is None:
        raise InputError("Please upload a source photo (the face to move).")
    values = [float(v) for v in values]
    if len(values) > len(DIRECTION_NAMES):
        raise InputError(f"At most {len(DIRECTION_NAMES)} direction values are accepted, got {len(values)}.")
    require_engine(ENGINE.key)
    standin = ENGINE.load()
    side = ENGINE.prepare_source(source, already_aligned=already_aligned)
    _, scales = get_model()
    dp = delta_p_from_sliders(values, scales)
    psi = 0.7 if truncate else 1.0
    image = render_shift(side.state.wplus, dp, psi)
    notices = list(side.notices)
    if standin:
        notices.append("Stand-in weights are in use: the images are not results of GAN directions.")
    padded = values + [0.0] * (len(DIRECTION_NAMES) - len(values))
    return DirectionEdit(
        source_aligned=side.aligned.image, source_inversion=vox.inversion_image(side.state, truncate),
        result=tensor_to_pil(image), values=dict(zip(DIRECTION_NAMES, padded, strict=True)),
        delta_p=dp[0].tolist(), standin=standin, notices=notices, seconds=time.perf_counter() - start)
