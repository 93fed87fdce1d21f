"""Start codes, the cached Euler walk, renders, and the edit/strip results the tab shows."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import inversion
from ..errors import InputError
from ..face import paste_back as paste_into_photo
from ..inversion import Inversion, LRUCache, content_hash, tensor_to_pil
from ..media import ImageSource, write_video
from ..networks.contraclip import (
    DEFAULT_EPS,
    RENDER_MODES,
    Traversal,
    render_codes,
    traverse,
)
from ..results import results_dir, seal
from ..standin import standin_enabled
from .measure import Margins, clip_margins, figure_image, margin_plot
from .paths import PathModel, PathPreset, ProgressFn, get_paths

SEED_PSI = 0.7  # the official code samples faces at ψ = 0.7
MAX_STRENGTH = 15.0  # 100 steps of 0.15 each way, as the official eval scripts walk
MAX_STEPS = 400
DEFAULT_FRAMES = 9
FRAME_SIZE = 256  # strip, GIF and MP4 frames
RENDER_NOTES = {
    "stored": "Rendering the stored codes of the walk (Face Lab's default).",
    "official": "Rendering as the official script does: each frame adds its step's shift a second time.",
}

STANDIN_NOTICE = "Stand-in weights are in use: the images are not results of ContraCLIP."


# --------------------------------------------------------------------------- start codes

@dataclass
class Start:
    """Where a walk begins: an inverted photo or a sampled face."""

    wplus: torch.Tensor  # (1, 18, 512), float32, CPU
    kind: str  # "photo" or "seed"
    seed: int | None = None
    inversion: Inversion | None = None
    notices: list[str] = field(default_factory=list)


def start_from_photo(source: ImageSource) -> Start:
    """Photo → aligned face → e4e W+ (untruncated), cached by the photo's pixels."""
    inv = inversion.invert_photo(source)
    return Start(inv.wplus, "photo", inversion=inv, notices=list(inv.notices))


def start_from_seed(seed: int) -> Start:
    """A face sampled from ``seed``: z ~ N(0, I) → w → W+, truncated at ψ = 0.7 toward the mean latent."""
    if not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise InputError(f"The seed must be a whole number from 0 to {2**32 - 1}, not {seed!r}.")
    models = inversion.get_models()
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(1, models.generator.style_dim, generator=gen)
    with torch.inference_mode():
        g = models.generator
        w = g.mapping(z.to(device=models.device, dtype=models.dtype))
        wplus = g.truncate(g.to_wplus(w), SEED_PSI, models.mean_latent)
    return Start(wplus.float().cpu(), "seed", seed=int(seed))


def resolve_start(photo: ImageSource | None, seed: int | None) -> Start:
    """A photo when one is given, else the seed."""
    if photo is not None:
        return start_from_photo(photo)
    if seed is None:
        raise InputError("Please upload a photo or give a seed.")
    return start_from_seed(seed)


# --------------------------------------------------------------------------- walks

_WALKS = LRUCache(16)


def walk_for(start: Start, model: PathModel, path: int, eps: float, steps: int) -> Traversal:
    """The walk of at least ``steps`` steps each way, cached: slider moves re-use it."""
    key = (content_hash(start.wplus), model.corpus, path, float(eps), model.standin)
    hit = _WALKS.get(key)
    if hit is not None and hit.steps >= steps:
        return hit
    walk = traverse(model.support_sets, start.wplus, path, eps, steps)
    _WALKS.put(key, walk)
    return walk


def clear_caches() -> None:
    _WALKS.clear()
    _ORIGINS.clear()


def _check_eps(eps: float) -> float:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and 0.01 <= eps <= 1.0):
        raise InputError(f"The step size must be between 0.01 and 1, not {eps}.")
    return float(eps)


def steps_for(strength: float, eps: float) -> int:
    """Signed number of whole steps for a signed strength (strength = steps × step size)."""
    if not (isinstance(strength, (int, float)) and math.isfinite(strength)):
        raise InputError(f"The strength must be a number, not {strength!r}.")
    steps = int(round(strength / eps))
    if abs(steps) > MAX_STEPS:
        raise InputError(f"The strength {strength} needs {abs(steps)} steps of {eps}; at most {MAX_STEPS} are allowed.")
    return steps


_ORIGINS = LRUCache(8)


