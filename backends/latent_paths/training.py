"""Learning ContraCLIP paths from sentence pairs (``python -m backends.latent_paths train``).

The objective of the paper, for one iteration:

1. sample a face: z ~ N(0, I) → w → W+ truncated at ψ toward the mean latent; render it;
2. pick B (path, signed magnitude) pairs: a path k uniformly, a magnitude from
   U[min, max] or −U[min, max] (a pool of 2B, half of each sign, B drawn without replacement);
3. shift the code along d_k(x) by each magnitude (W+ rows 0..L−1) and render the B shifted faces;
4. CLIP: u_i = normalise(E(shifted_i) − E(original)), the image-embedding difference, and
   t_i = sign_i · normalise(T(A_k) − T(B_k)), the dipole's text direction;
5. loss = NT-Xent over the batch with temperature τ: the mean of the cross-entropies of
   (u tᵀ / τ) and (t uᵀ / τ) with the diagonal as targets.

The support sets start at the official initialisation (radii around the Jung radius of the
codes, log γ from ``lss_beta``) and are trained with Adam, the learning rate dropping ×0.1 at
70 % and 85 % of the iterations. CLIP sees the generator output through ContraCLIP's transform
(resize/crop to its input size, CLIP mean/std on the raw output).

The result is written in the official layout: ``<out>/models/latent_support_sets.pt`` (the bare
two-tensor state dict), ``<out>/models/semantic_dipoles.json``, ``<out>/args.json`` and
``<out>/stats.json``. The Latent paths tab lists such folders under
``$FACELAB_TRAINED_PATHS_DIR`` (see :func:`trained_root`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import FaceLabError, InputError
from ..networks.clip import ClipEncoder
from ..networks.contraclip import (
    LSS_BETA,
    SupportSets,
    jung_radius,
    jung_radius_ffhq,
    pad_shift,
    save_support_sets,
)
from ..networks.stylegan2 import Generator
from .paths import TRAINED_ENV, trained_root  # noqa: F401 - TRAINED_ENV names where train writes

ProgressFn = Callable[[int, float], None]




@dataclass
class TrainConfig:
    """Hyper-parameters; the defaults are those of the official W+ training scripts."""

    dipoles: list[tuple[str, str]]
    num_dipoles: int = 64  # support dipoles per path (2D support vectors)
    layers: int = 12  # W+ rows 0..layers−1 move (stylegan_layer 11)
    iterations: int = 15000
    batch_size: int = 7
    lr: float = 1e-3
    temperature: float = 0.07
    min_shift: float = 0.1
    max_shift: float = 0.2
    lss_beta: float = LSS_BETA
    truncation: float = 0.7
    radius: float | None = None  # Jung radius; estimated from samples when None (known for FFHQ-1024)
    seed: int = 0
    history: list[float] = field(default_factory=list)

    def check(self, generator: Generator) -> None:
        if not self.dipoles:
            raise InputError("Give at least one dipole: --dipole \"<sentence A>\" \"<sentence B>\".")
        for a, b in self.dipoles:
            if not a.strip() or not b.strip() or a.strip() == b.strip():
                raise InputError(f"A dipole needs two different, non-empty sentences, not {a!r} and {b!r}.")
        if not 1 <= self.layers <= generator.n_latent:
            raise InputError(f"layers must be 1 to {generator.n_latent} for this generator, not {self.layers}.")
        if not 0 < self.min_shift <= self.max_shift:
            raise InputError("Shift magnitudes need 0 < min <= max.")
        if self.batch_size < 2:
            raise InputError("The contrastive loss needs a batch of at least 2.")


def nt_xent(image_dirs: torch.Tensor, text_dirs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric contrastive loss of matched rows (B, E) × (B, E), cosine similarities over ``temperature``."""
    sims = F.normalize(image_dirs, dim=-1) @ F.normalize(text_dirs, dim=-1).t() / temperature
    labels = torch.arange(sims.shape[0], device=sims.device)
    return 0.5 * (F.cross_entropy(sims, labels) + F.cross_entropy(sims.t(), labels))


