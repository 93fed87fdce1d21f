"""FALCO (Barattin et al., CVPR 2023): face anonymisation by latent-code optimisation, plus paste-back and folders.

A real face gets a new identity while its attributes (pose, expression, hair, age, lighting) stay:

1. **Align and invert** the photo (the shared cached step, :mod:`backends.inversion`): FFHQ crop
   at 1024 and its e4e W+ code ``w_real`` [1, 18, 512].
2. **Nearest fake**: a pool of generated faces (seeded z → w, ψ = 0.7 toward the generator's
   ``w_avg``) is embedded with FaRL (:func:`build_pool`; only seeds and features are kept, on disk);
   the fake closest to the real face in FaRL space (cosine) gives ``w_fake``.
3. **Optimise** W+ layers 3..7, starting from ``w_fake``, with layers 0–2 and 8–17 frozen at
   ``w_real`` (:class:`LatentCode`), to minimise
   ``λ_id·|cos(ArcFace(G(w)), ArcFace(x)) − m| + λ_attr·Σ_tokens L1(FaRL(x), FaRL(G(w)))``
   (:class:`FalcoLoss`), with Adam (lr 0.01) and the official MultiStepLR schedule
   (milestones at 75 % and 90 % of the steps, ×0.8).
4. **Paste back** the anonymised 1024 face into the original photo with the shared feathered
   paste (:func:`backends.face.paste_back`).

Quirks of the official code (chi0tzp/FALCO@e7bd33e), replicated by default (``variant="official"``):

* value ranges: the real image enters both loss networks as ``ToTensor`` [0, 1], the generator's
  output as raw ≈[-1, 1], and FaRL gets no CLIP mean/std in the loss; the pool's fake features are
  CLIP-normalised from [-1, 1] while the real one is normalised from [0, 1];
* precision: FALCO's CUDA run ends with FaRL's matrices rounded to fp16
  (:func:`backends.networks.farl.round_like_falco_cuda`);
* the saved image is min–max normalised per image and truncated to uint8.

``variant="corrected"`` feeds every network the range it was trained on ([-1, 1] for ArcFace,
CLIP-normalised [0, 1] for FaRL, in the loss and in the pool), keeps FaRL's fp32 weights and
converts images with (x + 1) / 2. It changes the numbers and can change the neighbour found.

CLI: ``python -m backends.falco IN_DIR OUT_DIR`` anonymises a folder, resumably, with a CSV report.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import math
import os
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .device import get_device, gpu_task
from .errors import FaceLabError, InputError, NoFaceError
from .face import paste_back
from .inversion import Inversion, invert_photo
from .networks import farl as farl_net
from .networks import irse
from .networks.stylegan2 import Generator, load_genforce_checkpoint, load_rosinality_checkpoint
from .standin import standin_enabled
from .weights import cache_dir, find_local, load_checkpoint

ProgressFn = Callable[[float, str], None]

LAMBDA_ID = 10.0
LAMBDA_ATTR = 0.1
LEARNING_RATE = 0.01
STEPS = 50
LAYER_START, LAYER_END = 3, 8  # W+ rows 3..7 are optimised
LR_GAMMA = 0.8
LR_MILESTONES = (0.75, 0.9)  # fractions of the steps, as anonymize.py's int(0.75·epochs), int(0.9·epochs)
POOL_PSI = 0.7
POOL_SIZE = {"cpu": 256, "cuda": 4096}  # FACELAB_FALCO_POOL_SIZE overrides
POOL_SIZE_ENV = "FACELAB_FALCO_POOL_SIZE"
POOL_BATCH = {"cpu": 1, "cuda": 16}  # a batch of 1024 renders costs ~1 GB each on CPU and buys nothing there
MAX_STEPS = 200
MAX_CANDIDATES = 16
VARIANTS = ("official", "corrected")


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """Which of the official code's range and precision quirks are kept."""

    name: str
    mixed_ranges: bool  # real image [0,1] vs G output [-1,1], no CLIP mean/std in the loss
    farl_fp16_rounding: bool  # FaRL's matrices rounded to fp16 as in FALCO's CUDA run
    minmax_output: bool  # per-image min-max to uint8 (truncating), as tensor2image(adaptive=True)


OFFICIAL = Variant("official", mixed_ranges=True, farl_fp16_rounding=True, minmax_output=True)
CORRECTED = Variant("corrected", mixed_ranges=False, farl_fp16_rounding=False, minmax_output=False)


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise InputError(f"Unknown FALCO variant {name!r}; choose 'official' or 'corrected'.")
    return OFFICIAL if name == "official" else CORRECTED


