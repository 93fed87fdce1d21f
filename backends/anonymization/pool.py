"""The pool of generated faces FALCO starts from: seeded z -> W (psi 0.7), FaRL features kept on disk.

Each fake costs one G-1024 render and one FaRL pass: seconds on a CPU. The paper's pool holds 60,000
fakes (a few minutes on a big GPU, days on two CPU cores), so the CPU default is a pool that builds in
under a minute, built in the background when the tab is first opened (:func:`start_background_build`),
and larger pools extend the cached one. Builds report the time left as measured on this machine, save
as they go (a stopped or interrupted build resumes) and stop between fakes when cancelled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..device import get_device, gpu_task
from ..job_control import CancelToken, Eta, check, format_seconds
from ..networks import farl as farl_net
from ..networks.stylegan2 import Generator
from ..weights import cache_dir
from .models import FalcoModels, get_models, weights_on_disk
from .optimisation import OFFICIAL, ProgressFn, Variant

log = logging.getLogger("facelab.falco")

POOL_PSI = 0.7
# CPU: 10 fakes build in under a minute on two cores (bench/bench_falco.py --end-to-end on two idle cores: 0.9 s
# per fake, so 9 s; 4.0 s per fake with other jobs at load 5, so 40 s; the issue saw 3.5-5 s). The build runs in
# the background from the tab's opening, and the nearest neighbour only seeds layers 3-7, which the
# optimisation then moves.
POOL_SIZE = {"cpu": 10, "cuda": 4096}  # FACELAB_FALCO_POOL_SIZE overrides
PAPER_POOL_SIZE = 60_000  # FALCO's README: create_fake_dataset.py --num-samples=60000
POOL_CHOICES = {"cpu": (10, 64, 256, PAPER_POOL_SIZE), "cuda": (1024, 4096, PAPER_POOL_SIZE)}
POOL_SIZE_ENV = "FACELAB_FALCO_POOL_SIZE"
POOL_BATCH = {"cpu": 1, "cuda": 16}  # a batch of 1024 renders costs ~1 GB each on CPU and buys nothing there
SAVE_EVERY_SECONDS = 10.0  # a 60,000-fake pool is 120 MB: not rewritten after every fake

# --------------------------------------------------------------------------- the fake pool


def pool_size_for(device: torch.device) -> int:
    """How many fakes the pool holds on this device by default (``FACELAB_FALCO_POOL_SIZE`` overrides)."""
    override = os.environ.get(POOL_SIZE_ENV, "").strip()
    if override:
        return max(1, int(override))
    return POOL_SIZE.get(device.type, POOL_SIZE["cpu"])


def pool_choices(device: torch.device) -> list[int]:
    """The pool sizes offered on this device: the default first, then larger ones up to the paper's 60,000."""
    default = pool_size_for(device)
    return sorted({default, *POOL_CHOICES.get(device.type, POOL_CHOICES["cpu"])})


# Seconds one fake took on this machine (G-1024 render + FaRL), per device type, measured by every build.
MEASURED_SECONDS_PER_FAKE: dict[str, float] = {}


def estimate_build_seconds(size: int, have: int = 0, device: torch.device | None = None) -> float | None:
    """Time to extend a pool of ``have`` fakes to ``size`` at the rate measured here; None before any build."""
    rate = MEASURED_SECONDS_PER_FAKE.get((device or get_device()).type)
    return None if rate is None else rate * max(0, size - have)


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


@dataclass(frozen=True)
class PoolStatus:
    """Where the pool of this process stands (the tab shows it while a build runs)."""

    state: str = "idle"  # idle | loading | building | ready | failed
    done: int = 0
    size: int = 0
    seconds_left: float | None = None
    seconds_per_fake: float | None = None
    message: str = ""

    def describe(self) -> str:
        if self.state == "building":
            left = "" if self.seconds_left is None else f", about {format_seconds(self.seconds_left)} left"
            rate = "" if self.seconds_per_fake is None else f" ({self.seconds_per_fake:.1f} s per face here)"
            return f"building the fake pool: {self.done}/{self.size} faces{left}{rate}"
        if self.state == "ready":
            return f"fake pool ready: {self.size} faces"
        if self.state == "loading":
            return "loading FALCO's networks for the fake pool"
        if self.state == "failed":
            return f"the fake pool could not be built: {self.message}"
        return ""


_STATUS = PoolStatus()
_STATUS_LOCK = threading.Lock()


def pool_status() -> PoolStatus:
    """The latest state of a pool build in this process (the background one or a request's)."""
    with _STATUS_LOCK:
        return _STATUS


def _set_status(**changes) -> PoolStatus:
    global _STATUS
    with _STATUS_LOCK:
        _STATUS = replace(_STATUS, **changes)
        return _STATUS


def pool_dir() -> Path:
    return cache_dir() / "falco_pool"


