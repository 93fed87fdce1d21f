"""HyperReenact (Bounareli et al., ICCV 2023) as a reenactment engine.

The source is inverted by the VoxCeleb e4e and keeps its W+ codes; its appearance features come from
ArcFace (IR-SE50 body unit 23 on the 112 warp of its VoxCeleb crop, aligned by five points of its 68
landmarks as officially); the driving face's pose features from DECA's ResNet-50 on its 224 DECA crop
(also placed by the 68 landmarks). The hypernetwork blends both and predicts
offsets Δ for the 13 non-toRGB convs of the VoxCeleb generator, which renders the source codes with
weights W·(1+Δ) and the official truncation (ψ = 0.7 toward the seeded mean latent).
See :mod:`backends.networks.hyperreenact` for the network and its checkpoint.
"""

from __future__ import annotations

import functools

import torch
from PIL import Image

from .. import memory
from ..device import get_device, gpu_task
from ..face.landmarks68 import get_fan
from ..inversion import tensor_to_pil
from ..networks.hyperreenact import (
    HypernetworkBlocks,
    appearance_features,
    arcface_points,
    arcface_theta,
    arcface_warp,
    load_hypernetwork,
)
from ..networks.irse import Backbone, load_arcface_checkpoint
from ..standin import standin_enabled
from ..weights import load_checkpoint
from . import vox
from .engine import Rendered, Side


@memory.managed("HyperReenact: hypernetwork + ArcFace")
@functools.lru_cache(maxsize=1)
def _cached_networks(standin: bool, device: str) -> tuple[HypernetworkBlocks, Backbone]:
    arcface = load_arcface_checkpoint(load_checkpoint("ir_se50").obj).to(device)
    hypernet = load_hypernetwork(load_checkpoint("hyperreenact_hypernetwork").obj).to(device)
    return hypernet, arcface


def get_networks() -> tuple[HypernetworkBlocks, Backbone]:
    """The hypernetwork (1.2 GB) and ArcFace, loaded on first use and kept."""
    return _cached_networks(standin_enabled(), str(get_device()))


def appearance_of(face: vox.VoxFace) -> torch.Tensor:
    """``f_app`` of a source crop [1, 512, 7, 7], computed once per face."""
    if "f_app" not in face.cache:
        _, arcface = get_networks()
        theta = arcface_theta(arcface_points(face.landmarks68), vox.CROP_SIZE, vox.CROP_SIZE)
        with torch.inference_mode():
            face.cache["f_app"] = appearance_features(arcface, arcface_warp(face.tensor.to(get_device()), theta))
    return face.cache["f_app"]


def weight_deltas(source: vox.VoxFace, driving: vox.VoxFace) -> list[torch.Tensor | None]:
    """The 13 per-conv offsets Δ for this source/driving pair."""
    hypernet, _ = get_networks()
    f_pose = vox.deca_of(driving)[0].features.to(get_device())
    with torch.inference_mode():
        return hypernet(f_pose, appearance_of(source)).conv_deltas()


@gpu_task(duration=30)
def reenact_faces(source: vox.VoxFace, driving: vox.VoxFace, psi: float) -> tuple[torch.Tensor, float]:
    """The GPU step: DECA and ArcFace features, the hypernetwork's Δ, the render (float32 CPU image, mean |Δ|)."""
    deltas = weight_deltas(source, driving)
    image = vox.render_on_device(source.wplus, psi, deltas)
    return image, float(torch.stack([d.abs().mean() for d in deltas if d is not None]).mean())


class HyperReenactEngine(vox.VoxCelebSides):
    key = "hyperreenact"
    name = "HyperReenact"
    weights = (*vox.VOX_WEIGHTS, "ir_se50", "hyperreenact_hypernetwork")

    def load(self) -> bool:
        get_networks()
        vox.get_deca()
        get_fan()
        return vox.get_vox_models().standin

    def render(self, source: Side, driving: Side, psi: float) -> Rendered:
        image, mean_abs = reenact_faces(source.state, driving.state, psi)
        return Rendered(tensor_to_pil(image), {"mean_abs_weight_offset": round(mean_abs, 4)})

    def source_preview(self, source: Side, truncate: bool) -> Image.Image:
        return vox.inversion_image(source.state, truncate)

    def driving_preview(self, driving: Side, truncate: bool) -> tuple[Image.Image, str]:
        return vox.deca_crop_image(driving.state), "Driving, DECA crop (pose input)"


ENGINE = HyperReenactEngine()