# --------------------------------------------------------------------------- the objective


@dataclass(frozen=True)
class Reference:
    """The real image's features, computed once per optimisation (they never change)."""

    identity: torch.Tensor  # [B, 512] unit ArcFace embedding, detached
    tokens: torch.Tensor  # [B, 197, width] FaRL tokens, detached


@dataclass(frozen=True)
class LossTerms:
    """One evaluation of the objective (``total`` keeps its graph)."""

    identity: torch.Tensor  # mean |cos − m|
    attributes: torch.Tensor  # Σ_tokens mean |ΔF|
    total: torch.Tensor
    cosine: torch.Tensor  # [B] identity cosine to the real image

    def as_floats(self) -> dict[str, float]:
        return {"id": float(self.identity.detach()), "attr": float(self.attributes.detach()),
                "total": float(self.total.detach()), "cos": float(self.cosine.mean())}


class FalcoLoss(nn.Module):
    """``λ_id·IDLoss(m)(x_a, x) + λ_attr·AttrLoss(x, x_a)`` as FALCO's anonymize loop computes it.

    ``identity_net`` maps Bx3x112x112 to unit rows (ArcFace IR-SE50; FALCO's
    resize/crop/pool path is applied here); ``farl`` gives the attribute tokens.
    Both are used frozen. ``mixed_ranges`` keeps the official quirk: the real
    image is given in [0, 1] and the generated one in [-1, 1] and neither is
    rescaled; without it, ArcFace sees both in [-1, 1] and FaRL both as
    CLIP-normalised [0, 1]. Callers always pass the real image in [0, 1] and
    the generated one raw.
    """

    def __init__(self, identity_net: nn.Module, farl: farl_net.FarlVisual, margin: float = 0.0,
                 lambda_id: float = LAMBDA_ID, lambda_attr: float = LAMBDA_ATTR, mixed_ranges: bool = True):
        super().__init__()
        self.identity_net = identity_net
        self.farl = farl
        self.margin = float(margin)
        self.lambda_id = float(lambda_id)
        self.lambda_attr = float(lambda_attr)
        self.mixed_ranges = mixed_ranges

    def _identity(self, img: torch.Tensor) -> torch.Tensor:
        return self.identity_net(irse.falco_id_transform(img))

    def _tokens(self, img: torch.Tensor) -> torch.Tensor:
        x = farl_net.attr_transform(img, self.farl.image_size)
        return self.farl.tokens(x if self.mixed_ranges else farl_net.clip_normalize(x)).float()

    def reference(self, real01: torch.Tensor) -> Reference:
        """Features of the real image, given as ``ToTensor`` [0, 1]."""
        with torch.no_grad():
            id_in = real01 if self.mixed_ranges else real01 * 2 - 1
            return Reference(self._identity(id_in).detach(), self._tokens(real01).detach())

    def forward(self, anon: torch.Tensor, ref: Reference) -> LossTerms:
        """The losses of a raw generator image ``anon`` against the real image's ``ref``."""
        cosine = (self._identity(anon) * ref.identity).sum(dim=1)
        id_loss = (cosine - self.margin).abs().mean()
        attr_in = anon if self.mixed_ranges else (anon + 1) / 2
        # nn.L1Loss per token (mean over batch and channels), summed over the tokens.
        attr_loss = (self._tokens(attr_in) - ref.tokens).abs().mean(dim=(0, 2)).sum()
        total = self.lambda_id * id_loss + self.lambda_attr * attr_loss
        return LossTerms(id_loss, attr_loss, total, cosine.detach())


# --------------------------------------------------------------------------- the latent code


class LatentCode(nn.Module):
    """W+ with rows ``start..end-1`` trainable (from the fake neighbour) and the rest the real code, frozen.

    As the official ``LatentCode``: the frozen rows are parameters with
    ``requires_grad=False``, so they stay bit-identical.
    """

    def __init__(self, w_real: torch.Tensor, w_fake: torch.Tensor, start: int = LAYER_START, end: int = LAYER_END):
        super().__init__()
        if w_real.shape != w_fake.shape or w_real.ndim != 3 or not 0 <= start < end <= w_real.shape[1]:
            raise ValueError(f"expected two W+ codes [B, L, 512] with 0 <= {start} < {end} <= L, "
                             f"got {tuple(w_real.shape)} and {tuple(w_fake.shape)}")
        self.start, self.end = start, end
        self.head = nn.Parameter(w_real[:, :start].detach().clone(), requires_grad=False)
        self.trainable = nn.Parameter(w_fake[:, start:end].detach().clone())
        self.tail = nn.Parameter(w_real[:, end:].detach().clone(), requires_grad=False)

    def forward(self) -> torch.Tensor:
        return torch.cat([self.head, self.trainable, self.tail], dim=1)


