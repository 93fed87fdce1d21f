"""HyperReenact (Bounareli et al., ICCV 2023): a hypernetwork that refines the generator per driving frame.

Data flow, as the official ``Hypernetwork_reenact.forward`` runs it:

* **appearance** ``f_app`` [B, 512, 7, 7]: the source image (generator range, no normalisation) is
  warped to ArcFace's 112 template from 5 landmark points (:func:`arcface_theta`) and run through the
  IR-SE50 body (:mod:`backends.networks.irse`); the output of body unit 23, the last one, is kept;
* **pose** ``f_pose`` [B, 2048, 7, 7]: DECA's ResNet-50 ``layer4`` on the driving frame
  (:mod:`backends.networks.deca`);
* the **hypernetwork** (:class:`HypernetworkBlocks`) maps f_pose to 512 channels (``conv_transf``, part
  of this checkpoint), blends the two with the reenactment module, and predicts a weight offset Δ
  for each of the 13 non-toRGB convs of the 256-px VoxCeleb StyleGAN2;
* the **generator** renders the *source* W+ codes with weights W·(1+Δ) before modulation and
  demodulation (:meth:`backends.networks.stylegan2.Generator.synthesis`), truncation 0.7.

What ``hypernetwork.pt`` looks like: ``{'state_dict': {hypernet.*}}`` or the flat dict; the official
loader keeps keys starting with ``hypernet`` and strips 9 characters. 172 names hold 144 distinct
tensors, 302.6 M parameters (1.2 GB in float32): the one shared hypernet (``w1``, ``b1``, ``w2``,
``b2``) is registered as ``shared_weight_hypernet`` and again inside the 7 shared refinement blocks
(layers 0, 2, 3, 5, 6, 8, 9). :class:`HypernetworkBlocks` registers the same module under all 8 names,
so a strict load needs all 172 and the 28 aliases end up as one tensor.

Quirks kept:

* the blend multiplies with ``torch.matmul`` on [B, 512, 7, 7] — a per-channel 7×7 matrix product,
  not an element-wise product: f = γ_p·f_p + γ_a·f_a + β_p + β_a, γ and β 1×1 convs of their branch;
* refinement blocks: four 3×3 convs (padding 1, 0, 0, 0: 7 -> 7 -> 5 -> 3 -> 1), each followed by
  LeakyReLU(0.01), the last one included;
* shared layers: code = linear(convs(f)); Δ = reshape(code·w2 + b2, [512, 512])·w1 + b1, *viewed* as
  [out, in] without a transpose; the others: a 1×1 conv 512 -> in·out viewed as [out, in];
* Δ is the same for every tap of the 3×3 kernel (the official code repeats it); here it stays
  [B, out, in] and the generator broadcasts it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import safe_load
from ..errors import CheckpointError
from ..face.align import similarity_transform
from ..standin import Init, seeded_tensor
from .irse import Backbone

FEATURE_CHANNELS = 512
N_OUTPUTS = 20  # HyperStyle layer list of the 256 generator: 13 convs + 7 toRGBs
SHARED_LAYERS = (0, 2, 3, 5, 6, 8, 9)
TO_RGB_LAYERS = (1, 4, 7, 10, 13, 16, 19)
# layer index -> (in_channels, out_channels) of the generator conv it tunes (VoxCeleb 256, cm 1).
CONV_SHAPES = {0: (512, 512), 2: (512, 512), 3: (512, 512), 5: (512, 512), 6: (512, 512), 8: (512, 512),
               9: (512, 512), 11: (512, 256), 12: (256, 256), 14: (256, 128), 15: (128, 128),
               17: (128, 64), 18: (64, 64)}
KEY_PREFIX = "hypernet"  # the official filter: startswith('hypernet'), then drop 9 characters

# ArcFace's 112x112 template: right eye, left eye, nose tip, right and left mouth corners (x, y).
ARCFACE_TEMPLATE = np.array([[35.343697, 51.6963], [76.453766, 51.5014], [56.029396, 71.7366],
                             [39.14085, 92.3655], [73.18488, 92.2041]], dtype=np.float32)
ARCFACE_SIZE = 112
APPEARANCE_UNIT = 23  # body unit whose output is f_app


# --------------------------------------------------------------------------- blocks


class SharedWeightsHypernet(nn.Module):
    """z [B, 512] -> Δ [B, out, in]: two matrix products through a 512×512 hidden matrix per sample."""

    def __init__(self, z_dim: int = 512, in_size: int = 512, out_size: int = 512):
        super().__init__()
        self.z_dim, self.in_size, self.out_size = z_dim, in_size, out_size
        self.w1 = nn.Parameter(torch.empty(z_dim, out_size))
        self.b1 = nn.Parameter(torch.empty(out_size))
        self.w2 = nn.Parameter(torch.empty(z_dim, in_size * z_dim))
        self.b2 = nn.Parameter(torch.empty(in_size * z_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        hidden = (z @ self.w2 + self.b2).view(z.shape[0], self.in_size, self.z_dim)
        # [B, in, z] @ [z, out] -> [B, in, out], then *viewed* as [B, out, in] (no transpose, as officially).
        return (hidden @ self.w1 + self.b1).view(z.shape[0], self.out_size, self.in_size)


def _refinement_convs(inner: int) -> nn.Sequential:
    """Four 3×3 convs taking the 7×7 map to 1×1 (padding 1, 0, 0, 0), each with LeakyReLU(0.01)."""
    return nn.Sequential(
        nn.Conv2d(FEATURE_CHANNELS, inner, 3, padding=1), nn.LeakyReLU(),
        nn.Conv2d(inner, inner, 3), nn.LeakyReLU(),
        nn.Conv2d(inner, inner, 3), nn.LeakyReLU(),
        nn.Conv2d(inner, FEATURE_CHANNELS, 3), nn.LeakyReLU(),
    )


class HyperRefinementBlock(nn.Module):
    """A shared layer's block: convs -> linear code -> the shared hypernet (registered here too)."""

    def __init__(self, hypernet: SharedWeightsHypernet, inner: int = 128):
        super().__init__()
        self.convs = _refinement_convs(inner)
        self.linear = nn.Linear(FEATURE_CHANNELS, FEATURE_CHANNELS)
        self.hypernet = hypernet

    def code(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(features).view(-1, FEATURE_CHANNELS))

    def delta(self, code: torch.Tensor) -> torch.Tensor:
        return self.hypernet(code)