def sample_codes(generator: Generator, mean_latent: torch.Tensor, n: int, truncation: float,
                 gen: torch.Generator) -> torch.Tensor:
    """W+ codes of n random faces at truncation ψ (no gradient)."""
    z = torch.randn(n, generator.style_dim, generator=gen)
    with torch.no_grad():
        wplus = generator.to_wplus(generator.mapping(z.to(mean_latent.device)))
        return generator.truncate(wplus, truncation, mean_latent)


def estimate_radius(generator: Generator, mean_latent: torch.Tensor, layers: int, truncation: float,
                    gen: torch.Generator, samples: int = 1000) -> float:
    """The Jung radius of W+ rows 0..layers−1 at ψ; the official fit for the FFHQ-1024 generator."""
    if generator.size == 1024 and generator.style_dim == 512 and layers == 12:
        return jung_radius_ffhq(truncation)
    codes = sample_codes(generator, mean_latent, samples, truncation, gen)
    return jung_radius(codes[:, :layers])


def sample_shifts(batch: int, num_paths: int, low: float, high: float,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(paths, signed magnitudes) as the official trainer draws them."""
    paths = torch.randint(0, num_paths, (batch,), generator=gen)
    positive = (low - high) * torch.rand(batch, generator=gen) + high  # U(low, high]
    negative = (low - high) * torch.rand(batch, generator=gen) - low  # U[−high, −low)
    pool = torch.cat([negative, positive])
    pool = pool[torch.randperm(pool.shape[0], generator=gen)]
    pick = torch.multinomial(torch.arange(pool.shape[0], dtype=torch.float), batch, replacement=False, generator=gen)
    return paths, pool[pick]


def train(generator: Generator, mean_latent: torch.Tensor, clip: ClipEncoder, cfg: TrainConfig,
          progress: ProgressFn | None = None) -> SupportSets:
    """Learn one path per dipole of ``cfg``; returns the trained support sets (losses in ``cfg.history``)."""
    cfg.check(generator)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = mean_latent.device
    generator.eval().requires_grad_(False)
    clip.eval().requires_grad_(False)
    dim = cfg.layers * generator.style_dim
    radius = cfg.radius or estimate_radius(generator, mean_latent, cfg.layers, cfg.truncation, gen)
    cfg.radius = radius
    lss = SupportSets.initialised(len(cfg.dipoles), cfg.num_dipoles, radius, dim, cfg.lss_beta, gen).to(device)
    lss.train()
    with torch.no_grad():
        pos = clip.encode_texts([a for a, _ in cfg.dipoles])
        neg = clip.encode_texts([b for _, b in cfg.dipoles])
        text_dirs = F.normalize(pos - neg, dim=-1)  # (K, E)
    optimiser = torch.optim.Adam(lss.parameters(), lr=cfg.lr)
    milestones = [int(0.7 * cfg.iterations), int(0.85 * cfg.iterations)]
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=milestones, gamma=0.1)
    for it in range(cfg.iterations):
        wplus = sample_codes(generator, mean_latent, 1, cfg.truncation, gen)
        paths, magnitudes = sample_shifts(cfg.batch_size, lss.num_paths, cfg.min_shift, cfg.max_shift, gen)
        paths, magnitudes = paths.to(device), magnitudes.to(device)
        with torch.no_grad():
            original = clip.encode_generator_output_official(generator(wplus))  # (1, E)
        x = wplus[:, :cfg.layers].reshape(1, -1).expand(cfg.batch_size, -1)
        shift = magnitudes.view(-1, 1) * lss.direction(x, paths)
        shifted = wplus + pad_shift(shift, wplus.shape[1], generator.style_dim)
        image_dirs = clip.encode_generator_output_official(generator(shifted)) - original
        targets = torch.sign(magnitudes).view(-1, 1) * text_dirs[paths]
        loss = nt_xent(image_dirs, targets, cfg.temperature)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        cfg.history.append(float(loss.detach()))
        if progress is not None:
            progress(it, float(loss.detach()))
    return lss.eval().requires_grad_(False)


def write_experiment(lss: SupportSets, cfg: TrainConfig, out_dir: str | Path, seconds: float) -> Path:
    """The official experiment layout: models/latent_support_sets.pt, models/semantic_dipoles.json, args.json."""
    out = Path(out_dir)
    save_support_sets(lss, out / "models" / "latent_support_sets.pt")
    (out / "models" / "semantic_dipoles.json").write_text(json.dumps([list(d) for d in cfg.dipoles], indent=1))
    args = {k: v for k, v in asdict(cfg).items() if k not in ("history", "dipoles")}
    args.update({"stylegan_space": "W+", "stylegan_layer": cfg.layers - 1, "num_latent_support_dipoles":
                 cfg.num_dipoles, "loss": "contrastive", "seconds": round(seconds, 2)})
    (out / "args.json").write_text(json.dumps(args, indent=1))
    stats = {str(i + 1): {"loss": v} for i, v in enumerate(cfg.history)}
    (out / "stats.json").write_text(json.dumps(stats))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.latent_paths train",
                                     description="Learn ContraCLIP paths in FFHQ-1024 W+ from sentence pairs.")
    parser.add_argument("--dipole", nargs=2, action="append", metavar=("SENTENCE_A", "SENTENCE_B"), required=True,
                        help="a semantic dipole: the sentence to walk toward, then the one to walk away from")
    parser.add_argument("--name", default=None, help="folder name under $FACELAB_TRAINED_PATHS_DIR")
    parser.add_argument("--out", default=None, help="experiment folder (overrides --name)")
    defaults = TrainConfig(dipoles=[])
    for arg in ("iterations", "batch_size", "num_dipoles", "lr", "temperature", "min_shift", "max_shift",
                "lss_beta", "truncation", "seed"):
        parser.add_argument("--" + arg.replace("_", "-"), type=type(getattr(defaults, arg)),
                            default=getattr(defaults, arg))
    parser.add_argument("--stand-in-weights", action="store_true",
                        help="deterministic random weights instead of checkpoints (trains nothing useful)")
    args = parser.parse_args(argv)
    if args.stand_in_weights:
        from ..standin import enable_standin

        enable_standin(True)
    cfg = TrainConfig(dipoles=[tuple(d) for d in args.dipole], iterations=args.iterations,
                      batch_size=args.batch_size, num_dipoles=args.num_dipoles, lr=args.lr,
                      temperature=args.temperature, min_shift=args.min_shift, max_shift=args.max_shift,
                      lss_beta=args.lss_beta, truncation=args.truncation, seed=args.seed)
    name = args.name or f"ContraCLIP_W+-K{len(cfg.dipoles)}-D{cfg.num_dipoles}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(args.out) if args.out else trained_root() / name
    try:
        from .. import inversion
        from ..device import pinned_cpu_dtype
        from .measure import get_clip

        with pinned_cpu_dtype("fp32"):  # trained under autograd: never the bfloat16 inference copies
            models = inversion.get_models()
            clip, clip_standin = get_clip()
        generator = models.generator.float()
        start = time.perf_counter()

        def progress(it: int, loss: float) -> None:
            if it % 10 == 0 or it == cfg.iterations - 1:
                rate = (time.perf_counter() - start) / (it + 1)
                print(f"\riter {it + 1}/{cfg.iterations}  loss {loss:.4f}  {rate:.2f} s/iter", end="", file=sys.stderr)

        lss = train(generator, models.mean_latent.float(), clip, cfg, progress)
        seconds = time.perf_counter() - start
        print(file=sys.stderr)
        write_experiment(lss, cfg, out, seconds)
    except FaceLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({cfg.iterations} iterations in {seconds:.0f} s, "
          f"{1000 * seconds / cfg.iterations:.0f} s per 1000)")
    if models.standin or clip_standin:
        print("note: stand-in weights were used; the paths are not meaningful", file=sys.stderr)
    return 0