def lr_milestones(steps: int) -> list[int]:
    """``[int(0.75·steps), int(0.9·steps)]``: [37, 45] for the default 50 steps."""
    return [int(f * steps) for f in LR_MILESTONES]


def make_optimizer(latent: LatentCode, steps: int, lr: float = LEARNING_RATE
                   ) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.MultiStepLR]:
    """Adam (default betas, eps 1e-8, no decay) on the trainable rows, and the official MultiStepLR."""
    optimizer = torch.optim.Adam([latent.trainable], lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=lr_milestones(steps), gamma=LR_GAMMA)
    return optimizer, scheduler


@dataclass
class StepRecord:
    """Losses computed before an update, and the learning rate that update used."""

    step: int
    id: float
    attr: float
    total: float
    cos: float
    lr: float


def optimise(generator: Generator, loss: FalcoLoss, ref: Reference, latent: LatentCode, steps: int,
             lr: float = LEARNING_RATE, progress: ProgressFn | None = None,
             on_step: Callable[[int, LatentCode], None] | None = None,
             max_steps: int | None = None,
             on_first_image: Callable[[torch.Tensor], None] | None = None) -> list[StepRecord]:
    """The official loop: zero_grad → G(latent) → losses → backward → Adam step → scheduler step.

    The generator renders with its constant noise and no truncation. Only the
    trainable rows receive gradients (the networks are used frozen). ``max_steps``
    stops early while keeping the schedule of ``steps`` (parity checks, benchmarks).
    ``on_first_image`` receives the (detached) render of the starting latent, which
    step 0 computes anyway.
    """
    optimizer, scheduler = make_optimizer(latent, steps, lr)
    history: list[StepRecord] = []
    for step in range(min(steps, max_steps or steps)):
        optimizer.zero_grad(set_to_none=True)
        image = generator.synthesis(latent())
        if step == 0 and on_first_image is not None:
            on_first_image(image.detach())
        terms = loss(image, ref)
        terms.total.backward(inputs=[latent.trainable])
        used_lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        history.append(StepRecord(step, **terms.as_floats(), lr=used_lr))
        if on_step is not None:
            on_step(step, latent)
        if progress is not None:
            rec = history[-1]
            progress((step + 1) / steps, f"step {step + 1}/{steps}: identity {rec.id:.3f}, attributes {rec.attr:.1f}")
    return history


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class FalcoModels:
    """The generator (with ``w_avg``), ArcFace IR-SE50 and FaRL, frozen, on one device (float32)."""

    generator: Generator
    arcface: irse.Backbone
    farl: farl_net.FarlVisual
    standin: bool
    device: torch.device
    generator_key: str


def generator_key() -> str:
    """genforce's ``stylegan2_ffhq1024.pth`` (FALCO's own file) when present, else the public rosinality FFHQ file.

    Both are the same NVIDIA FFHQ-1024 network in two layouts and load into one
    :class:`Generator`, so e4e codes mean the same in either.
    """
    if standin_enabled() or find_local("stylegan2_ffhq1024_genforce") is not None:
        return "stylegan2_ffhq1024_genforce"
    return "stylegan2_ffhq1024"


def _frozen(module: nn.Module, device: str) -> nn.Module:
    return module.to(device).eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def _generator_and_arcface(standin: bool, device: str, key: str) -> tuple[Generator, irse.Backbone, bool]:
    g = load_checkpoint(key)
    generator = load_genforce_checkpoint(g.obj) if key.endswith("genforce") else load_rosinality_checkpoint(g.obj)
    if generator.w_avg is None:
        generator.w_avg = generator.mean_latent(4096, seed=0)  # the truncation centre of the pool
    a = load_checkpoint("ir_se50")
    arcface = irse.load_arcface_checkpoint(a.obj)
    return _frozen(generator, device), _frozen(arcface, device), g.standin or a.standin


@functools.lru_cache(maxsize=2)
def _farl(standin: bool, device: str, fp16_rounding: bool) -> tuple[farl_net.FarlVisual, bool]:
    f = load_checkpoint("farl_ep64")
    return _frozen(farl_net.load_farl_checkpoint(f.obj, fp16_rounding=fp16_rounding), device), f.standin


