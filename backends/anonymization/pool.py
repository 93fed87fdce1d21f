"""The pool of generated faces FALCO starts from: seeded z -> W (psi 0.7), FaRL features kept on disk."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..device import gpu_task
from ..networks import farl as farl_net
from ..networks.stylegan2 import Generator
from ..weights import cache_dir
from .models import FalcoModels
from .optimisation import OFFICIAL, ProgressFn, Variant

POOL_PSI = 0.7
POOL_SIZE = {"cpu": 256, "cuda": 4096}  # FACELAB_FALCO_POOL_SIZE overrides
POOL_SIZE_ENV = "FACELAB_FALCO_POOL_SIZE"
POOL_BATCH = {"cpu": 1, "cuda": 16}  # a batch of 1024 renders costs ~1 GB each on CPU and buys nothing there


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
