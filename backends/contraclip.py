"""Latent paths with ContraCLIP (Tzelepis et al., 2022) on real photos or sampled faces.

The steps, each visible in the tab:

1. **Start**: a photo goes through the face pipeline and e4e (:mod:`backends.inversion`,
   cached by pixels, codes *untruncated*), or a seed gives z → w → W+ truncated at ψ = 0.7
   toward the mean latent, as the official code samples its faces;
2. **Walk**: an Euler walk along the chosen path (:mod:`backends.networks.contraclip`); the
   direction is recomputed at every step, W+ rows 0..11 move, rows 12..17 stay. The walk is
   cached per start code, path and step size, so moving the strength slider only picks a
   point on it: nothing is inverted or walked twice;
3. **Render** the codes with the FFHQ-1024 StyleGAN2 that e4e inverts into (the rosinality
   file; the genforce file ContraCLIP trained with has the same W+ space, see the key map in
   :mod:`backends.networks.stylegan2`). The stored codes are rendered by default; the
   ``official`` mode reproduces the official script, which adds each step's shift twice;
4. **Measure**: the CLIP margin cos(img, A) − cos(img, B) of every frame along the path.

CLI::

    python -m backends.contraclip edit PHOTO --path NAME --strength S --out OUT
    python -m backends.contraclip strip PHOTO --path NAME --max-strength S --out OUT.gif
    python -m backends.contraclip train --dipole "<sentence A>" "<sentence B>" ... --out DIR
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import inversion
from .device import get_device
from .errors import CheckpointError, FaceLabError, InputError, MissingWeightsError
from .face import paste_back as paste_into_photo
from .inversion import Inversion, LRUCache, content_hash, tensor_to_pil
from .media import ImageSource, write_video
from .networks.clip import ClipEncoder, load_clip
from .networks.contraclip import (
    DEFAULT_EPS,
    RENDER_MODES,
    SupportSets,
    Traversal,
    load_support_sets,
    parse_dipoles,
    render_codes,
    traverse,
)
from .results import results_dir, seal
from .standin import standin_enabled
from .weights import get_entry, load_checkpoint

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

ProgressFn = Callable[[float, str], None]


# --------------------------------------------------------------------------- presets

@dataclass(frozen=True)
class PathPreset:
    """One path: a short label and its semantic dipole (the sentence walked toward, the one walked away from)."""

    label: str
    positive: str
    negative: str


def _expr(name: str) -> str:
    if name == "neutral":
        return "a picture of a face in neutral expression."
    return f"a picture of a person with {name} face."


_EXPRESSIONS = ("happy", "sad", "angry", "surprised", "disgusted", "fearful")
_EXPRESSION_WORDS = {
    "happy": "Joy", "sad": "Sadness", "angry": "Anger", "surprised": "Surprise", "disgusted": "Disgust",
    "fearful": "Fear", "neutral": "Calm",
}


def _expression_presets() -> tuple[PathPreset, ...]:
    """Every pair of the six basic expressions and a neutral face: 6 toward neutral, then 15 between them."""
    pairs = [(e, "neutral") for e in _EXPRESSIONS]
    pairs += [(a, b) for i, a in enumerate(_EXPRESSIONS) for b in _EXPRESSIONS[i + 1:]]
    return tuple(
        PathPreset(f"{_EXPRESSION_WORDS[a]} ↔ {_EXPRESSION_WORDS[b].lower()}", _expr(a), _expr(b)) for a, b in pairs
    )


CORPORA: dict[str, tuple[str, str, tuple[PathPreset, ...]]] = {
    # corpus: (title, registry key, paths in checkpoint order)
    "attributes": (
        "Facial attributes (9 paths)",
        "contraclip_support_sets",
        (
            PathPreset("Feminine ↔ masculine", "a picture of a female face.", "a picture of a male face."),
            PathPreset("Older ↔ younger", "a picture of an old person.", "a picture of a young person."),
            PathPreset("Smile ↔ straight face", "a picture of a smiling face.",
                       "a picture of a face in neutral expression."),
            PathPreset("Red hair ↔ black hair", "a picture of a person with red hair.",
                       "a picture of a person with black hair."),
            PathPreset("Bald ↔ full head of hair", "a picture of a bald man.", "a picture of a man with hair."),
            PathPreset("Beard ↔ clean-shaven", "a picture of a man with beard.", "a picture of a shaved man."),
            PathPreset("Make-up ↔ bare face", "a picture of a face with makeup.",
                       "a picture of a face without makeup."),
            PathPreset("Eyes shut ↔ eyes open", "a picture of a person with closed eyes.",
                       "a picture of a person with open eyes."),
            PathPreset("Tanned ↔ pale skin", "a picture of a person with tanned skin.",
                       "a picture of a person with pale skin."),
        ),
    ),
    "expressions": ("Facial expressions (21 paths)", "contraclip_support_sets_expressions", _expression_presets()),
}


TRAINED_PREFIX = "trained:"


def trained_folders() -> dict[str, Path]:
    """Experiments written by ``train`` (official layout) under the trained-paths folder, by name."""
    from .contraclip_train import trained_root

    root = trained_root()
    if not root.is_dir():
        return {}
    needed = ("latent_support_sets.pt", "semantic_dipoles.json")
    return {d.name: d for d in sorted(root.iterdir()) if all((d / "models" / f).is_file() for f in needed)}


def corpus_names() -> list[str]:
    """The built-in corpora, then every trained experiment as ``trained:<name>``."""
    return list(CORPORA) + [TRAINED_PREFIX + name for name in trained_folders()]


def presets(corpus: str) -> tuple[PathPreset, ...]:
    """The paths of a corpus (labels and sentences); for a trained one, read from its folder."""
    if _check_corpus(corpus).startswith(TRAINED_PREFIX):
        return get_paths(corpus).paths
    return CORPORA[corpus][2]


def _check_corpus(corpus: str) -> str:
    if corpus in CORPORA:
        return corpus
    if corpus.startswith(TRAINED_PREFIX) and corpus[len(TRAINED_PREFIX):] in trained_folders():
        return corpus
    raise InputError(f"Unknown corpus '{corpus}'; choose one of: {', '.join(corpus_names())}.")


# --------------------------------------------------------------------------- models

@dataclass(frozen=True)
class PathModel:
    """A corpus's support sets and the sentences of each path."""

    corpus: str
    support_sets: SupportSets
    paths: tuple[PathPreset, ...]
    standin: bool
    notes: tuple[str, ...] = ()

    def index(self, name: str | int) -> int:
        """A path by label, positive sentence or number."""
        if isinstance(name, int) or (isinstance(name, str) and name.strip().isdigit()):
            k = int(name)
            if 0 <= k < len(self.paths):
                return k
        else:
            key = name.strip().lower()
            for k, p in enumerate(self.paths):
                if key in (p.label.lower(), p.positive.lower()):
                    return k
        labels = "; ".join(p.label for p in self.paths)
        raise InputError(f"Unknown path '{name}' in the {self.corpus} corpus. Paths: {labels}.")