def get_models(variant: Variant = OFFICIAL) -> FalcoModels:
    """FALCO's three networks, loaded on first use and kept (FaRL once per rounding choice)."""
    device = str(get_device())
    key = generator_key()
    generator, arcface, standin_ga = _generator_and_arcface(standin_enabled(), device, key)
    farl, standin_f = _farl(standin_enabled(), device, variant.farl_fp16_rounding)
    return FalcoModels(generator, arcface, farl, standin_ga or standin_f, torch.device(device), key)


def clear_caches() -> None:
    _generator_and_arcface.cache_clear()
    _farl.cache_clear()


# --------------------------------------------------------------------------- the fake pool


def pool_size_for(device: torch.device) -> int:
    """How many fakes the pool holds on this device (``FACELAB_FALCO_POOL_SIZE`` overrides)."""
    override = os.environ.get(POOL_SIZE_ENV, "").strip()
    if override:
        return max(1, int(override))
    return POOL_SIZE.get(device.type, POOL_SIZE["cpu"])


def seed_z(seed: int, dim: int = 512) -> torch.Tensor:
    """The z [1, dim] of one pool seed (its own generator, so any fake can be re-made from its seed)."""
    return torch.randn(1, dim, generator=torch.Generator().manual_seed(int(seed)))


def fake_wplus(generator: Generator, seeds: Sequence[int], psi: float = POOL_PSI) -> torch.Tensor:
    """genforce's ``get_w(z, psi)``: mapping, then ψ-truncation toward ``w_avg`` on every row [B, L, 512]."""
    device = generator.input.input.device
    z = torch.cat([seed_z(s, generator.style_dim) for s in seeds]).to(device)
    with torch.no_grad():
        w = generator.mapping(z)
        w = generator.w_avg.to(w) + psi * (w - generator.w_avg.to(w))
    return generator.to_wplus(w).contiguous()


def pool_features(farl: farl_net.FarlVisual, images: torch.Tensor, from_pm1: bool, variant: Variant) -> torch.Tensor:
    """FaRL embeddings [B, 512] on the nearest-neighbour path (Resize + CenterCrop + CLIP Normalize).

    Officially the fakes are normalised from their raw [-1, 1] range and real
    photos from [0, 1]; the corrected variant brings fakes to [0, 1] first.
    """
    x = images if (variant.mixed_ranges or not from_pm1) else (images + 1) / 2
    with torch.no_grad():
        return farl.encode_image(farl_net.pool_transform(x, farl.image_size)).float()


