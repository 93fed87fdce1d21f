"""ContraCLIP latent support sets (Tzelepis et al., 2022): curved paths in StyleGAN2's W+.

What the official checkpoint looks like (``models/latent_support_sets.pt`` of an experiment):

* a bare state dict, no wrapper and no prefix, with exactly two tensors:
  ``SUPPORT_SETS`` float32 (K, 2D·dim) and ``LOGGAMMA`` float32 (K, 1);
* K paths, each with D *dipoles*, i.e. 2D support vectors of dimension ``dim``. For the
  FFHQ W+ experiments ``dim`` = 12·512 = 6144: W+ layers 0..11 flattened layer-major
  (layer l occupies ``[512·l, 512·(l+1))``); layers 12..17 never move;
* row k reshaped to (2D, dim) gives support vector i with weight α_i = +1 for even i and
  −1 for odd i. The weights are **not stored**: they are rebuilt at construction;
* tensors trained on a GPU are saved as CUDA tensors, so the file is read with
  ``map_location='cpu'`` (:func:`backends.checkpoints.safe_load` always does);
* next to it, ``semantic_dipoles.json`` holds the K ``[positive, negative]`` sentences.

Path k is the flow of the unit gradient of an RBF potential

    f_k(x) = Σ_i α_i exp(−γ_k ‖x − v_i‖²),      γ_k = exp(LOGGAMMA[k]),
    d_k(x) = ∇f_k(x) / ‖∇f_k(x)‖,   ∇f_k(x) = −2 γ_k Σ_i α_i exp(−γ_k ‖x − v_i‖²) (x − v_i),

computed here in closed form (autograd is used only by the tests, as a check). A walk is an
Euler integration that recomputes the direction at the *current* code at every step, so each
step moves layers 0..11 by exactly the step size and leaves layers 12..17 bit-identical.

Quirk kept as an option: the official traversal script renders ``G(code + shift)`` for every
stored point, so the image of step t shows the last shift twice (x_{t−1} + 2·ε·d). Face Lab
renders the stored codes by default; :func:`render_codes` gives the official variant on request.

Training-time initialisation (the official recipe): radii r_k = arange(0.9·R, 1.25·R, 0.35·R/K)
around the Jung radius R of the latent codes, dipoles (v, −v) with ‖v‖ = r_k, and
log γ_k = log(−ln β / (2 r_k)²) with β = ``lss_beta`` = 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import safe_load
from ..errors import CheckpointError, InputError
from ..standin import Init, seeded_tensor

LATENT_DIM = 512
NUM_WPLUS = 18
MOVED_LAYERS = 12  # the official ``stylegan_layer`` = 11: W+ rows 0..11 move
SUPPORT_DIM = MOVED_LAYERS * LATENT_DIM  # 6144
STATE_KEYS = ("SUPPORT_SETS", "LOGGAMMA")
LSS_BETA = 0.5  # lss_beta of the official train scripts
RADIUS_LOW, RADIUS_HIGH = 0.90, 1.25  # init radii span [0.9 R, 1.25 R)
# models/jung_radii.json, stylegan2_ffhq1024, W+ up to layer 11: R(ψ) = slope·ψ + intercept.
FFHQ_JUNG_RADIUS_LAYER11 = (68.27991356833932, 3.2974155104170677e-06)
DEFAULT_EPS = 0.15  # step size of the official eval scripts (W+ experiments)


def official_alphas(num_paths: int, num_dipoles: int) -> torch.Tensor:
    """The ±1 RBF weights, (K, 2D): [+1, −1] repeated D times for every path, as the official code builds them."""
    row = torch.tensor([1.0, -1.0]).repeat(num_dipoles)
    return row.unsqueeze(0).repeat(num_paths, 1)


def jung_radius_ffhq(truncation: float) -> float:
    """The official Jung radius of FFHQ-1024 W+ layers 0..11 at a truncation ψ (linear fit in ψ)."""
    slope, intercept = FFHQ_JUNG_RADIUS_LAYER11
    return slope * truncation + intercept


def jung_radius(codes: torch.Tensor) -> float:
    """Jung's bound on the radius of the smallest ball holding ``codes`` (N, n): diam·sqrt(n / (2(n+1)))."""
    flat = codes.reshape(codes.shape[0], -1).double()
    n = flat.shape[1]
    return float(torch.cdist(flat, flat).max() * math.sqrt(n / (2 * (n + 1))))


def init_radii(radius: float, num_paths: int) -> torch.Tensor:
    """The official init radii: ``arange(0.9R, 1.25R, 0.35R/K)`` (float32, as torch computes it)."""
    low, high = RADIUS_LOW * radius, RADIUS_HIGH * radius
    return torch.arange(low, high, (high - low) / num_paths)[:num_paths]