def _dipoles_file(path: Path | None, companion: str) -> Path | None:
    if path is None:
        return None
    candidate = path.parent / companion
    return candidate if candidate.is_file() else None


def _paths_for(corpus: str, num_paths: int, dipoles: list[tuple[str, str]] | None) -> tuple[PathPreset, ...]:
    """Labels and sentences: the checkpoint's own sentences win; our labels name them when they match."""
    builtin = CORPORA[corpus][2] if corpus in CORPORA else ()
    if dipoles is None:
        if num_paths != len(builtin):
            raise CheckpointError(
                f"The {corpus} support sets have {num_paths} paths but semantic_dipoles.json is missing and the "
                f"built-in corpus has {len(builtin)}: put the experiment's semantic_dipoles.json next to the file."
            )
        return builtin
    if len(dipoles) != num_paths:
        raise CheckpointError(
            f"semantic_dipoles.json lists {len(dipoles)} dipoles but the support sets have {num_paths} paths."
        )
    labels = {(p.positive, p.negative): p.label for p in builtin}
    return tuple(PathPreset(labels.get((a, b), f"{a.removeprefix('a picture of ').rstrip('.')} ↔ "
                                                f"{b.removeprefix('a picture of ').rstrip('.')}"), a, b)
                 for a, b in dipoles)


def _trained_paths(corpus: str, device: str) -> PathModel:
    folder = trained_folders()[corpus[len(TRAINED_PREFIX):]] / "models"
    lss = load_support_sets(folder / "latent_support_sets.pt", device=device)
    dipoles = parse_dipoles(json.loads((folder / "semantic_dipoles.json").read_text()))
    return PathModel(corpus, lss, _paths_for(corpus, lss.num_paths, dipoles), False)