@dataclass
class FakePool:
    """Seeds of generated faces and their FaRL features; the latents are re-made from the seeds."""

    seeds: np.ndarray  # [N] int64
    features: np.ndarray  # [N, 512] float32
    psi: float = POOL_PSI
    path: Path | None = None
    built_seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.seeds)

    def nearest(self, feature: np.ndarray | torch.Tensor, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cosine similarities of the ``k`` fakes closest to ``feature`` (best first)."""
        f = np.asarray(feature.detach().cpu() if isinstance(feature, torch.Tensor) else feature, np.float64)
        f = f.reshape(-1)
        feats = self.features.astype(np.float64)
        sims = feats @ f / (np.linalg.norm(feats, axis=1) * np.linalg.norm(f) + 1e-12)
        order = np.argsort(-sims, kind="stable")[: max(1, k)]
        return order, sims[order]


def _fingerprint(models: FalcoModels, variant: Variant) -> str:
    """A key for the pool cache: a digest of some weights of both networks, the ranges and ψ."""
    digest = hashlib.sha256(f"{models.generator_key}|{variant.mixed_ranges}|{variant.farl_fp16_rounding}|"
                            f"{POOL_PSI}".encode())
    g_state = models.generator.state_dict()
    for tensor in (g_state["style.1.weight"][:4], g_state["input.input"].flatten()[:512],
                   models.farl.visual.proj[:8], models.farl.visual.conv1.weight.flatten()[:512]):
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


_POOL_LOCK = threading.Lock()


def pool_dir() -> Path:
    return cache_dir() / "falco_pool"


def build_pool(models: FalcoModels, variant: Variant = OFFICIAL, size: int | None = None,
               progress: ProgressFn | None = None, folder: Path | None = None) -> FakePool:
    """The fake pool of ``size`` seeds (0..size-1), from the disk cache or built now (and saved in chunks).

    An interrupted build resumes where it stopped; a larger size extends the
    cached pool. Only seeds and features are stored (``.npz``).
    """
    size = size or pool_size_for(models.device)
    folder = folder or pool_dir()
    path = folder / f"pool_{_fingerprint(models, variant)}.npz"
    with _POOL_LOCK:
        seeds, feats = np.zeros(0, np.int64), None
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                seeds, feats = data["seeds"], data["features"]
        if len(seeds) >= size:
            return FakePool(seeds[:size], feats[:size], POOL_PSI, path)
        start = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        seeds, feats = _extend_pool(models, variant, seeds, feats, size, path, progress)
        return FakePool(seeds, feats, POOL_PSI, path, time.perf_counter() - start)


@gpu_task(duration=300)
def _extend_pool(models: FalcoModels, variant: Variant, seeds: np.ndarray, feats: np.ndarray | None, size: int,
                 path: Path, progress: ProgressFn | None) -> tuple[np.ndarray, np.ndarray]:
    """Render and embed the missing fakes in batches, saving after each batch (so a build can resume)."""
    done = len(seeds)
    while done < size:
        batch = list(range(done, min(size, done + POOL_BATCH.get(models.device.type, 1))))
        with torch.no_grad():
            images = models.generator.synthesis(fake_wplus(models.generator, batch))
            new = pool_features(models.farl, images, from_pm1=True, variant=variant).cpu().numpy()
        seeds = np.concatenate([seeds, np.asarray(batch, np.int64)])
        feats = new.astype(np.float32) if feats is None else np.concatenate([feats, new.astype(np.float32)])
        done = len(seeds)
        _save_npz(path, seeds=seeds, features=feats)
        if progress is not None:
            progress(done / size, f"building the fake pool: {done}/{size} faces (once, then cached)")
    return seeds, feats


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write atomically, so an interrupted build never leaves a broken cache."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- one photo


def image_to_tensor01(image: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """``ToTensor``: an RGB image as [1, 3, H, W] float32 in [0, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def output_image(image: torch.Tensor, variant: Variant) -> Image.Image:
    """A raw generator image as 8-bit RGB: official per-image min–max + truncation, or (x+1)/2 clamped."""
    x = image.detach().float().cpu()[0]
    if variant.minmax_output:
        x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
        arr = (255 * x).to(torch.uint8)  # truncates, like the official tensor2image
    else:
        arr = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).numpy())


@dataclass
class AnonymizeResult:
    """Everything the tab, the API and the CLI show for one photo."""

    aligned: Image.Image  # the FFHQ-aligned original, 1024
    inversion: Image.Image  # G(w_real)
    start: Image.Image  # G(initial latent): the real code with the fake neighbour's layers 3..7
    anonymized: Image.Image  # G(optimised latent), 1024
    pasted: Image.Image  # the anonymised face in the original photo
    history: list[StepRecord]
    cos_inversion: float  # identity cosine of the inversion to the photo (official ranges of the variant)
    cos_start: float
    cos_final: float
    attr_final: float
    attr_similarity: float  # cosine of FaRL embeddings of the aligned original and the anonymised face
    margin: float
    steps: int
    seed: int
    candidates: int
    neighbour_seed: int
    neighbour_similarity: float
    pool_size: int
    variant: str
    standin: bool
    wplus: torch.Tensor  # the optimised W+ [1, 18, 512]
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0
    generator_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "FALCO",
            "variant": self.variant,
            "margin": self.margin,
            "steps": self.steps,
            "seed": self.seed,
            "candidates": self.candidates,
            "identity_cosine": {"inversion": round(self.cos_inversion, 4), "start": round(self.cos_start, 4),
                                "anonymized": round(self.cos_final, 4), "target_margin": self.margin},
            "attribute_similarity": round(self.attr_similarity, 4),
            "attribute_loss_final": round(self.attr_final, 3),
            "loss_first_last": ([round(self.history[0].total, 4), round(self.history[-1].total, 4)]
                                if self.history else []),
            "neighbour": {"pool_seed": self.neighbour_seed, "farl_cosine": round(self.neighbour_similarity, 4),
                          "pool_size": self.pool_size},
            "generator": self.generator_key,
            "result_size": list(self.anonymized.size),
            "seconds": round(self.seconds, 2),
            "standin": self.standin,
            "notices": list(self.notices),
        }