class RefinementBlock(nn.Module):
    """A per-layer block: convs -> a 1×1 conv to in·out values viewed as Δ [B, out, in]."""

    def __init__(self, in_ch: int, out_ch: int, inner: int = 256):
        super().__init__()
        self.in_ch, self.out_ch = in_ch, out_ch
        self.convs = _refinement_convs(inner)
        self.output = nn.Conv2d(FEATURE_CHANNELS, in_ch * out_ch, 1)

    def code(self, features: torch.Tensor) -> torch.Tensor:
        return self.convs(features).view(-1, FEATURE_CHANNELS)

    def delta(self, code: torch.Tensor) -> torch.Tensor:
        # Channel o·in + i of the output is Δ[o, i].
        return self.output(code[:, :, None, None]).view(-1, self.out_ch, self.in_ch)


class SpadeBranch(nn.Module):
    """γ and β of one branch: two 1×1 convs of the same input."""

    def __init__(self, channels: int = FEATURE_CHANNELS):
        super().__init__()
        self.conv_gamma = nn.Conv2d(channels, channels, 1)
        self.conv_beta = nn.Conv2d(channels, channels, 1)


class ReenactmentModule(nn.Module):
    """The blend f = γ_p ⊛ f_p + γ_a ⊛ f_a + β_p + β_a, with ⊛ a per-channel 7×7 matrix product."""

    def __init__(self, channels: int = FEATURE_CHANNELS):
        super().__init__()
        self.spade_pose = SpadeBranch(channels)
        self.spade_app = SpadeBranch(channels)

    def forward(self, f_pose: torch.Tensor, f_app: torch.Tensor) -> torch.Tensor:
        p, a = self.spade_pose, self.spade_app
        return (torch.matmul(p.conv_gamma(f_pose), f_pose) + torch.matmul(a.conv_gamma(f_app), f_app)
                + p.conv_beta(f_pose) + a.conv_beta(f_app))