@functools.lru_cache(maxsize=4)
def _cached_paths(corpus: str, standin: bool, device: str, stamp: float = 0.0) -> PathModel:
    if corpus.startswith(TRAINED_PREFIX):
        return _trained_paths(corpus, device)
    _, key, _ = CORPORA[corpus]
    entry = get_entry(key)
    loaded = load_checkpoint(key)
    lss = load_support_sets(loaded.obj, device=device)
    notes: list[str] = []
    dipoles = None
    json_path = _dipoles_file(loaded.path, entry.params.get("companion", "semantic_dipoles.json"))
    if json_path is not None:
        dipoles = parse_dipoles(json.loads(json_path.read_text()), what=str(json_path))
    elif not loaded.standin:
        notes.append("semantic_dipoles.json was not found next to the support sets: using the built-in sentences.")
    return PathModel(corpus, lss, _paths_for(corpus, lss.num_paths, dipoles), loaded.standin, tuple(notes))


def get_paths(corpus: str) -> PathModel:
    """The support sets of a corpus, loaded on first use and kept."""
    corpus = _check_corpus(corpus)
    stamp = 0.0
    if corpus.startswith(TRAINED_PREFIX):  # a retrained folder reloads
        stamp = (trained_folders()[corpus[len(TRAINED_PREFIX):]] / "models" / "latent_support_sets.pt").stat().st_mtime
    return _cached_paths(corpus, standin_enabled(), "cpu", stamp)


@functools.lru_cache(maxsize=1)
def _cached_clip(standin: bool, device: str) -> tuple[ClipEncoder, bool]:
    loaded = load_checkpoint("clip_vit_b32")
    encoder = ClipEncoder(load_clip(loaded.obj, device=device)).to(device)
    return encoder, loaded.standin


def get_clip() -> tuple[ClipEncoder, bool]:
    """CLIP ViT-B/32 for the margin plot (and whether it is a stand-in); raises MissingWeightsError."""
    return _cached_clip(standin_enabled(), str(get_device()))


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


# --------------------------------------------------------------------------- CLIP margins

@dataclass
class Margins:
    values: list[float] | None
    note: str
    standin: bool = False


def clip_margins(images: Sequence[Image.Image], preset: PathPreset) -> Margins:
    """cos(img, A) − cos(img, B) for each image, or why there is none."""
    try:
        encoder, standin = get_clip()
    except MissingWeightsError:
        return Margins(None, "CLIP weights (clip_vit_b32) are not available: no margin was computed.")
    device = encoder.mean.device
    size = encoder.image_size
    batch = torch.stack([torch.from_numpy(np.array(im.resize((size, size), Image.Resampling.BICUBIC))).permute(2, 0, 1)
                         for im in images]).float().div(255).to(device)
    with torch.no_grad():
        feats = encoder.encode_images(batch, generator_range=False)
        text = encoder.encode_texts([preset.positive, preset.negative])
    values = (feats @ text[0] - feats @ text[1]).cpu().tolist()
    note = "CLIP ViT-B/32 margin." if not standin else "Stand-in CLIP weights: the margin is NOT meaningful."
    return Margins(values, note, standin)