def _check_options(margin: float, steps: int, seed: int, candidates: int) -> None:
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and -1.0 <= margin <= 1.0):
        raise InputError(f"The identity margin must be between -1 and 1, got {margin}.")
    if int(steps) != steps or not 1 <= steps <= MAX_STEPS:
        raise InputError(f"The number of steps must be a whole number from 1 to {MAX_STEPS}, got {steps}.")
    if int(seed) != seed or seed < 0:
        raise InputError(f"The seed must be a whole number ≥ 0, got {seed}.")
    if int(candidates) != candidates or not 1 <= candidates <= MAX_CANDIDATES:
        raise InputError(f"Candidates must be a whole number from 1 to {MAX_CANDIDATES}, got {candidates}.")


def pick_neighbour(pool: FakePool, feature: torch.Tensor, candidates: int, seed: int) -> tuple[int, float]:
    """The pool index to start from: the nearest fake (the paper) or, with ``candidates`` > 1,
    one of the nearest, drawn by a generator seeded with ``seed``."""
    order, sims = pool.nearest(feature, k=candidates)
    pick = 0
    if len(order) > 1:
        pick = int(torch.randint(len(order), (1,), generator=torch.Generator().manual_seed(int(seed))))
    return int(order[pick]), float(sims[pick])


@gpu_task(duration=120)
def _anonymize_aligned(models: FalcoModels, inv: Inversion, pool: FakePool, variant: Variant, margin: float,
                       steps: int, seed: int, candidates: int, progress: ProgressFn | None) -> dict[str, Any]:
    """Neighbour → optimisation → final render: the GPU part of one photo."""
    device = models.device
    g = models.generator
    real01 = image_to_tensor01(inv.aligned.image, device)
    loss = FalcoLoss(models.arcface, models.farl, margin, mixed_ranges=variant.mixed_ranges)
    ref = loss.reference(real01)
    idx, sim = pick_neighbour(pool, pool_features(models.farl, real01, from_pm1=False, variant=variant)[0],
                              candidates, seed)
    neighbour_seed = int(pool.seeds[idx])
    w_real = inv.wplus.to(device=device, dtype=torch.float32)
    latent = LatentCode(w_real, fake_wplus(g, [neighbour_seed], pool.psi).to(device))
    with torch.no_grad():
        inversion_img = g.synthesis(w_real)
        cos_inv = float(loss(inversion_img, ref).cosine[0])
    first: list[torch.Tensor] = []
    history = optimise(g, loss, ref, latent, steps, progress=progress, on_first_image=first.append)
    start_img, cos_start = first[0], history[0].cos  # step 0 renders and scores the starting latent
    with torch.no_grad():
        final = g.synthesis(latent())
        terms = loss(final, ref)
        # Attribute similarity: FaRL embeddings of both faces, each in the range FaRL expects.
        e_real = models.farl.encode_image(farl_net.pool_transform(real01, models.farl.image_size))
        e_anon = models.farl.encode_image(farl_net.pool_transform((final + 1) / 2, models.farl.image_size))
        attr_sim = float(torch.nn.functional.cosine_similarity(e_real, e_anon)[0])
    return {
        "inversion": inversion_img.cpu(), "start": start_img.cpu(), "final": final.cpu(), "history": history,
        "cos_inv": cos_inv, "cos_start": cos_start, "cos_final": float(terms.cosine[0]),
        "attr_final": float(terms.attributes), "attr_sim": attr_sim, "neighbour_seed": neighbour_seed,
        "neighbour_sim": sim, "wplus": latent().detach().cpu(),
    }


def anonymize_photo(source: Any, *, margin: float = 0.0, steps: int = STEPS, seed: int = 0, candidates: int = 1,
                    variant: str = "official", already_aligned: bool = False, progress: ProgressFn | None = None,
                    pool_size: int | None = None) -> AnonymizeResult:
    """Anonymise the largest face of a photo with FALCO and paste it back into the photo.

    ``margin`` is FALCO's m (the identity cosine the optimisation aims at; 0 =
    unrelated identity). ``candidates`` > 1 starts from one of that many nearest
    fakes, chosen by ``seed`` (1 = the paper's nearest neighbour; the result is
    then the same for every seed). Raises :class:`~backends.errors.NoFaceError`
    when there is no face.
    """
    _check_options(margin, steps, seed, candidates)
    steps, seed, candidates = int(steps), int(seed), int(candidates)
    chosen = get_variant(variant)
    start = time.perf_counter()
    report = progress or (lambda _f, _d: None)
    report(0.0, "aligning and inverting the face")
    inv = invert_photo(source, what="photo", already_aligned=already_aligned)
    models = get_models(chosen)
    pool = build_pool(models, chosen, size=pool_size,
                      progress=lambda f, d: report(0.05 + 0.25 * f, d))
    out = _anonymize_aligned(models, inv, pool, chosen, float(margin), steps, seed, candidates,
                             lambda f, d: report(0.3 + 0.7 * f, d))
    anonymized = output_image(out["final"], chosen)
    pasted = Image.fromarray(paste_back(np.asarray(inv.photo), anonymized, inv.aligned))
    notices = list(inv.notices)
    if models.standin:
        notices.append("Stand-in weights are in use: the images are not results of FALCO.")
    if candidates == 1 and seed != 0:
        notices.append("With 1 candidate the start is always the nearest fake, so the seed changes nothing.")
    report(1.0, "done")
    return AnonymizeResult(
        aligned=inv.aligned.image, inversion=output_image(out["inversion"], chosen),
        start=output_image(out["start"], chosen), anonymized=anonymized, pasted=pasted, history=out["history"],
        cos_inversion=out["cos_inv"], cos_start=out["cos_start"], cos_final=out["cos_final"],
        attr_final=out["attr_final"], attr_similarity=out["attr_sim"], margin=float(margin), steps=steps, seed=seed,
        candidates=candidates, neighbour_seed=out["neighbour_seed"], neighbour_similarity=out["neighbour_sim"],
        pool_size=len(pool), variant=chosen.name, standin=models.standin, wplus=out["wplus"], notices=notices,
        seconds=time.perf_counter() - start, generator_key=models.generator_key,
    )