@dataclass
class HypernetOutput:
    """Per-layer offsets (HyperStyle order, None for toRGBs) and the intermediates the fixtures store."""

    deltas: list[torch.Tensor | None]  # N_OUTPUTS entries, [B, out, in] or None
    f_pose_512: torch.Tensor
    f_combined: torch.Tensor
    codes: dict[int, torch.Tensor] = field(default_factory=dict)

    def conv_deltas(self) -> list[torch.Tensor | None]:
        """One entry per styled conv of the generator (toRGB entries dropped), for ``weight_deltas``."""
        return [d for i, d in enumerate(self.deltas) if i not in TO_RGB_LAYERS]


class HypernetworkBlocks(nn.Module):
    """The official ``HypernetworkBlocks_edit`` for the VoxCeleb 256 generator (all 13 convs tuned)."""

    def __init__(self):
        super().__init__()
        self.conv_transf = nn.Conv2d(2048, FEATURE_CHANNELS, 1)
        self.blend_module = ReenactmentModule()
        self.shared_weight_hypernet = SharedWeightsHypernet()
        self.refinement_blocks = nn.ModuleList()
        for idx in range(N_OUTPUTS):
            if idx in TO_RGB_LAYERS:
                block: nn.Module | None = None  # keeps the official numbering refinement_blocks.{idx}
            elif idx in SHARED_LAYERS:
                block = HyperRefinementBlock(self.shared_weight_hypernet)
            else:
                block = RefinementBlock(*CONV_SHAPES[idx])
            self.refinement_blocks.append(block)

    def forward(self, f_pose: torch.Tensor, f_app: torch.Tensor) -> HypernetOutput:
        """``f_pose`` [B, 2048, 7, 7] (DECA layer4), ``f_app`` [B, 512, 7, 7] (ArcFace unit 23)."""
        f_pose_512 = self.conv_transf(f_pose)
        f_combined = self.blend_module(f_pose_512, f_app)
        codes = {idx: block.code(f_combined) for idx, block in enumerate(self.refinement_blocks) if block is not None}
        deltas: list[torch.Tensor | None] = [None] * len(self.refinement_blocks)
        # The 7 shared layers go through the shared hypernet as one batch: its 134 M-value w2 is then
        # read once per frame instead of 7 times (the products are the same row by row).
        shared = [idx for idx in codes if isinstance(self.refinement_blocks[idx], HyperRefinementBlock)]
        if shared:
            batch = f_combined.shape[0]
            stacked = self.shared_weight_hypernet(torch.cat([codes[idx] for idx in shared], dim=0))
            for k, idx in enumerate(shared):
                deltas[idx] = stacked[k * batch:(k + 1) * batch]
        for idx, block in enumerate(self.refinement_blocks):
            if block is not None and idx not in shared:
                deltas[idx] = block.delta(codes[idx])
        return HypernetOutput(deltas, f_pose_512, f_combined, codes)


# --------------------------------------------------------------------------- appearance path


def arcface_points(landmarks68: np.ndarray) -> np.ndarray:
    """The 5 points ArcFace is aligned with: eye centres (36–41, 42–47), nose tip 30, mouth corners 48, 54."""
    lm = np.asarray(landmarks68, dtype=np.float32).reshape(68, 2)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]).astype(np.float32)