def origin_image(start: Start) -> Image.Image:
    """The start code rendered as it is (a photo's untruncated inversion, or the sampled face), cached."""
    if start.inversion is not None:
        return inversion.reconstruction(start.inversion, truncate=False)
    key = (content_hash(start.wplus), standin_enabled())
    hit = _ORIGINS.get(key)
    if hit is None:
        hit = _render(start.wplus)[0]
        _ORIGINS.put(key, hit)
    return hit


def _render(codes: torch.Tensor) -> list[Image.Image]:
    """1024 images of W+ codes (no further truncation), one at a time to bound memory."""
    models = inversion.get_models()
    return [tensor_to_pil(inversion.render(models, codes[i: i + 1], 1.0)) for i in range(codes.shape[0])]


# --------------------------------------------------------------------------- edits

@dataclass
class EditResult:
    """One point on a path."""

    image: Image.Image  # the edited 1024 face
    pasted: Image.Image | None
    start: Start
    preset: PathPreset
    corpus: str
    path_index: int
    steps: int
    eps: float
    render_mode: str
    standin: bool
    notices: list[str]
    origin: Image.Image | None = None  # the start rendered (strength 0), for before/after
    run_card: dict[str, Any] = field(default_factory=dict)  # backends.runcard: what re-runs this edit

    @property
    def final(self) -> Image.Image:
        return self.pasted if self.pasted is not None else self.image

    @property
    def strength(self) -> float:
        return self.steps * self.eps

    def to_dict(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus, "path_label": self.preset.label, "path_index": self.path_index,
            "sentence_a": self.preset.positive, "sentence_b": self.preset.negative,
            "steps": self.steps, "step_size": self.eps, "strength": round(self.strength, 6),
            "start": self.start.kind, "seed": self.start.seed, "render_mode": self.render_mode,
            "render_note": RENDER_NOTES[self.render_mode], "paste_back": self.pasted is not None,
            "standin": self.standin, "notices": self.notices,
            **({"run_card": self.run_card} if self.run_card else {}),
        }


def _prepare(photo: ImageSource | None, seed: int | None, corpus: str, path: str | int, eps: float,
             render_mode: str) -> tuple[Start, PathModel, int, float]:
    if render_mode not in RENDER_MODES:
        raise InputError(f"Unknown rendering mode '{render_mode}'; choose one of: {', '.join(RENDER_MODES)}.")
    eps = _check_eps(eps)
    model = get_paths(corpus)
    k = model.index(path)
    start = resolve_start(photo, seed)
    return start, model, k, eps


def _paste(start: Start, image: Image.Image) -> Image.Image | None:
    if start.inversion is None:
        return None
    inv = start.inversion
    return Image.fromarray(paste_into_photo(np.asarray(inv.photo), image, inv.aligned))


def edit(photo: ImageSource | None = None, *, seed: int | None = None, corpus: str = "attributes",
         path: str | int = 0, strength: float = 3.0, eps: float = DEFAULT_EPS, render_mode: str = "stored",
         paste_back: bool = False, with_origin: bool = False, progress: ProgressFn | None = None) -> EditResult:
    """Walk ``strength`` (signed; steps × step size) along one path from a photo or a seed, and render it.

    ``with_origin`` also returns the start rendered at strength 0 (cached per start code).
    ``progress(fraction, stage)`` hears each stage as it starts.
    """
    report = progress or (lambda _f, _d: None)
    began = time.perf_counter()
    report(0.0, "Aligning and inverting the photo" if photo is not None else "Sampling the face of the seed")
    start, model, k, eps = _prepare(photo, seed, corpus, path, eps, render_mode)
    steps = steps_for(strength, eps)
    report(0.5, f"Walking {abs(steps)} step(s) along the path")
    walk = walk_for(start, model, k, eps, abs(steps))
    codes = render_codes(walk, render_mode)
    report(0.7, "Rendering the edited face")
    image = _render(codes[walk.index(steps): walk.index(steps) + 1])[0]
    notices = list(start.notices) + list(model.notes)
    if paste_back and start.inversion is None:
        notices.append("Paste-back needs a photo; a sampled face is shown as it is.")
    pasted = _paste(start, image) if paste_back else None
    standin = model.standin or inversion.get_models().standin
    if standin:
        notices.append(STANDIN_NOTICE)
    if with_origin:
        report(0.9, "Rendering the start for comparison")
    origin = origin_image(start) if with_origin else None
    res = EditResult(image, pasted, start, model.paths[k], corpus, k, steps, eps, render_mode, standin, notices,
                     origin)
    res.run_card = latent_path_card(
        "edit", photo, start, corpus,
        {"corpus": corpus, "path": k, "strength": float(strength), "eps": eps, "render_mode": render_mode,
         "paste_back": bool(paste_back)},
        standin, time.perf_counter() - began, {"final": res.final}, {"final": "final"})
    return res