# --------------------------------------------------------------------------- folders and zips

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
REPORT_NAME = "report.csv"
REPORT_FIELDS = ("file", "status", "identity_cosine", "attribute_similarity", "output", "seconds", "message")
MAX_ZIP_FILES = 20
MAX_ZIP_BYTES = 50 * 1024 * 1024


@dataclass
class FolderReport:
    """What a folder run did: rows of the CSV report and counts."""

    rows: list[dict[str, str]]
    processed: int  # newly processed in this run (successes and failures)
    skipped: int  # already in the report from an earlier run
    report_path: Path
    standin: bool = False

    @property
    def succeeded(self) -> int:
        return sum(r["status"] == "ok" for r in self.rows)

    @property
    def failed(self) -> int:
        return sum(r["status"] != "ok" for r in self.rows)


def list_images(in_dir: Path) -> list[Path]:
    """Image files under ``in_dir`` (recursively, by suffix), in a stable order."""
    return sorted(p for p in in_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def output_names(names: Sequence[str]) -> dict[str, Path]:
    """``dir/name.png`` for each input; ``dir/name_ext.png`` where two inputs share a folder and a stem."""
    stems: dict[Path, int] = {}
    for name in names:
        key = Path(name).with_suffix("")
        stems[key] = stems.get(key, 0) + 1
    out = {}
    for name in names:
        path = Path(name)
        clash = stems[path.with_suffix("")] > 1
        out[name] = path.with_name(f"{path.stem}_{path.suffix.lstrip('.').lower()}.png") if clash \
            else path.with_suffix(".png")
    return out


def _read_report(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


def _write_report(path: Path, rows: list[dict[str, str]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=REPORT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def anonymize_folder(in_dir: str | Path, out_dir: str | Path, *, progress: ProgressFn | None = None,
                     **options: Any) -> FolderReport:
    """Anonymise every image under ``in_dir`` into ``out_dir`` (same relative paths, ``.png``).

    Resumable: files already in ``out_dir/report.csv`` are skipped. Faces that
    fail (no face, unreadable file) are listed there with their reason; every
    success with its identity cosine. Nothing in ``in_dir`` is written.
    """
    in_dir, out_dir = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not in_dir.is_dir():
        raise InputError(f"The input folder {in_dir} does not exist.")
    if out_dir == in_dir or in_dir in out_dir.parents:
        raise InputError("The output folder must not be inside the input folder (the input is never modified).")
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / REPORT_NAME
    done = _read_report(report_path)
    images = list_images(in_dir)
    if not images:
        raise InputError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) were found in {in_dir}.")
    names = [str(p.relative_to(in_dir)) for p in images]
    targets = output_names(names)
    results = {name: done[name] for name in names if name in done}

    def rows() -> list[dict[str, str]]:
        return [results[name] for name in names if name in results]

    processed = standin = 0
    for i, path in enumerate(images):
        rel = str(path.relative_to(in_dir))
        if rel in done:
            continue
        start = time.perf_counter()
        target = out_dir / targets[rel]
        row = {"file": rel, "status": "ok", "identity_cosine": "", "attribute_similarity": "", "output": "",
               "seconds": "", "message": ""}

        def inner(f: float, d: str, i: int = i, rel: str = rel) -> None:
            if progress is not None:
                progress((i + f) / len(images), f"{rel}: {d}")

        try:
            res = anonymize_photo(path, progress=inner, **options)
        except InputError as exc:  # this file's problem; missing weights and the like stop the run
            row.update(status="no_face" if isinstance(exc, NoFaceError) else "failed", message=str(exc))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            res.pasted.save(target)
            res.anonymized.save(target.with_name(target.stem + "_face.png"))
            row.update(identity_cosine=f"{res.cos_final:.4f}", attribute_similarity=f"{res.attr_similarity:.4f}",
                       output=str(target.relative_to(out_dir)))
            standin = standin or res.standin
        row["seconds"] = f"{time.perf_counter() - start:.1f}"
        results[rel] = row
        processed += 1
        _write_report(report_path, rows())  # after every image, so an interruption loses at most one
    _write_report(report_path, rows())
    return FolderReport(rows(), processed, len(images) - processed, report_path, bool(standin))


def extract_zip(zip_path: str | Path, dest: Path, max_files: int = MAX_ZIP_FILES,
                max_bytes: int = MAX_ZIP_BYTES) -> int:
    """Extract the images of an uploaded zip (flat, safe names), refusing archives over the caps."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError("The upload is not a readable zip archive.") from exc
    with archive:
        members = [m for m in archive.infolist()
                   if not m.is_dir() and Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
                   and not Path(m.filename).name.startswith(".") and "__MACOSX" not in m.filename]
        if not members:
            raise InputError("The zip holds no images (jpg, png, webp, bmp, tif).")
        if len(members) > max_files:
            raise InputError(f"The zip holds {len(members)} images; at most {max_files} are processed per upload.")
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise InputError(f"The zip's images add up to {total / 2**20:.1f} MB uncompressed; "
                             f"the limit is {max_bytes / 2**20:.0f} MB.")
        dest.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(members):
            name = f"{i:03d}_{Path(m.filename).name}"  # flat and collision-free; no path from the archive
            (dest / name).write_bytes(archive.read(m))
    return len(members)


def anonymize_zip(zip_path: str | Path, work_dir: str | Path, *, progress: ProgressFn | None = None,
                  **options: Any) -> tuple[Path, FolderReport]:
    """Anonymise every image of a zip; returns a zip of the outputs plus the CSV report, and the report."""
    if zip_path is None:
        raise InputError("Please upload a zip of photos.")
    work = Path(work_dir)
    in_dir, out_dir = work / "in", work / "out"
    extract_zip(zip_path, in_dir)
    report = anonymize_folder(in_dir, out_dir, progress=progress, **options)
    bundle = work / "anonymized.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(out_dir.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(out_dir))
    return bundle, report


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backends.falco",
        description="Anonymise every face photo of a folder with FALCO (resumable; writes OUT_DIR/report.csv).",
    )
    parser.add_argument("in_dir", help="folder of photos (read only; searched recursively)")
    parser.add_argument("out_dir", help="folder for the anonymised photos and report.csv")
    parser.add_argument("--margin", type=float, default=0.0, help="identity margin m (default 0)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"optimisation steps (default {STEPS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=1, help="start from one of the k nearest fakes (default 1)")
    parser.add_argument("--variant", choices=VARIANTS, default="official",
                        help="official: replicate FALCO's range/precision quirks; corrected: consistent ranges")
    parser.add_argument("--aligned", action="store_true", help="photos are FFHQ-aligned crops (skip detection)")
    parser.add_argument("--pool-size", type=int, default=None, help="fake pool size (default: per device)")
    parser.add_argument("--stand-in-weights", action="store_true",
                        help="deterministic random weights instead of checkpoints (outputs are not results)")
    args = parser.parse_args(argv)
    if args.stand_in_weights:
        from .standin import enable_standin

        enable_standin(True)

    def progress(fraction: float, desc: str) -> None:
        print(f"\r{fraction * 100:5.1f}%  {desc[:70]:<70}", end="", file=sys.stderr)

    try:
        report = anonymize_folder(
            args.in_dir, args.out_dir, progress=progress, margin=args.margin, steps=args.steps, seed=args.seed,
            candidates=args.candidates, variant=args.variant, already_aligned=args.aligned, pool_size=args.pool_size,
        )
    except FaceLabError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(f"{report.succeeded} anonymised, {report.failed} failed, {report.skipped} already done; "
          f"report: {report.report_path}")
    if report.standin:
        print("note: stand-in weights were used: the images are not results of FALCO.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