def _read_pool(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if not path.is_file():
        return np.zeros(0, np.int64), None
    with np.load(path, allow_pickle=False) as data:
        return data["seeds"], data["features"]


def cached_pool_size(models: FalcoModels, variant: Variant = OFFICIAL, folder: Path | None = None) -> int:
    """How many fakes the disk cache holds for these networks (0 when none)."""
    path = (folder or pool_dir()) / f"pool_{_fingerprint(models, variant)}.npz"
    return len(_read_pool(path)[0])


def build_pool(models: FalcoModels, variant: Variant = OFFICIAL, size: int | None = None,
               progress: ProgressFn | None = None, folder: Path | None = None,
               cancel: CancelToken | None = None) -> FakePool:
    """The fake pool of ``size`` seeds (0..size-1), from the disk cache or built now (and saved as it goes).

    An interrupted or cancelled build resumes where it stopped; a larger size extends the cached pool.
    Only seeds and features are stored (``.npz``). While another thread builds (the background build),
    this waits and reports that build's progress; ``cancel`` is checked between fakes and while waiting.
    """
    size = size or pool_size_for(models.device)
    folder = folder or pool_dir()
    path = folder / f"pool_{_fingerprint(models, variant)}.npz"
    while not _POOL_LOCK.acquire(timeout=0.5):
        check(cancel)
        status = pool_status()
        if progress is not None and status.state == "building" and status.size:
            left = "" if status.seconds_left is None else f", about {format_seconds(status.seconds_left)} left"
            progress(status.done / status.size,
                     f"the fake pool is being built in the background: {status.done}/{status.size} faces{left}")
    try:
        seeds, feats = _read_pool(path)
        if len(seeds) >= size:
            _set_status(state="ready", done=len(seeds), size=len(seeds), seconds_left=0.0)
            return FakePool(seeds[:size], feats[:size], POOL_PSI, path)
        start = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        seeds, feats = _extend_pool(models, variant, seeds, feats, size, path, progress, cancel)
        return FakePool(seeds, feats, POOL_PSI, path, time.perf_counter() - start)
    finally:
        _POOL_LOCK.release()


@gpu_task(duration=300)
def _extend_pool(models: FalcoModels, variant: Variant, seeds: np.ndarray, feats: np.ndarray | None, size: int,
                 path: Path, progress: ProgressFn | None, cancel: CancelToken | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> tuple[np.ndarray, np.ndarray]:
    """Render and embed the missing fakes in batches, saving as it goes (so a build can resume)."""
    done = len(seeds)
    eta = Eta(size, clock=clock, done=done)
    saved_at = clock()
    _set_status(state="building", done=done, size=size, seconds_left=None)
    try:
        while done < size:
            check(cancel)
            batch = list(range(done, min(size, done + POOL_BATCH.get(models.device.type, 1))))
            with torch.no_grad():
                images = models.generator.synthesis(fake_wplus(models.generator, batch))
                new = pool_features(models.farl, images, from_pm1=True, variant=variant).cpu().numpy()
            seeds = np.concatenate([seeds, np.asarray(batch, np.int64)])
            feats = new.astype(np.float32) if feats is None else np.concatenate([feats, new.astype(np.float32)])
            done = len(seeds)
            eta.update(done)
            rate = eta.seconds_per_item()
            if rate is not None:
                MEASURED_SECONDS_PER_FAKE[models.device.type] = rate
            status = _set_status(done=done, seconds_left=eta.seconds_left(), seconds_per_fake=rate)
            if clock() - saved_at >= SAVE_EVERY_SECONDS or done >= size:
                _save_npz(path, seeds=seeds, features=feats)
                saved_at = clock()
            if progress is not None:
                progress(done / size, status.describe() + " (once, then cached)")
    except BaseException:
        if feats is not None and len(seeds):
            _save_npz(path, seeds=seeds, features=feats)  # a stopped build keeps what it made
        _set_status(state="idle")
        raise
    _set_status(state="ready", seconds_left=0.0)
    return seeds, feats


# --------------------------------------------------------------------------- the background build

_BACKGROUND: dict[str, threading.Thread] = {}


def background_allowed() -> bool:
    """No background build on ZeroGPU: a GPU there is lent to requests only."""
    return not os.environ.get("SPACES_ZERO_GPU")


def start_background_build(variant: Variant = OFFICIAL, size: int | None = None) -> bool:
    """Build the default pool in a daemon thread, once per process; True when a build was started now.

    Called when the anonymization tab is first opened, so a visitor's first run finds the pool ready.
    Only with the weights on disk: a download belongs to a request, which shows its progress and errors.
    """
    if not background_allowed() or not weights_on_disk():
        return False
    key = variant.name
    thread = _BACKGROUND.get(key)
    if thread is not None and (thread.is_alive() or pool_status().state != "failed"):
        return False

    def build() -> None:
        try:
            _set_status(state="loading")
            models = get_models(variant)
            build_pool(models, variant, size=size)
        except Exception as exc:  # the request that needs the pool raises it again, worded for the user
            log.info("background fake pool build stopped: %s", exc)
            _set_status(state="failed", message=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    thread = threading.Thread(target=build, name=f"falco-pool-{key}", daemon=True)
    _BACKGROUND[key] = thread
    thread.start()
    return True


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write atomically, so an interrupted build never leaves a broken cache.

    The temporary file's name is this writer's own: the app and a CLI (or two workers) sharing one cache
    can save the same pool at once, and a shared name let one rename the other's half-written file.
    """
    import tempfile

    fd, name = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp.npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
