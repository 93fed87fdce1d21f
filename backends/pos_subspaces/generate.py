"""Text-to-image with the theme removed from the conditioning, beside the plain image."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..device import gpu_task
from ..errors import InputError
from ..networks.pos_subspaces import (
    remove_from_token_states,
)
from .encoders import Progress, _no_progress
from .subspaces import (
    ADAPTATION_NOTE,
    DEFAULT_K,
    DEFAULT_LAM,
    STANDIN_NOTICE,
    Learned,
    _check_k,
    category_label,
    check_prompt,
    learn,
)
from .text_to_image import T2IModel, t2i_model
from .vocabulary import THEME, Theme, default_max_words

MAX_STEPS = 50


# --------------------------------------------------------------------------- generation

@dataclass
class Generation:
    """Original and theme-removed images from the same seed."""

    original: Image.Image
    removed: Image.Image
    prompt: str
    theme: str
    seed: int
    steps: int
    k: int
    lam: float
    geometry: str
    model_id: str
    decoder: str
    size: int
    seconds: float
    conditioning_change: float
    words_per_category: dict[str, int]
    notices: list[str]
    standin: bool
    run_card: dict[str, Any] = field(default_factory=dict)  # backends.runcard: what re-runs this pair

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt, "theme": self.theme, "seed": self.seed, "steps": self.steps, "k": self.k,
            "lam": self.lam, "geometry": self.geometry, "model_id": self.model_id, "decoder": self.decoder,
            "size": self.size,
            "seconds": round(self.seconds, 2), "conditioning_change": round(self.conditioning_change, 5),
            "words_per_category": self.words_per_category, "notices": self.notices, "standin": self.standin,
            "adaptation": ADAPTATION_NOTE,
            **({"run_card": self.run_card} if self.run_card else {}),
        }


def resolve_seed(seed: int | float | None) -> int:
    """The seed to use: the given one, or a fresh random one for ``None`` / negative values."""
    if seed is None or (isinstance(seed, float) and np.isnan(seed)) or int(seed) < 0:
        return random.SystemRandom().randrange(2**31)
    seed = int(seed)
    if seed >= 2**63:
        raise InputError("The seed must be below 2^63.")
    return seed


def _run_pipeline(model: T2IModel, conditioning: torch.Tensor, negative: torch.Tensor | None, seed: int,
                  steps: int, progress: Progress) -> list[Image.Image]:
    """Both images in one batch, each from its own generator with the same seed (same starting noise)."""
    device = model.pipe.device
    generators = [torch.Generator(device).manual_seed(seed) for _ in range(conditioning.shape[0])]

    def on_step(pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
        progress((i + 1) / steps, f"Denoising step {i + 1}/{steps}")
        return kwargs

    kwargs: dict[str, Any] = {}
    if negative is not None:
        kwargs["negative_prompt_embeds"] = negative
    with torch.no_grad():
        out = model.pipe(prompt_embeds=conditioning, num_inference_steps=steps, guidance_scale=model.guidance_scale,
                         generator=generators, height=model.size, width=model.size, output_type="pil",
                         callback_on_step_end=on_step, **kwargs)
    return list(out.images)


def conditioning_pair(model: T2IModel, prompt: str, learned: Learned, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt's token states and the same states with the theme removed: (2, 77, width)."""
    states = model.encoder.prompt_states(prompt)
    removed = remove_from_token_states(states, learned.subspaces, THEME, k)
    return states, removed


@gpu_task(duration=120)
def _learn_and_draw(model: T2IModel, prompt: str, theme: Theme, lam: float, k: int, geometry: str,
                    cap: int | None, seed: int, steps: int, progress: Progress
                    ) -> tuple[Learned, int, float, list[Image.Image]]:
    """The GPU part of a request: encode the vocabulary (first time only), remove the theme, draw both images."""

    def learn_progress(fraction: float, message: str) -> None:
        progress(0.6 * fraction, message)

    learned = learn(model.encoder, theme, lam, geometry, cap, learn_progress)
    k = _check_k(k, learned)
    states, removed = conditioning_pair(model, prompt, learned, k)
    change = float((removed - states).norm() / states.norm())
    negative = None
    if model.guidance_scale > 1.0:
        negative = model.encoder.prompt_states("").expand(2, -1, -1)

    def denoise_progress(fraction: float, message: str) -> None:
        progress(0.6 + 0.4 * fraction, message)

    images = _run_pipeline(model, torch.cat([states, removed]), negative, seed, steps, denoise_progress)
    return learned, k, change, images


