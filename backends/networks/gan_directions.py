"""Finding Directions in GAN's Latent Space for Neural Face Reenactment (Bounareli et al., BMVC 2022).

A learned matrix A (with bias) maps a 15-d vector Δp of *differences* in head pose and expression
between a driving and a source face to a shift of the first 8 W+ rows of the 256-px VoxCeleb StyleGAN2:

    w' = w + reshape(A·Δp + b, [8, 512])    (rows 0–7; rows 8–13 untouched)

and the generator renders w' with the official truncation 0.7 — applied *after* the shift, so the
shift is scaled by 0.7 as well. Even Δp = 0 moves the code by the bias b.

Δp, in index order (``Inference.make_shift``), with s = ``shift_scale`` (6.0):

* 0–2: yaw, pitch, roll differences in degrees, times s/40, s/20, s/20; the angles come from DECA's
  global axis-angle through ``batch_axis2euler`` (:func:`axis_angle_to_euler_degrees`);
* 3: jaw opening (DECA ``pose[3]``) on the line through (min, −6) and (max, +6) of its range
  (the 6 is hard-coded, not s);
* 4–14: FLAME expression coefficients 0–10, each on the line through (min, −s) and (max, +s).

The per-parameter (min, max) ranges come with the checkpoint (``ranges_voxceleb.npy``, [54, 2]:
rows 0–2 angles, 3 jaw, 4–53 expressions). Nothing is clamped: values outside the ranges extrapolate.

``A_matrix.pt`` = ``{A_matrix: {linear.weight [4096, 15], linear.bias [4096]}, learned_directions,
shift_scale, w_plus, num_layers_shift, shift_dim}`` (a trainer may add ``step``, ignored).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoints import load_state_dict_strict, safe_load
from ..errors import CheckpointError
from ..standin import Init, seeded_tensor

ANGLE_SCALES = (40.0, 20.0, 20.0)  # degrees that map to one shift_scale, yaw / pitch / roll
JAW_SHIFT = 6.0  # the jaw line spans -6..+6 whatever shift_scale is
N_POSE_DIRECTIONS = 4  # yaw, pitch, roll, jaw
RANGES_ROWS = 54
DIRECTION_NAMES = ("yaw", "pitch", "roll", "jaw") + tuple(f"exp{k}" for k in range(11))


class DirectionMatrix(nn.Module):
    """The learned A with bias: Δp [B, n] -> W+ shift [B, num_layers, shift_dim]."""

    def __init__(self, input_dim: int = 15, shift_dim: int = 512, num_layers: int = 8):
        super().__init__()
        self.input_dim, self.shift_dim, self.num_layers = input_dim, shift_dim, num_layers
        self.linear = nn.Linear(input_dim, shift_dim * num_layers, bias=True)

    def forward(self, delta_p: torch.Tensor) -> torch.Tensor:
        # Row index of the linear output = layer · 512 + channel.
        return self.linear(delta_p).view(-1, self.num_layers, self.shift_dim)


@dataclass(frozen=True)
class DirectionModel:
    """A loaded ``A_matrix.pt``: the matrix and the scalars inference reads."""

    matrix: DirectionMatrix
    learned_directions: int
    shift_scale: float
    num_layers_shift: int
    w_plus: bool = True


def load_direction_matrix(obj_or_path: str | Path | Mapping[str, Any]) -> DirectionModel:
    """``A_matrix.pt`` (a path or the loaded dict), the matrix loaded strictly; ``step`` is ignored.

    ``shift_dim`` is required, as in the official inference (the repository's trainer does not write
    it, so such a file is refused with an explanation instead of a KeyError).
    """
    ckpt = safe_load(obj_or_path, what="GAN directions A matrix") if isinstance(obj_or_path, (str, Path)) \
        else obj_or_path
    if not isinstance(ckpt, Mapping):
        raise CheckpointError("The GAN directions checkpoint is not a dict; expected A_matrix.pt.")
    required = ("A_matrix", "learned_directions", "shift_scale", "w_plus", "num_layers_shift", "shift_dim")
    missing = [k for k in required if k not in ckpt]
    if missing:
        hint = (" The repository's trainer saves no 'shift_dim'; the released A_matrix.pt has it (512)."
                if missing == ["shift_dim"] else "")
        raise CheckpointError(f"The GAN directions checkpoint lacks {', '.join(missing)}.{hint}")
    if not bool(ckpt["w_plus"]):
        raise CheckpointError("This GAN directions checkpoint shifts W, not W+; only the W+ model is supported.")
    n, dim, layers = int(ckpt["learned_directions"]), int(ckpt["shift_dim"]), int(ckpt["num_layers_shift"])
    if n != N_POSE_DIRECTIONS + 11:
        raise CheckpointError(f"The GAN directions checkpoint has {n} directions; the VoxCeleb model has 15.")
    matrix = DirectionMatrix(n, dim, layers)
    load_state_dict_strict(matrix, ckpt["A_matrix"], "GAN directions A matrix")
    return DirectionModel(matrix.eval(), n, float(ckpt["shift_scale"]), layers, True)


# --------------------------------------------------------------------------- DECA angles


def axis_angle_to_euler_degrees(axis_angle: torch.Tensor) -> torch.Tensor:
    """DECA's ``rad2deg(batch_axis2euler(pose[:, :3]))``: [B, 3] axis-angle -> (yaw, pitch, roll) degrees.

    The axis-angle becomes a unit quaternion (cos θ/2, sin θ/2 · v/θ), then a rotation matrix R;
    yaw = asin(R[2,0]), pitch = atan2(R[2,1], R[2,2]) and roll = atan2(R[1,0], R[0,0]), both divided
    by cos(yaw) first; degrees use π as a float32 number. Computed row by row, as the pipeline calls it.
    """
    r = axis_angle.to(torch.float32).reshape(-1, 3)
    theta = torch.linalg.norm(r, dim=1, keepdim=True)
    half = theta * 0.5
    # The official conversion divides by θ; at θ = 0 the quaternion is (1, 0, 0, 0).
    k = torch.where(theta > 0, torch.sin(half) / theta.clamp_min(1e-30), torch.full_like(theta, 0.5))
    q = torch.cat([torch.cos(half), r * k], dim=1)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    r00 = 1 - 2 * (y * y + z * z)
    r10 = 2 * (x * y + w * z)
    r20 = 2 * (x * z - w * y)
    r21 = 2 * (y * z + w * x)
    r22 = 1 - 2 * (x * x + y * y)
    yaw = torch.asin(r20.clamp(-1, 1))
    cy = torch.cos(yaw)
    pitch = torch.atan2(r21 / cy, r22 / cy)
    roll = torch.atan2(r10 / cy, r00 / cy)
    pi = torch.tensor(math.pi, dtype=torch.float32)
    return torch.stack([yaw, pitch, roll], dim=1) * 180.0 / pi


# --------------------------------------------------------------------------- Δp


def _line_slope(x0: float, y0: float, x1: float, y1: float) -> float:
    """Slope of the least-squares line through two points (``numpy.linalg.lstsq``, as officially)."""
    a = np.vstack([[x0, x1], np.ones(2)]).T
    slope, _ = np.linalg.lstsq(a, np.array([y0, y1], dtype=np.float64), rcond=None)[0]
    return float(slope)


@dataclass(frozen=True)
class ShiftScales:
    """Per-direction factors turning parameter differences into Δp."""

    angle: tuple[float, float, float]  # shift_scale / (40, 20, 20)
    jaw: float
    expressions: tuple[float, ...]  # 11 slopes

    @classmethod
    def from_ranges(cls, ranges: np.ndarray, shift_scale: float, n_expressions: int = 11) -> ShiftScales:
        """The official ``initialize_directions`` lines from the [54, 2] (min, max) ranges."""
        r = np.asarray(ranges, dtype=np.float64)
        if r.ndim != 2 or r.shape[1] != 2 or r.shape[0] < N_POSE_DIRECTIONS + n_expressions:
            raise CheckpointError(f"The direction ranges must be a [54, 2] array of (min, max); got {r.shape}.")
        jaw = _line_slope(r[3, 0], -JAW_SHIFT, r[3, 1], JAW_SHIFT)
        exps = tuple(_line_slope(r[4 + k, 0], -shift_scale, r[4 + k, 1], shift_scale) for k in range(n_expressions))
        angle = tuple(shift_scale / s for s in ANGLE_SCALES)
        return cls(angle=angle, jaw=jaw, expressions=exps)  # type: ignore[arg-type]

    @property
    def n_directions(self) -> int:
        return N_POSE_DIRECTIONS + len(self.expressions)


def shift_vector(scales: ShiftScales, angles_source: np.ndarray, angles_target: np.ndarray,
                 pose_source: np.ndarray, pose_target: np.ndarray,
                 exp_source: np.ndarray, exp_target: np.ndarray) -> torch.Tensor:
    """Δp [1, 15] for one source/target pair (``Inference.make_shift``), float32.

    ``angles_*`` (yaw, pitch, roll) degrees, ``pose_*`` DECA pose [6] (jaw at index 3), ``exp_*`` DECA
    expression coefficients [≥ 11]. Computed in float64 from the float32 inputs, stored as float32.
    """
    a_s = np.asarray(angles_source, dtype=np.float32).reshape(3).astype(np.float64)
    a_t = np.asarray(angles_target, dtype=np.float32).reshape(3).astype(np.float64)
    p_s = np.asarray(pose_source, dtype=np.float32).reshape(-1).astype(np.float64)
    p_t = np.asarray(pose_target, dtype=np.float32).reshape(-1).astype(np.float64)
    e_s = np.asarray(exp_source, dtype=np.float32).reshape(-1).astype(np.float64)
    e_t = np.asarray(exp_target, dtype=np.float32).reshape(-1).astype(np.float64)
    out = np.zeros(scales.n_directions, dtype=np.float64)
    for i in range(3):
        out[i] = a_t[i] * scales.angle[i] - a_s[i] * scales.angle[i]
    out[3] = scales.jaw * p_t[3] - scales.jaw * p_s[3]
    for k, slope in enumerate(scales.expressions):
        out[N_POSE_DIRECTIONS + k] = slope * e_t[k] - slope * e_s[k]
    return torch.from_numpy(out.astype(np.float32)).unsqueeze(0)


def shift_wplus(wplus: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``get_shifted_latent_code`` for W+: ``shift`` [B, L, 512] added to rows 0..L−1, other rows unchanged."""
    rows = shift.shape[1]
    out = wplus.expand(shift.shape[0], -1, -1).clone()
    out[:, :rows] += shift.to(out)
    return out


