"""One photo through FALCO: align and invert, nearest fake, optimise, paste back."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..device import gpu_task
from ..errors import InputError
from ..face import paste_back
from ..inversion import Inversion, invert_photo
from ..job_control import CancelToken, Eta, check, running, wait_for_stopped_jobs
from ..networks import farl as farl_net
from .models import FalcoModels, get_models
from .optimisation import STEPS, FalcoLoss, LatentCode, ProgressFn, StepRecord, Variant, get_variant, optimise
from .pool import POOL_PSI, FakePool, build_pool, fake_wplus, pool_features

MAX_STEPS = 200
MAX_CANDIDATES = 16

# Seconds one optimisation step took on this machine, per device type (the tab's estimates read it).
MEASURED_SECONDS_PER_STEP: dict[str, float] = {}


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
    run_card: dict[str, Any] = field(default_factory=dict)  # backends.runcard: what re-runs this result

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
            "run_card": self.run_card,
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


def _step_reporter(report: ProgressFn, steps: int, device: torch.device, cancel: CancelToken | None,
                   clock=time.perf_counter) -> ProgressFn:
    """The optimisation's progress: the measured time left appended, the cancel token checked per step."""
    eta = Eta(steps, clock=clock)

    def on_progress(fraction: float, desc: str) -> None:
        check(cancel)
        eta.update(round(fraction * steps))
        rate = eta.seconds_per_item()
        if rate is not None:
            MEASURED_SECONDS_PER_STEP[device.type] = rate
        left = eta.describe()
        report(0.3 + 0.7 * fraction, f"{desc}, {left}" if left else desc)

    return on_progress


def anonymize_photo(source: Any, *, margin: float = 0.0, steps: int = STEPS, seed: int = 0, candidates: int = 1,
                    variant: str = "official", already_aligned: bool = False, progress: ProgressFn | None = None,
                    pool_size: int | None = None, cancel: CancelToken | None = None) -> AnonymizeResult:
    """Anonymise the largest face of a photo with FALCO and paste it back into the photo.

    ``margin`` is FALCO's m (the identity cosine the optimisation aims at; 0 =
    unrelated identity). ``candidates`` > 1 starts from one of that many nearest
    fakes, chosen by ``seed`` (1 = the paper's nearest neighbour; the result is
    then the same for every seed). ``cancel`` is checked between pool fakes and
    between steps (:class:`~backends.job_control.JobCancelled`). Raises
    :class:`~backends.errors.NoFaceError` when there is no face.
    """
    _check_options(margin, steps, seed, candidates)
    steps, seed, candidates = int(steps), int(seed), int(candidates)
    chosen = get_variant(variant)
    token = cancel or CancelToken()
    start = time.perf_counter()
    report = progress or (lambda _f, _d: None)
    wait_for_stopped_jobs(token, lambda d: report(0.0, d))
    with running(token):
        report(0.0, "aligning and inverting the face")
        inv = invert_photo(source, what="photo", already_aligned=already_aligned)
        check(token)
        models = get_models(chosen)
        check(token)
        pool = build_pool(models, chosen, size=pool_size, cancel=token,
                          progress=lambda f, d: report(0.05 + 0.25 * f, d))
        out = _anonymize_aligned(models, inv, pool, chosen, float(margin), steps, seed, candidates,
                                 _step_reporter(report, steps, models.device, token))
    anonymized = output_image(out["final"], chosen)
    pasted = Image.fromarray(paste_back(np.asarray(inv.photo), anonymized, inv.aligned))
    notices = list(inv.notices)
    if models.standin:
        notices.append("Stand-in weights are in use: the images are not results of FALCO.")
    if candidates == 1 and seed != 0:
        notices.append("With 1 candidate the start is always the nearest fake, so the seed changes nothing.")
    report(1.0, "done")
    result = AnonymizeResult(
        aligned=inv.aligned.image, inversion=output_image(out["inversion"], chosen),
        start=output_image(out["start"], chosen), anonymized=anonymized, pasted=pasted, history=out["history"],
        cos_inversion=out["cos_inv"], cos_start=out["cos_start"], cos_final=out["cos_final"],
        attr_final=out["attr_final"], attr_similarity=out["attr_sim"], margin=float(margin), steps=steps, seed=seed,
        candidates=candidates, neighbour_seed=out["neighbour_seed"], neighbour_similarity=out["neighbour_sim"],
        pool_size=len(pool), variant=chosen.name, standin=models.standin, wplus=out["wplus"], notices=notices,
        seconds=time.perf_counter() - start, generator_key=models.generator_key,
    )
    result.run_card = photo_run_card(result, source, already_aligned=already_aligned)
    return result