def arcface_theta(points5: np.ndarray, height: int, width: int) -> torch.Tensor:
    """The official ``find_affine_transformation``: a [1, 2, 3] ``affine_grid`` matrix for the 112 warp.

    ``points5`` are image pixels (x, y) in template order (right eye, left eye, nose, right and left
    mouth corner — the 68-landmark points of :func:`arcface_points`, or a detector's 5 points).
    The similarity maps template to image; its entries are rewritten in place, in the official order.
    """
    m = similarity_transform(ARCFACE_TEMPLATE, np.asarray(points5, dtype=np.float32))[:2].copy()
    m[0, 0] = m[0, 0] * ARCFACE_SIZE / width
    m[0, 1] = m[0, 1] * ARCFACE_SIZE / width
    m[0, 2] = m[0, 2] * 2 / width + m[0, 1] + m[0, 0] - 1
    m[1, 0] = m[1, 0] * ARCFACE_SIZE / height
    m[1, 1] = m[1, 1] * ARCFACE_SIZE / height
    m[1, 2] = m[1, 2] * 2 / height + m[1, 0] + m[1, 1] - 1
    return torch.from_numpy(m).float().unsqueeze(0)


def arcface_warp(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The 112×112 ArcFace input: ``affine_grid`` + ``grid_sample`` at their defaults (bilinear, zeros)."""
    theta = theta.to(image).expand(image.shape[0], 2, 3)
    grid = F.affine_grid(theta, [image.shape[0], 3, ARCFACE_SIZE, ARCFACE_SIZE], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def appearance_features(backbone: Backbone, warped112: torch.Tensor) -> torch.Tensor:
    """``f_app`` [B, 512, 7, 7]: the output of IR-SE50 body unit 23 on the warped face (no normalisation)."""
    x = backbone.input_layer(warped112)
    for i, unit in enumerate(backbone.body):
        x = unit(x)
        if i == APPEARANCE_UNIT:
            return x
    raise ValueError(f"the backbone has fewer than {APPEARANCE_UNIT + 1} body units")


# --------------------------------------------------------------------------- loading


def hypernet_state_dict(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The official key filter: ``ckpt['state_dict']`` if present, else ``ckpt``; keys starting with
    ``hypernet`` with their first 9 characters dropped (other entries — decoder, opts — are ignored)."""
    source = ckpt["state_dict"] if isinstance(ckpt.get("state_dict"), Mapping) else ckpt
    return {k[len(KEY_PREFIX) + 1:]: v for k, v in source.items() if isinstance(k, str) and k.startswith(KEY_PREFIX)}


def load_hypernetwork(obj_or_path: str | Path | Mapping[str, Any]) -> HypernetworkBlocks:
    """``hypernetwork.pt`` (a path or the loaded dict, nested or flat) loaded strictly; eval mode, CPU.

    All 172 names must be present (the 28 aliases of the shared hypernet included); tensors are
    taken over without a copy, so the 1.2 GB of weights exist once.
    """
    ckpt = safe_load(obj_or_path, what="HyperReenact hypernetwork") if isinstance(obj_or_path, (str, Path)) \
        else obj_or_path
    if not isinstance(ckpt, Mapping):
        raise CheckpointError("The HyperReenact hypernetwork checkpoint is not a dict.")
    state = hypernet_state_dict(ckpt)
    if not state:
        raise CheckpointError(
            "The HyperReenact hypernetwork checkpoint holds no 'hypernet.*' tensors "
            f"(top-level keys: {sorted(map(str, ckpt))[:8]}); expected hypernetwork.pt.")
    with torch.device("meta"):
        net = HypernetworkBlocks()
    _check_layout(net, state)
    net.load_state_dict(state, strict=True, assign=True)
    return net.eval()


def _check_layout(net: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} (file {tuple(state[k].shape)}, model {tuple(v.shape)})" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = ["The HyperReenact hypernetwork checkpoint does not match the expected layout."]
        for label, items in (("Missing keys", missing), ("Unexpected keys", unexpected), ("Wrong shapes", wrong)):
            if items:
                more = f", ... (+{len(items) - 6} more)" if len(items) > 6 else ""
                parts.append(f"{label} ({len(items)}): {', '.join(items[:6])}{more}.")
        raise CheckpointError(" ".join(parts))


def count_parameters(net: nn.Module) -> int:
    """Distinct parameter values (shared tensors counted once)."""
    return sum(p.numel() for p in net.parameters())


# --------------------------------------------------------------------------- stand-in weights

# The fixture's recipe (scales chosen for O(1) activations and offsets of std 0.15-0.3, see its README).
_SPADE_SCALES = {"spade_pose.conv_gamma": 0.17, "spade_app.conv_gamma": 0.03,
                 "spade_pose.conv_beta": 0.5, "spade_app.conv_beta": 0.2}


def _hypernet_init(name: str, shape: tuple[int, ...]) -> Init:
    leaf = name.rsplit(".", 1)[-1]
    if name == "conv_transf.weight":
        return Init("normal", 0.5 / 2048 ** 0.5)
    if name.startswith("blend_module."):
        branch = name.split(".")[1] + "." + name.split(".")[2]
        return Init("normal", _SPADE_SCALES[branch] / 512 ** 0.5) if leaf == "weight" else Init("normal", 0.05)
    if name.startswith("shared_weight_hypernet."):
        return {"w2": Init("normal", (1 / 512) ** 0.5), "w1": Init("normal", 0.06 / 512 ** 0.5),
                "b1": Init("normal", 0.01), "b2": Init("normal", 0.01)}[leaf]
    if ".convs." in name:
        return Init("normal", (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5) if leaf == "weight" \
            else Init("normal", 0.02)
    if ".linear." in name:
        return Init("normal", (1 / 512) ** 0.5) if leaf == "weight" else Init("normal", 0.02)
    if ".output." in name:
        return Init("normal", 0.06 / 512 ** 0.5) if leaf == "weight" else Init("normal", 0.01)
    if leaf == "bias":
        return Init("normal", 0.05)
    raise KeyError(f"no stand-in init rule for {name}")


def standin_checkpoint_hypernetwork(base_seed: int = 0) -> dict[str, Any]:
    """A real-size stand-in ``hypernetwork.pt``: ``{'state_dict': {hypernet.*: 172 names}}``, 302.6 M values.

    The 28 alias names point at the very tensors of ``shared_weight_hypernet`` (as in a real state
    dict). With base_seed 0 the values equal the hyperreenact fixture's manifest.
    """
    with torch.device("meta"):
        template = HypernetworkBlocks().state_dict()
    sd: dict[str, torch.Tensor] = {}
    shared: dict[str, torch.Tensor] = {}
    for key, value in template.items():
        name = f"{KEY_PREFIX}.{key}"
        if ".hypernet." in key:  # an alias of the shared hypernet
            leaf = key.rsplit(".", 1)[-1]
            if leaf not in shared:
                shared[leaf] = seeded_tensor(f"{KEY_PREFIX}.shared_weight_hypernet.{leaf}", tuple(value.shape),
                                             _hypernet_init(f"shared_weight_hypernet.{leaf}", tuple(value.shape)),
                                             base_seed)
            sd[name] = shared[leaf]
            continue
        if key.startswith("shared_weight_hypernet."):
            leaf = key.rsplit(".", 1)[-1]
            if leaf not in shared:
                shared[leaf] = seeded_tensor(name, tuple(value.shape), _hypernet_init(key, tuple(value.shape)),
                                             base_seed)
            sd[name] = shared[leaf]
            continue
        sd[name] = seeded_tensor(name, tuple(value.shape), _hypernet_init(key, tuple(value.shape)), base_seed)
    return {"state_dict": sd}


def conv_deltas_zero(shapes: Sequence[tuple[int, int]] | None = None) -> list[torch.Tensor]:
    """All-zero offsets, one per tuned conv (handy for the Δ = 0 invariant)."""
    shapes = shapes or [CONV_SHAPES[i] for i in sorted(CONV_SHAPES)]
    return [torch.zeros(1, out_ch, in_ch) for in_ch, out_ch in shapes]