def card_weights(corpus: str) -> list[str]:
    """The registry keys a walk reads: the generator, e4e (photo starts) and the corpus's support sets."""
    from .paths import CORPORA

    keys = ["stylegan2_ffhq1024", "e4e_ffhq_encode"]
    if corpus in CORPORA:
        keys.append(CORPORA[corpus][1])
    return keys


def latent_path_card(kind: str, photo: ImageSource | None, start: Start, corpus: str, settings: dict[str, Any],
                     standin: bool, seconds: float, outputs: dict[str, Any], attrs: dict[str, str]) -> dict[str, Any]:
    """The run card of an edit or a strip (:mod:`backends.runcard`); ``python -m backends.replay`` re-runs it
    with the photo (none for a seed start)."""
    from .. import runcard

    return runcard.make_card(
        method=f"latent_paths_{kind}", engine="contraclip", replay=f"backends.latent_paths.traversal:{kind}",
        inputs={"photo": photo} if photo is not None else {},
        settings={"seed": start.seed if start.kind == "seed" else None, **settings},
        seeds={"start_seed": start.seed, "note": "a photo start is inverted (no random draws); a seed start samples "
               "its face from this seed"},
        weights=card_weights(corpus), standin=standin, timings={"seconds": seconds},
        outputs=outputs, output_attr=attrs,
    )


@dataclass
class StripResult:
    """Frames across a path from −max to +max, with files and the CLIP margin."""

    frames: list[Image.Image]
    strengths: list[float]
    strip: Image.Image
    gif: Path
    mp4: Path
    plot: Image.Image
    margins: Margins
    phi: float
    edit: EditResult  # metadata of the walk (its image is the +max frame)
    run_card: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = self.edit.to_dict()
        data.pop("steps")
        data.pop("strength")
        data.update({
            "strengths": [round(s, 6) for s in self.strengths], "frames": len(self.frames),
            "clip_margins": self.margins.values, "clip_note": self.margins.note, "clip_standin": self.margins.standin,
            "straightness_phi": self.phi,
        })
        if self.run_card:
            data["run_card"] = self.run_card
        return data