def generate(prompt: str, theme: Theme, lam: float = DEFAULT_LAM, k: int = DEFAULT_K, geometry: str = "tangent",
             seed: int | None = 0, steps: int | None = None, model_id: str | None = None,
             max_words: int | None = -1, progress: Progress = _no_progress) -> Generation:
    """Generate ``prompt`` twice from the same seed: as written, and with the theme subspace removed."""
    start = time.perf_counter()
    progress(0.0, "Loading the text-to-image model")
    model = t2i_model(model_id)
    prompt, notices = check_prompt(prompt, model.encoder.tokenizer)
    steps = model.default_steps if steps is None else int(steps)
    if not 1 <= steps <= MAX_STEPS:
        raise InputError(f"Steps must be between 1 and {MAX_STEPS}, got {steps}.")
    seed = resolve_seed(seed)
    cap = default_max_words("t2i") if max_words == -1 else max_words

    learned, k, change, images = _learn_and_draw(model, prompt, theme, lam, k, geometry, cap, seed, steps, progress)
    all_notices = ([STANDIN_NOTICE] if model.standin else []) + model.notices + theme.notices + learned.notices
    result = Generation(
        original=images[0], removed=images[1], prompt=prompt, theme=theme.name, seed=seed, steps=steps, k=k,
        lam=float(lam), geometry=geometry, model_id=model.model_id, decoder=model.decoder, size=model.size,
        seconds=time.perf_counter() - start, conditioning_change=change,
        words_per_category={category_label(c): len(ws) for c, ws in learned.words.items()},
        notices=all_notices + notices, standin=model.standin,
    )
    result.run_card = generation_card(result, theme, cap)
    return result


def generation_card(result: Generation, theme: Theme, max_words: int | None) -> dict[str, Any]:
    """The run card of a generated pair (:mod:`backends.runcard`); :func:`replay_generate` re-runs it."""
    from .. import runcard
    from ..networks.text_to_image import SD_TURBO_ID

    weights = ["sd_turbo"] if result.model_id == SD_TURBO_ID else []
    weights += ["taesd"] if result.decoder == "taesd" else []
    return runcard.make_card(
        method="pos_subspaces_generate", engine=result.model_id,
        replay="backends.pos_subspaces.generate:replay_generate",
        inputs={},
        settings={"prompt": result.prompt, "theme": theme.name, "theme_words": list(theme.words), "lam": result.lam,
                  "k": result.k, "geometry": result.geometry, "seed": result.seed, "steps": result.steps,
                  "model_id": result.model_id, "max_words": max_words},
        seeds={"seed": result.seed, "note": "both images start from this seed's noise"},
        weights=weights, standin=result.standin,
        timings={"seconds": result.seconds}, outputs={"original": result.original, "removed": result.removed},
        output_attr={"original": "original", "removed": "removed"},
    )


def replay_generate(*, theme: str, theme_words: list[str], **settings: Any) -> Generation:
    """A card's replay: the same prompt, theme words, seed and settings through :func:`generate`."""
    return generate(theme=Theme(theme, tuple(theme_words)), **settings)


# --------------------------------------------------------------------------- reviewer view: theme presence

MAX_THEME_WORDS = 200  # CLIP text encodings per request (each is cached by the encoder)


def theme_presence(generation: Generation, theme: Theme, top: int = 5) -> dict[str, Any]:
    """CLIP ViT-B/32 similarity of both images to the theme's words (:func:`backends.metrics.clip_similarity`):
    is the theme less present after removal? Computed after the images are shown.

    The CLIP model is the one the tab's diagnostics already hold (:func:`.encoders.joint_encoder`) when it
    runs in float32; otherwise the shared metrics copy. At most ``MAX_THEME_WORDS`` words, evenly spread.
    """
    from .. import metrics
    from .encoders import joint_encoder
    from .vocabulary import evenly_spaced

    start = time.perf_counter()
    joint = joint_encoder()
    if next(joint.clip.parameters()).dtype == torch.float32:
        encoder, standin = _shared_encoder(joint.clip), joint.standin
    else:
        encoder, standin = metrics.clip()
    words = evenly_spaced(list(theme.words), MAX_THEME_WORDS)
    before = metrics.clip_similarity(generation.original, words, encoder=encoder)
    after = metrics.clip_similarity(generation.removed, words, encoder=encoder)
    standin = standin or generation.standin
    values = {"theme_similarity_as_written": float(np.mean(list(before.values()))),
              "theme_similarity_removed": float(np.mean(list(after.values())))}
    strongest = sorted(words, key=lambda w: -before[w])[:top]
    return {
        "result": metrics.present(values, standin=standin),
        "change": round(values["theme_similarity_removed"] - values["theme_similarity_as_written"], 4),
        "strongest_theme_words": [{"word": w, "as_written": round(before[w], 4), "removed": round(after[w], 4)}
                                  for w in strongest],
        "words_compared": len(words),
        "about": metrics.about(list(values)),
        "seconds": round(time.perf_counter() - start, 2),
    }


_ENCODERS: dict[int, Any] = {}


def _shared_encoder(clip: torch.nn.Module) -> Any:
    """One image/text wrapper per CLIP model (it caches text encodings), on the model's device."""
    from ..networks.clip import ClipEncoder

    if id(clip) not in _ENCODERS:
        device = next(clip.parameters()).device
        _ENCODERS.clear()  # a new model (stand-in switched, device changed) replaces the old wrapper
        _ENCODERS[id(clip)] = (ClipEncoder(clip).to(device), clip)
    return _ENCODERS[id(clip)][0]