def init_loggamma(radii: torch.Tensor, beta: float = LSS_BETA) -> torch.Tensor:
    """The official γ rule: γ_k = −ln β / (2 r_k)², returned as log γ, (K, 1)."""
    gammas = [-math.log(beta) / float(2 * r) ** 2 for r in radii]
    return torch.log(torch.tensor(gammas, dtype=torch.float32)).reshape(-1, 1)


class SupportSets(nn.Module):
    """K RBF paths, each from D dipoles; parameter names are the official state-dict keys."""

    def __init__(self, num_paths: int, num_dipoles: int, dim: int = SUPPORT_DIM):
        super().__init__()
        self.num_paths, self.num_dipoles, self.dim = num_paths, num_dipoles, dim
        self.SUPPORT_SETS = nn.Parameter(torch.zeros(num_paths, 2 * num_dipoles * dim))
        self.LOGGAMMA = nn.Parameter(torch.zeros(num_paths, 1))
        # Not in the checkpoint: rebuilt from the shape, like the official attribute.
        self.register_buffer("ALPHAS", official_alphas(num_paths, num_dipoles), persistent=False)

    @classmethod
    def initialised(cls, num_paths: int, num_dipoles: int, radius: float, dim: int = SUPPORT_DIM,
                    beta: float = LSS_BETA, generator: torch.Generator | None = None) -> SupportSets:
        """Support sets at the official training init: dipoles (v, −v), ‖v‖ = r_k, γ from β and r_k."""
        lss = cls(num_paths, num_dipoles, dim)
        radii = init_radii(radius, num_paths)
        v = torch.randn(num_paths, num_dipoles, dim, generator=generator)
        v = v / v.norm(dim=2, keepdim=True) * radii.view(-1, 1, 1)
        vectors = torch.stack([v, -v], dim=2).reshape(num_paths, 2 * num_dipoles * dim)
        with torch.no_grad():
            lss.SUPPORT_SETS.copy_(vectors)
            lss.LOGGAMMA.copy_(init_loggamma(radii, beta))
        return lss

    def vectors(self, paths: torch.Tensor) -> torch.Tensor:
        """Support vectors of the given paths, (B, 2D, dim)."""
        return self.SUPPORT_SETS[paths].reshape(-1, 2 * self.num_dipoles, self.dim)

    def _terms(self, x: torch.Tensor, paths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        diff = x.unsqueeze(1) - self.vectors(paths)  # (B, 2D, dim)
        gamma = torch.exp(self.LOGGAMMA[paths]).unsqueeze(2)  # (B, 1, 1)
        weights = self.ALPHAS[paths].unsqueeze(2) * torch.exp(-gamma * diff.pow(2).sum(2, keepdim=True))
        return diff, gamma, weights

    def potential(self, x: torch.Tensor, paths: torch.Tensor | int) -> torch.Tensor:
        """f_k(x) for each row of ``x`` (B, dim): the RBF sum whose gradient is the path."""
        paths = self._paths(paths, x.shape[0])
        _, _, weights = self._terms(x, paths)
        return weights.sum(dim=(1, 2))

    def gradient(self, x: torch.Tensor, paths: torch.Tensor | int) -> torch.Tensor:
        """∇f_k(x) in closed form, (B, dim)."""
        paths = self._paths(paths, x.shape[0])
        diff, gamma, weights = self._terms(x, paths)
        return -2.0 * (gamma * weights * diff).sum(dim=1)

    def direction(self, x: torch.Tensor, paths: torch.Tensor | int) -> torch.Tensor:
        """The unit direction d_k(x) = ∇f_k / ‖∇f_k‖ at each row of ``x`` (B, dim)."""
        grad = self.gradient(x, paths)
        return grad / grad.norm(dim=1, keepdim=True)

    def forward(self, support_sets_mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The official call: one-hot masks (B, K) select each row's path."""
        return self.direction(x, support_sets_mask.argmax(dim=1))

    def _paths(self, paths: torch.Tensor | int, batch: int) -> torch.Tensor:
        if isinstance(paths, int):
            if not 0 <= paths < self.num_paths:
                raise InputError(f"Path {paths} does not exist: this model has paths 0 to {self.num_paths - 1}.")
            return torch.full((batch,), paths, dtype=torch.long, device=self.SUPPORT_SETS.device)
        return paths.to(self.SUPPORT_SETS.device).long()


# --------------------------------------------------------------------------- W+ helpers

def moved_part(wplus: torch.Tensor, layers: int = MOVED_LAYERS) -> torch.Tensor:
    """W+ rows 0..layers−1 flattened layer-major: (B, 18, 512) → (B, layers·512)."""
    return wplus[:, :layers].reshape(wplus.shape[0], -1)


def pad_shift(shift: torch.Tensor, num_rows: int = NUM_WPLUS, latent_dim: int = LATENT_DIM) -> torch.Tensor:
    """A (B, layers·512) shift as a W+ shift (B, 18, 512), zero on the rows that do not move."""
    rows = shift.reshape(shift.shape[0], -1, latent_dim)
    pad = torch.zeros(shift.shape[0], num_rows - rows.shape[1], latent_dim, dtype=shift.dtype, device=shift.device)
    return torch.cat([rows, pad], dim=1)


@dataclass
class Traversal:
    """An Euler walk both ways along one path, in the official order [x₋ₙ … x₋₁, x₀, x₁ … xₙ]."""

    codes: torch.Tensor  # (2n+1, 18, 512): the stored codes
    shifts: torch.Tensor  # (2n+1, 18, 512): the shift that produced each code, zero at the origin
    eps: float
    steps: int

    def index(self, signed_steps: int) -> int:
        """Row of the code ``signed_steps`` steps from the origin (negative: toward the second sentence)."""
        if abs(signed_steps) > self.steps:
            raise InputError(f"At most {self.steps} steps each way were computed, not {abs(signed_steps)}.")
        return self.steps + signed_steps

    @property
    def phi(self) -> float:
        """The official straightness ‖x₋ₙ − xₙ‖ / (2·n·ε): 1 for a straight path."""
        return float((self.codes[0] - self.codes[-1]).norm() / (2 * self.steps * self.eps))


def walk(lss: SupportSets, wplus: torch.Tensor, path: int, eps: float, steps: int,
         layers: int = MOVED_LAYERS) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``steps`` Euler steps of signed size ``eps`` from one code (1, 18, 512): (codes, shifts) after each step.

    The direction is recomputed at the current code before every step; only rows < ``layers`` change.
    """
    codes, shifts = [], []
    current = wplus
    for _ in range(steps):
        shift = eps * lss.direction(moved_part(current, layers), path)
        padded = pad_shift(shift, current.shape[1], current.shape[2])
        current = current + padded  # rows >= layers add exact zeros: bit-identical
        codes.append(current)
        shifts.append(padded)
    return codes, shifts


def traverse(lss: SupportSets, wplus: torch.Tensor, path: int, eps: float = DEFAULT_EPS, steps: int = 10,
             layers: int = MOVED_LAYERS) -> Traversal:
    """Walk ``steps`` steps each way from ``wplus`` (1, 18, 512) along ``path``, as the official script does."""
    if wplus.ndim != 3 or wplus.shape[0] != 1:
        raise InputError(f"Expected one W+ code of shape (1, 18, 512), got {tuple(wplus.shape)}.")
    with torch.no_grad():
        neg_codes, neg_shifts = walk(lss, wplus, path, -eps, steps, layers)
        pos_codes, pos_shifts = walk(lss, wplus, path, eps, steps, layers)
    zero = torch.zeros_like(wplus)
    codes = torch.cat(neg_codes[::-1] + [wplus] + pos_codes)
    shifts = torch.cat(neg_shifts[::-1] + [zero] + pos_shifts)
    return Traversal(codes=codes, shifts=shifts, eps=float(eps), steps=int(steps))


RENDER_MODES = ("stored", "official")


def render_codes(traversal: Traversal, mode: str = "stored") -> torch.Tensor:
    """The W+ codes to render: the stored codes, or the official script's ``code + shift`` (shift counted twice)."""
    if mode == "stored":
        return traversal.codes
    if mode == "official":
        return traversal.codes + traversal.shifts
    raise InputError(f"Unknown rendering mode '{mode}'; choose one of: {', '.join(RENDER_MODES)}.")


# --------------------------------------------------------------------------- checkpoints

def _state_of(obj_or_path: Any) -> Mapping[str, Any]:
    obj = obj_or_path
    if isinstance(obj_or_path, (str, Path)):
        obj = safe_load(obj_or_path, what="ContraCLIP support sets")
    if isinstance(obj, Mapping) and "latent_support_sets" in obj and "SUPPORT_SETS" not in obj:
        obj = obj["latent_support_sets"]  # a training checkpoint {'iter', 'latent_support_sets'}
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"The ContraCLIP support sets are a {type(obj).__name__}, expected a state dict.")
    return obj


def load_support_sets(obj_or_path: Any, dim: int = SUPPORT_DIM, device: torch.device | str = "cpu") -> SupportSets:
    """:class:`SupportSets` from ``latent_support_sets.pt`` (or its dict), strictly: exactly the two official keys.

    K and D are read from the shapes; a training checkpoint ``{'iter', 'latent_support_sets'}`` also loads.
    """
    state = _state_of(obj_or_path)
    keys = sorted(map(str, state))
    if keys != sorted(STATE_KEYS):
        raise CheckpointError(
            f"The ContraCLIP support sets must hold exactly {', '.join(STATE_KEYS)}; "
            f"found {', '.join(keys) or 'nothing'}."
        )
    support, loggamma = state["SUPPORT_SETS"], state["LOGGAMMA"]
    if not isinstance(support, torch.Tensor) or support.ndim != 2 or support.shape[1] % (2 * dim):
        raise CheckpointError(
            f"SUPPORT_SETS must be (K, 2D·{dim}); got {tuple(getattr(support, 'shape', ()))}. "
            f"Is this a W+ model of StyleGAN2 layers 0..{dim // LATENT_DIM - 1}?"
        )
    num_paths, num_dipoles = support.shape[0], support.shape[1] // (2 * dim)
    if not isinstance(loggamma, torch.Tensor) or tuple(loggamma.shape) != (num_paths, 1):
        raise CheckpointError(f"LOGGAMMA must be ({num_paths}, 1); got {tuple(getattr(loggamma, 'shape', ()))}.")
    lss = SupportSets(num_paths, num_dipoles, dim)
    lss.load_state_dict({"SUPPORT_SETS": support.float().cpu(), "LOGGAMMA": loggamma.float().cpu()}, strict=True)
    return lss.to(device).eval().requires_grad_(False)


def save_support_sets(lss: SupportSets, path: str | Path) -> Path:
    """Write the official layout: the bare two-tensor state dict (ALPHAS not stored)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().clone() for k, v in lss.state_dict().items()}, path)
    return path


# --------------------------------------------------------------------------- stand-ins

def standin_state(num_paths: int, num_dipoles: int = 64, dim: int = SUPPORT_DIM, base_seed: int = 0,
                  truncation: float = 0.7) -> dict[str, torch.Tensor]:
    """Deterministic support sets in the official structure (the fixture's ``dipole`` recipe).

    Dipoles (v, −v) at the official init radii around the FFHQ Jung radius and log γ from the
    official rule, so stand-in paths have the shape and scale of trained ones.
    """
    radii = init_radii(jung_radius_ffhq(truncation), num_paths)
    raw = seeded_tensor("SUPPORT_SETS", (num_paths, 2 * num_dipoles * dim), Init("normal", 1.0), base_seed)
    u = raw.view(num_paths, 2 * num_dipoles, dim)[:, 0::2]
    v = u / u.norm(dim=2, keepdim=True) * radii.view(-1, 1, 1)
    support = torch.stack([v, -v], dim=2).reshape(num_paths, -1)
    return {"SUPPORT_SETS": support.contiguous(), "LOGGAMMA": init_loggamma(radii)}


def parse_dipoles(obj: Any, what: str = "semantic_dipoles.json") -> list[tuple[str, str]]:
    """The K [positive, negative] sentence pairs of a ``semantic_dipoles.json``."""
    if not isinstance(obj, Sequence) or isinstance(obj, (str, bytes)):
        raise CheckpointError(f"{what} must be a list of [positive, negative] sentence pairs.")
    pairs = []
    for i, pair in enumerate(obj):
        if not (isinstance(pair, Sequence) and len(pair) == 2 and all(isinstance(s, str) and s for s in pair)):
            raise CheckpointError(f"{what}: entry {i} is not a pair of two sentences.")
        pairs.append((pair[0], pair[1]))
    return pairs


__all__ = [
    "DEFAULT_EPS",
    "MOVED_LAYERS",
    "RENDER_MODES",
    "SUPPORT_DIM",
    "SupportSets",
    "Traversal",
    "init_loggamma",
    "init_radii",
    "jung_radius",
    "jung_radius_ffhq",
    "load_support_sets",
    "moved_part",
    "official_alphas",
    "pad_shift",
    "parse_dipoles",
    "render_codes",
    "save_support_sets",
    "standin_state",
    "traverse",
    "walk",
]


def standin_checkpoint_attributes() -> dict[str, torch.Tensor]:
    """Stand-in ``latent_support_sets.pt`` of the attributes corpus: 9 paths × 64 dipoles, official layout."""
    return standin_state(9, base_seed=0)


def standin_checkpoint_expressions() -> dict[str, torch.Tensor]:
    """Stand-in ``latent_support_sets.pt`` of the expressions corpus: 21 paths × 64 dipoles, official layout."""
    return standin_state(21, base_seed=1)
