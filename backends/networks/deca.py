"""DECA's coarse encoder (``E_flame``): a face crop -> FLAME parameters and a pose feature map.

What the official checkpoint looks like: DECA's release ``deca_model.tar`` is a ``torch.save``
dict ``{'E_flame', 'E_detail', 'D_detail'}`` of plain state dicts (no code is pickled, so it reads
with ``weights_only=True`` whatever its container, zip or legacy tar). Only ``E_flame`` is used here:

* ``encoder.*``: a torchvision-v1.5-style ResNet-50 without ``fc`` (stride on the 3×3 conv of each
  bottleneck; ``conv1``, ``bn1``, ``layer1..4.{i}.{conv1,bn1,conv2,bn2,conv3,bn3}``, ``downsample.{0,1}``);
* ``layers.0`` (2048 -> 1024), ReLU, ``layers.2`` (1024 -> 236): the parameter regressor on the
  global-average-pooled ``layer4`` output. The 236 outputs are shape 100, tex 50, exp 50, pose 6
  (global axis-angle 3 + jaw axis-angle 3), cam 3, light 27.

HyperReenact takes ``layer4``'s output (after ReLU, 2048×7×7) as its pose feature map ``f_pose``;
the GAN-directions method takes the pose and expression parameters.

The input is DECA's 224 crop (:func:`deca_crop`): a square 1.1·1.25 times the mean side of the
68-landmark box, warped the way kornia 0.4.1's ``warp_affine`` does (pixel matrix normalised with
(W−1) but sampled with ``align_corners=False``, a mismatch kept on purpose), in [0, 1], without
ImageNet normalisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_state_dict_strict, safe_load
from ..errors import CheckpointError
from ..face.align import similarity_transform
from ..standin import Init, standin_state_dict

CROP_SIZE = 224
CROP_SCALE = 1.25  # DECA's TestData(scale=1.25)
KPT68_BOX_GROWTH = 1.1  # bbox2point(type='kpt68')
N_PARAMS = 236
# Layout of the 236 regressed values, in order.
PARAM_SPLITS = (("shape", 100), ("tex", 50), ("exp", 50), ("pose", 6), ("cam", 3), ("light", 27))
FEATURE_CHANNELS = 2048


# --------------------------------------------------------------------------- ResNet-50


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1×1 -> 3×3 (stride here) -> 1×1 (×4), BN after each, identity or downsample."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet50(nn.Module):
    """The convolutional part of ResNet-50 (no ``fc``), keys as in DECA's ``E_flame.encoder.*``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_ch = 64
        for i, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), start=1):
            layer = [Bottleneck(in_ch, width, stride)]
            in_ch = width * Bottleneck.expansion
            layer += [Bottleneck(in_ch, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``layer4``'s output [B, 2048, H/32, W/32] (7×7 for a 224 crop)."""
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), kernel_size=3, stride=2, padding=1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@dataclass
class DecaOutput:
    """The regressed FLAME parameters and the ``layer4`` feature map of one batch."""

    params: torch.Tensor  # [B, 236]
    features: torch.Tensor  # [B, 2048, 7, 7]

    def part(self, name: str) -> torch.Tensor:
        """One named slice of the parameters: shape, tex, exp, pose, cam or light."""
        start = 0
        for key, width in PARAM_SPLITS:
            if key == name:
                return self.params[:, start:start + width]
            start += width
        raise KeyError(name)


class DecaEncoder(nn.Module):
    """DECA's ``E_flame``: ResNet-50 features, then the 2048 -> 1024 -> 236 regressor."""

    def __init__(self):
        super().__init__()
        self.encoder = ResNet50()
        self.layers = nn.Sequential(nn.Linear(FEATURE_CHANNELS, 1024), nn.ReLU(), nn.Linear(1024, N_PARAMS))

    def forward(self, crop: torch.Tensor) -> DecaOutput:
        """``crop`` [B, 3, 224, 224] in [0, 1] (see :func:`deca_crop`)."""
        features = self.encoder(crop)
        params = self.layers(F.adaptive_avg_pool2d(features, 1).flatten(1))  # the official avgpool
        return DecaOutput(params=params, features=features)


# --------------------------------------------------------------------------- the 224 crop


def deca_crop_matrix(landmarks68: np.ndarray) -> np.ndarray:
    """The 3×3 pixel matrix taking the photo to DECA's 224 crop, from 68 landmarks (x, y).

    The official ``TestData.get_image_tensor``: box (l, t, r, b) of the landmarks, size
    ``int((r−l + b−t)/2·1.1·1.25)`` around the box centre, whose corners TL, BL, TR go to
    (0, 0), (0, 223), (223, 0) by a least-squares similarity.
    """
    # float32 like the detector's landmarks: the box arithmetic then runs in float32 as officially.
    pts = np.asarray(landmarks68, dtype=np.float32).reshape(-1, 2)
    left, top = pts.min(0)
    right, bottom = pts.max(0)
    return deca_box_matrix(left, top, right, bottom)


def deca_box_matrix(left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """:func:`deca_crop_matrix` from a landmark box directly."""
    old_size = (right - left + bottom - top) / 2 * KPT68_BOX_GROWTH
    center = np.array([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0])
    size = int(old_size * CROP_SCALE)
    half = size / 2
    src = np.array([[center[0] - half, center[1] - half], [center[0] - half, center[1] + half],
                    [center[0] + half, center[1] - half]], dtype=center.dtype)
    dst = np.array([[0, 0], [0, CROP_SIZE - 1], [CROP_SIZE - 1, 0]])
    return similarity_transform(src, dst)


def _pixel_to_unit(height: int, width: int) -> torch.Tensor:
    """kornia 0.4.1's ``normal_transform_pixel``: pixels -> [-1, 1] with a (size − 1) scale, [1, 3, 3] float32."""
    mat = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]])
    mat[0, 0] = mat[0, 0] * 2.0 / (width - 1) if width > 1 else mat[0, 0] * 2.0
    mat[1, 1] = mat[1, 1] * 2.0 / (height - 1) if height > 1 else mat[1, 1] * 2.0
    return mat.unsqueeze(0)