def single_direction(index: int, amount: float, n_directions: int = 15) -> torch.Tensor:
    """Δp [1, n] with one entry set: a reviewer's slider on one learned direction."""
    if not 0 <= index < n_directions:
        raise ValueError(f"direction index {index} outside 0..{n_directions - 1}")
    dp = torch.zeros(1, n_directions)
    dp[0, index] = float(amount)
    return dp


def delta_p_from_sliders(values: Sequence[float], scales: ShiftScales) -> torch.Tensor:
    """Δp from human units: yaw/pitch/roll in degrees, jaw in radians, expressions in FLAME units."""
    v = list(values) + [0.0] * (scales.n_directions - len(values))
    out = [v[0] * scales.angle[0], v[1] * scales.angle[1], v[2] * scales.angle[2], v[3] * scales.jaw]
    out += [v[4 + k] * s for k, s in enumerate(scales.expressions)]
    return torch.tensor([out], dtype=torch.float32)


# --------------------------------------------------------------------------- stand-in weights


def standin_checkpoint_a_matrix(base_seed: int = 0) -> dict[str, Any]:
    """A stand-in ``A_matrix.pt`` in the official structure; base_seed 0 equals the fixture's weights."""
    matrix = {
        "linear.weight": seeded_tensor("linear.weight", (4096, 15), Init("normal", 0.03), base_seed),
        "linear.bias": seeded_tensor("linear.bias", (4096,), Init("normal", 0.05), base_seed),
    }
    return {"A_matrix": matrix, "learned_directions": 15, "shift_scale": 6.0, "w_plus": True,
            "num_layers_shift": 8, "shift_dim": 512, "step": 0}


def standin_ranges(base_seed: int = 0) -> np.ndarray:
    """Plausible synthetic [54, 2] ranges (angles ±45°, jaw 0..0.2 rad, expressions ±(2.5..0.6)), float64."""
    gen = torch.Generator().manual_seed(1000 + base_seed)
    spread = torch.linspace(2.5, 0.6, 50, dtype=torch.float64)
    jitter = 1 + 0.1 * torch.rand(50, 2, generator=gen, dtype=torch.float64)
    exp = torch.stack([-spread * jitter[:, 0], spread * jitter[:, 1]], dim=1)
    head = torch.tensor([[-45.0, 45.0], [-30.0, 30.0], [-25.0, 25.0], [0.0, 0.2]], dtype=torch.float64)
    return torch.cat([head, exp]).numpy()