def strip(photo: ImageSource | None = None, *, seed: int | None = None, corpus: str = "attributes",
          path: str | int = 0, max_strength: float = 6.0, frames: int = DEFAULT_FRAMES, eps: float = DEFAULT_EPS,
          render_mode: str = "stored", paste_back: bool = False, margin: bool = True,
          out_dir: str | Path | None = None, progress: ProgressFn | None = None) -> StripResult:
    """K frames evenly spread over [−max, +max] along one path, a GIF/MP4 of them and their CLIP margins."""
    if not isinstance(frames, (int, np.integer)) or not 2 <= int(frames) <= 25:
        raise InputError(f"The strip needs 2 to 25 frames, not {frames!r}.")
    began = time.perf_counter()
    start, model, k, eps = _prepare(photo, seed, corpus, path, eps, render_mode)
    top = abs(steps_for(max_strength, eps))
    if top == 0:
        raise InputError(f"The largest strength must be at least one step ({eps}).")
    report = progress or (lambda _f, _d: None)
    walk = walk_for(start, model, k, eps, top)
    codes = render_codes(walk, render_mode)
    signed = [int(round(s)) for s in np.linspace(-top, top, int(frames))]
    images = []
    for i, s in enumerate(signed):
        report(i / (len(signed) + 1), f"rendering frame {i + 1}/{len(signed)}")
        images.append(_render(codes[walk.index(s): walk.index(s) + 1])[0])
    if paste_back and start.inversion is not None:
        images = [_paste(start, im) for im in images]
    report(len(signed) / (len(signed) + 1), "CLIP margin")
    strengths = [s * eps for s in signed]
    preset = model.paths[k]
    margins = clip_margins(images, preset) if margin else Margins(None, "The CLIP margin was not asked for.")
    small = [im.resize((FRAME_SIZE, round(FRAME_SIZE * im.height / im.width)), Image.Resampling.LANCZOS)
             for im in images]
    strip_image = Image.new("RGB", (sum(im.width for im in small), max(im.height for im in small)))
    x = 0
    for im in small:
        strip_image.paste(im, (x, 0))
        x += im.width
    folder = Path(out_dir) if out_dir is not None else results_dir("latent_paths")
    folder.mkdir(parents=True, exist_ok=True)
    loop = small + small[-2:0:-1]  # forth and back
    gif = folder / "latent_path.gif"
    loop[0].save(gif, save_all=True, append_images=loop[1:], duration=200, loop=0)
    mp4 = write_video([np.asarray(im) for im in loop], folder / "latent_path.mp4", fps=5)
    if out_dir is None:
        seal(folder)
    notices = list(start.notices) + list(model.notes)
    standin = model.standin or inversion.get_models().standin
    if standin:
        notices.append(STANDIN_NOTICE)
    meta = EditResult(images[-1], None, start, preset, corpus, k, signed[-1], eps, render_mode, standin, notices)
    report(1.0, "done")
    res = StripResult(images, strengths, strip_image, gif, mp4, margin_plot(strengths, margins, preset), margins,
                      walk.phi, meta)
    res.run_card = latent_path_card(
        "strip", photo, start, corpus,
        {"corpus": corpus, "path": k, "max_strength": float(max_strength), "frames": int(frames), "eps": eps,
         "render_mode": render_mode, "paste_back": bool(paste_back), "margin": bool(margin)},
        standin, time.perf_counter() - began, {"strip": strip_image, "animation": mp4},
        {"strip": "strip", "animation": "mp4"})
    return res




# --------------------------------------------------------------------------- reviewer view: identity along the strip


def strip_metrics(res: StripResult) -> tuple[dict[str, Any], Image.Image]:
    """ArcFace identity cosine (CSIM, :mod:`backends.metrics`) of every strip frame to the start, and one plot
    of it beside the CLIP margin. Computed after the strip is shown."""
    import time

    from .. import metrics

    start_time = time.perf_counter()
    net, arc_standin = metrics.arcface()
    origin = origin_image(res.edit.start)
    aligned = all(im.size == origin.size for im in res.frames)  # pasted frames are photos: find the face
    reference = metrics.identity_embedding(metrics.identity_crop(origin, aligned=True).tensor, net)
    crops = torch.cat([metrics.identity_crop(im, aligned=aligned).tensor for im in res.frames])
    curve = (metrics.identity_embedding(crops, net) @ reference[0]).tolist()
    standin = res.edit.standin or arc_standin
    values = {"identity_cosine_to_start": [round(c, 4) for c in curve]}
    shown = {
        "result": metrics.present(values, standin=standin),
        "strengths": [round(s, 6) for s in res.strengths],
        "clip_margins": res.margins.values,
        "about": metrics.about(["identity_cosine_to_start"]),
        "seconds": round(time.perf_counter() - start_time, 2),
    }
    return shown, review_plot(res.strengths, res.margins, curve, res.edit.preset, standin)


def review_plot(strengths: list[float], margins: Margins, identity: list[float], preset: PathPreset,
                standin: bool) -> Image.Image:
    """The CLIP margin (left axis) and the identity cosine to the start (right axis) along the path."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    if margins.values is not None:
        ax.plot(strengths, margins.values, marker="o", color="tab:blue", label="CLIP margin")
        ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("strength along the path (− toward B, + toward A)")
    ax.set_ylabel("cos(img, A) − cos(img, B)", color="tab:blue")
    right = ax.twinx()
    right.plot(strengths, identity, marker="s", color="tab:orange", label="identity to start")
    right.set_ylabel("ArcFace cosine to the start", color="tab:orange")
    right.set_ylim(min(-0.05, min(identity) - 0.05), 1.05)
    title = f"A: {preset.positive}\nB: {preset.negative}"
    if standin:
        title = "STAND-IN WEIGHTS (not a result)\n" + title
    ax.set_title(title, fontsize=8, color="#b00000" if standin else "black")
    return figure_image(fig)