def warp_affine_kornia041(image: torch.Tensor, matrix: torch.Tensor, dsize: tuple[int, int]) -> torch.Tensor:
    """``kornia.warp_affine(image, matrix[:, :2], dsize)`` as kornia 0.4.1 computes it, in plain torch.

    ``matrix`` [B, 3, 3] (or [B, 2, 3]) maps source pixels to destination pixels. It is normalised with
    the (size − 1) convention, inverted, and sampled bilinearly with zero padding and
    ``align_corners=False`` — the two conventions disagree by half a pixel, as in that kornia release.
    The matrices are combined in float32 and in kornia's order, which the parity depends on.
    """
    b, _, h, w = image.shape
    out_h, out_w = dsize
    m = matrix.to(torch.float32)
    if m.shape[-2] == 2:
        m = torch.cat([m, torch.tensor([[[0.0, 0.0, 1.0]]]).expand(m.shape[0], 1, 3)], dim=1)
    src_pix_from_norm = torch.inverse(_pixel_to_unit(h, w))
    dst_norm_from_src_norm = _pixel_to_unit(out_h, out_w) @ (m @ src_pix_from_norm)
    src_norm_from_dst_norm = torch.inverse(dst_norm_from_src_norm).to(image.dtype)
    grid = F.affine_grid(src_norm_from_dst_norm[:, :2], [b, image.shape[1], out_h, out_w], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def gan_to_255(image: torch.Tensor) -> torch.Tensor:
    """The official [-1, 1] -> [0, 255] step before the crop: clamp, (x + 1) / (2 + 1e-5), × 255."""
    return image.clamp(-1, 1).add(1).div(2 + 1e-5).mul(255.0)


def deca_crop(image: torch.Tensor, matrix: np.ndarray | torch.Tensor) -> torch.Tensor:
    """DECA's 224 input from a generator-range image [B, 3, H, W] in [-1, 1] and the crop matrix.

    Clamp and map to [0, 255] (:func:`gan_to_255`), warp (:func:`warp_affine_kornia041`), divide by 255.
    """
    m = torch.as_tensor(np.asarray(matrix, dtype=np.float32) if not isinstance(matrix, torch.Tensor) else matrix)
    m = m.to(torch.float32)
    if m.ndim == 2:
        m = m.unsqueeze(0)
    m = m.expand(image.shape[0], *m.shape[1:])
    return warp_affine_kornia041(gan_to_255(image), m, (CROP_SIZE, CROP_SIZE)).div(255.0)


# --------------------------------------------------------------------------- loading


def load_deca_encoder(obj_or_path: str | Path | Mapping[str, Any]) -> DecaEncoder:
    """DECA's ``E_flame`` from ``deca_model.tar`` (a path or the loaded dict), strictly; eval mode, CPU.

    The file is read with ``weights_only=True`` (it holds only state dicts); ``E_detail`` and
    ``D_detail`` are ignored.
    """
    ckpt = safe_load(obj_or_path, what="DECA") if isinstance(obj_or_path, (str, Path)) else obj_or_path
    if not isinstance(ckpt, Mapping) or "E_flame" not in ckpt:
        keys = sorted(map(str, ckpt))[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(
            f"The DECA checkpoint has no 'E_flame' entry (found: {keys}); expected DECA's deca_model.tar.")
    with torch.device("meta"):
        net = DecaEncoder()
    net = net.to_empty(device="cpu")
    load_state_dict_strict(net, ckpt["E_flame"], "DECA E_flame")
    return net.eval()


# --------------------------------------------------------------------------- stand-in weights


def _deca_init(name: str, current: torch.Tensor) -> Init | None:
    """The hyperreenact fixture's DECA recipe (so base_seed 0 reproduces its ``E_flame`` exactly).

    Convs He N(0, 2/fan_in); BN γ U[0.4, 1.2) except each bottleneck's ``bn3`` U[0.2, 0.4); β N(0, 0.05²);
    running mean N(0, 0.1²), var U[0.5, 1.5); linear layers N(0, 1/in), biases N(0, 0.02²).
    """
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return None
    if current.ndim == 4:
        return Init("normal", (2.0 / current[0].numel()) ** 0.5)
    if current.ndim == 2:
        return Init("normal", (1.0 / current.shape[1]) ** 0.5)
    if name.startswith("layers."):
        return Init("normal", 0.02)
    if leaf == "weight":
        return Init("uniform", 0.2, 0.2) if ".bn3." in name else Init("uniform", 0.4, 0.8)
    if leaf == "bias":
        return Init("normal", 0.05)
    if leaf == "running_mean":
        return Init("normal", 0.1)
    if leaf == "running_var":
        return Init("uniform", 1.0, 0.5)
    raise KeyError(f"no stand-in init rule for {name}")


def standin_checkpoint_deca(base_seed: int = 0) -> dict[str, Any]:
    """A real-size stand-in ``deca_model.tar``: ``{'E_flame': 322 tensors}`` (25.9 M values).

    ``E_detail``/``D_detail`` are left out: nothing here reads them.
    """
    return {"E_flame": standin_state_dict(DecaEncoder(), _deca_init, base_seed)}