# --------------------------------------------------------------------------- reviewer view: card and metrics

REID_DECOYS = {"cpu": 4, "cuda": 32}  # nearest pool fakes rendered as decoys (each is a 1024 render)
_DECOY_EMBEDDINGS: dict[tuple, torch.Tensor] = {}  # (generator key, stand-in, device, psi, seed) -> [512]


def photo_run_card(result: AnonymizeResult, source: Any, *, already_aligned: bool) -> dict[str, Any]:
    """The run card of one anonymised photo (:mod:`backends.runcard`); ``python -m backends.replay`` re-runs it."""
    from .. import runcard

    return runcard.make_card(
        method="FALCO", engine=f"falco-{result.variant}", replay="backends.anonymization.photo:anonymize_photo",
        inputs={"photo": source},
        settings={"margin": result.margin, "steps": result.steps, "seed": result.seed,
                  "candidates": result.candidates, "variant": result.variant,
                  "already_aligned": bool(already_aligned), "pool_size": result.pool_size},
        seeds={"seed": result.seed, "pool_seeds": f"0..{result.pool_size - 1}", "pool_psi": POOL_PSI,
               "neighbour_pool_seed": result.neighbour_seed},
        weights=["stylegan2_ffhq1024", "e4e_ffhq_encode", result.generator_key, "ir_se50", "farl_ep64"],
        standin=result.standin, timings={"seconds": result.seconds},
        outputs={"pasted": result.pasted, "anonymized": result.anonymized},
        output_attr={"pasted": "pasted", "anonymized": "anonymized"},
    )


@gpu_task(duration=60)
def _decoy_embeddings(models: FalcoModels, seeds: list[int], psi: float) -> torch.Tensor:
    """ArcFace embeddings [N, 512] of pool fakes (rendered one at a time, each kept per process)."""
    from .. import metrics

    out = []
    for seed in seeds:
        key = (models.generator_key, models.standin, str(models.device), psi, int(seed))
        if key not in _DECOY_EMBEDDINGS:
            with torch.no_grad():
                image = models.generator.synthesis(fake_wplus(models.generator, [seed], psi).to(models.device))
            _DECOY_EMBEDDINGS[key] = metrics.identity_embedding(image.clamp(-1, 1), models.arcface)[0]
        out.append(_DECOY_EMBEDDINGS[key])
    return torch.stack(out) if out else torch.empty(0, 512)


def photo_metrics(result: AnonymizeResult, decoys: int | None = None) -> dict[str, Any]:
    """The papers' metrics of one anonymised face, computed after the result (:mod:`backends.metrics`).

    CSIM of the anonymised face to the original on the evaluation path (both in [-1, 1], unlike the
    official loss's mixed ranges), the FaRL attribute similarity, and re-identification: the original's
    rank-1 match among the anonymised face and the ``decoys`` pool fakes nearest to it in FaRL space
    (the hardest look-alikes FALCO had to choose from).
    """
    from .. import metrics

    start = time.perf_counter()
    variant = get_variant(result.variant)
    models = get_models(variant)
    n = REID_DECOYS.get(models.device.type, REID_DECOYS["cpu"]) if decoys is None else int(decoys)
    original = metrics.identity_embedding(metrics.identity_crop(result.aligned, aligned=True).tensor, models.arcface)
    anonymized = metrics.identity_embedding(metrics.identity_crop(result.anonymized, aligned=True).tensor,
                                            models.arcface)
    pool = build_pool(models, variant, size=result.pool_size)
    feature = pool_features(models.farl, image_to_tensor01(result.aligned, models.device), from_pm1=False,
                            variant=variant)[0]
    order, _ = pool.nearest(feature, k=min(n, len(pool))) if n > 0 else (np.zeros(0, np.int64), None)
    seeds = [int(pool.seeds[i]) for i in order]
    reid = metrics.reidentification(original, anonymized, _decoy_embeddings(models, seeds, pool.psi))
    values = {"identity_cosine_anonymized": float((original * anonymized).sum()),
              "attribute_similarity": result.attr_similarity, "reidentification": reid.text()}
    return {
        "result": metrics.present(values, standin=result.standin),
        "reidentification": reid.to_dict() | {"decoy_pool_seeds": seeds},
        "about": metrics.about(list(values)),
        "unavailable": {"lpips": "not computed here: anonymization changes the face on purpose, so a pixel "
                                 "distance to the original says little (reenactment uses LPIPS)"},
        "seconds": round(time.perf_counter() - start, 2),
    }