def margin_plot(strengths: Sequence[float], margins: Margins, preset: PathPreset) -> Image.Image:
    """A small line plot of the CLIP margin along the path, labelled when CLIP is a stand-in or missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    if margins.values is not None:
        ax.plot(list(strengths), margins.values, marker="o")
        ax.axhline(0.0, color="grey", lw=0.8)
    else:
        ax.text(0.5, 0.5, margins.note, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xlabel("strength along the path (− toward B, + toward A)")
    ax.set_ylabel("cos(img, A) − cos(img, B)")
    title = f"A: {preset.positive}\nB: {preset.negative}"
    if margins.standin:
        title = "STAND-IN CLIP WEIGHTS (not a result)\n" + title
    ax.set_title(title, fontsize=8, color="#b00000" if margins.standin or margins.values is None else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


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
         paste_back: bool = False, with_origin: bool = False) -> EditResult:
    """Walk ``strength`` (signed; steps × step size) along one path from a photo or a seed, and render it.

    ``with_origin`` also returns the start rendered at strength 0 (cached per start code).
    """
    start, model, k, eps = _prepare(photo, seed, corpus, path, eps, render_mode)
    steps = steps_for(strength, eps)
    walk = walk_for(start, model, k, eps, abs(steps))
    codes = render_codes(walk, render_mode)
    image = _render(codes[walk.index(steps): walk.index(steps) + 1])[0]
    notices = list(start.notices) + list(model.notes)
    if paste_back and start.inversion is None:
        notices.append("Paste-back needs a photo; a sampled face is shown as it is.")
    pasted = _paste(start, image) if paste_back else None
    standin = model.standin or inversion.get_models().standin
    if standin:
        notices.append(STANDIN_NOTICE)
    origin = origin_image(start) if with_origin else None
    return EditResult(image, pasted, start, model.paths[k], corpus, k, steps, eps, render_mode, standin, notices,
                      origin)


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

    def to_dict(self) -> dict[str, Any]:
        data = self.edit.to_dict()
        data.pop("steps")
        data.pop("strength")
        data.update({
            "strengths": [round(s, 6) for s in self.strengths], "frames": len(self.frames),
            "clip_margins": self.margins.values, "clip_note": self.margins.note, "clip_standin": self.margins.standin,
            "straightness_phi": self.phi,
        })
        return data


def strip(photo: ImageSource | None = None, *, seed: int | None = None, corpus: str = "attributes",
          path: str | int = 0, max_strength: float = 6.0, frames: int = DEFAULT_FRAMES, eps: float = DEFAULT_EPS,
          render_mode: str = "stored", paste_back: bool = False, margin: bool = True,
          out_dir: str | Path | None = None, progress: ProgressFn | None = None) -> StripResult:
    """K frames evenly spread over [−max, +max] along one path, a GIF/MP4 of them and their CLIP margins."""
    if not isinstance(frames, (int, np.integer)) or not 2 <= int(frames) <= 25:
        raise InputError(f"The strip needs 2 to 25 frames, not {frames!r}.")
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
    return StripResult(images, strengths, strip_image, gif, mp4, margin_plot(strengths, margins, preset), margins,
                       walk.phi, meta)


# --------------------------------------------------------------------------- CLI

def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("photo", nargs="?", help="face photo (omit and give --seed to sample a face)")
    p.add_argument("--seed", type=int, default=None, help="sample a face from this seed (psi 0.7) instead of a photo")
    p.add_argument("--corpus", default="attributes", help="attributes, expressions or trained:<name>")
    p.add_argument("--path", required=True, help="path label, its first sentence, or its number")
    p.add_argument("--eps", type=float, default=DEFAULT_EPS, help="step size along the path")
    p.add_argument("--render", default="stored", choices=RENDER_MODES,
                   help="stored codes (default) or the official double-shift rendering")
    p.add_argument("--paste-back", action="store_true", help="blend the result back into the photo")
    p.add_argument("--stand-in-weights", action="store_true",
                   help="deterministic random weights instead of checkpoints (outputs are not results)")
    p.add_argument("--out", required=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.contraclip", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_edit = sub.add_parser("edit", help="one edit along a path")
    _add_common(p_edit)
    p_edit.add_argument("--strength", type=float, required=True, help="signed distance along the path")
    p_strip = sub.add_parser("strip", help="frames across a path, as a strip PNG, a GIF or an MP4")
    _add_common(p_strip)
    p_strip.add_argument("--max-strength", type=float, default=6.0)
    p_strip.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    sub.add_parser("train", help="learn new paths from sentence pairs", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        from .contraclip_train import main as train_main

        return train_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.stand_in_weights:
        from .standin import enable_standin

        enable_standin(True)
    out = Path(args.out)
    opts = dict(seed=args.seed, corpus=args.corpus, path=args.path, eps=args.eps, render_mode=args.render,
                paste_back=args.paste_back)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if args.command == "edit":
            res = edit(args.photo, strength=args.strength, **opts)
            res.final.save(out if out.suffix else out.with_suffix(".png"))
            info = res.to_dict()
        else:
            res = strip(args.photo, max_strength=args.max_strength, frames=args.frames, **opts)
            suffix = out.suffix.lower()
            if suffix == ".gif":
                out.write_bytes(res.gif.read_bytes())
            elif suffix == ".mp4":
                out.write_bytes(res.mp4.read_bytes())
            else:
                res.strip.save(out if suffix else out.with_suffix(".png"))
            info = res.to_dict()
    except FaceLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=1))
    if info.get("standin"):
        print("note: stand-in weights were used; this is not a result", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "CORPORA",
    "EditResult",
    "PathModel",
    "PathPreset",
    "Start",
    "StripResult",
    "clear_caches",
    "clip_margins",
    "edit",
    "get_paths",
    "presets",
    "start_from_photo",
    "start_from_seed",
    "steps_for",
    "strip",
]
