"""Learning the closed-form subspaces, projecting a text, and the diagnostics the tab shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..device import gpu_task
from ..errors import InputError
from ..networks.pos_subspaces import (
    CATEGORY_NAMES,
    GEOMETRIES,
    Prepared,
    Subspaces,
    normalise,
    prepare,
)
from ..networks.text_to_image import (
    ClipBpeTokenizer,
)
from .encoders import Progress, WordEncoder, _no_progress, encode_cached, joint_encoder
from .vocabulary import (
    PRESET_THEMES,
    THEME,
    Theme,
    category_words,
    default_max_words,
    unknown_words,
    words_hash,
)

DEFAULT_LAM = 0.5
DEFAULT_K = 8
MAX_K = 64
MAX_PROMPT_TOKENS = 75  # CLIP reads 77 tokens: start, 75 of the text, end
NEAREST = 8
STANDIN_NOTICE = "Stand-in weights were used: the images, energies and nearest words are not results."
ADAPTATION_NOTE = (
    "Adaptation: the theme subspace is learned on the text-to-image model's own text-encoder states "
    "(one state per vocabulary word, at its end token) and removed from every token state of the prompt. "
    "The paper projects the pooled CLIP embedding that conditions another text-to-image model."
)


# --------------------------------------------------------------------------- learning

@dataclass
class Learned:
    """A decomposition and what it was learned from."""

    subspaces: Subspaces
    words: dict[str, list[str]]
    encodings: dict[str, torch.Tensor]
    notices: list[str]
    standin: bool


_PREPARED: dict[tuple, tuple[Prepared, dict[str, torch.Tensor]]] = {}  # λ-free part + encodings
_LEARNED: dict[tuple, Learned] = {}
_CACHE_SIZE = 8


def _remember(cache: dict, key: tuple, value: Any) -> Any:
    if len(cache) >= _CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = value
    return value


def learn(encoder: WordEncoder, theme: Theme | None = None, lam: float = DEFAULT_LAM, geometry: str = "tangent",
          max_words: int | None = None, progress: Progress = _no_progress) -> Learned:
    """The PoS (and theme) subspaces of ``encoder``'s space.

    Encodings are cached on disk; the λ-free part of the decomposition (means, covariances) in memory per
    word lists and geometry, so another λ costs only the eigen-decompositions.
    """
    if not 0.0 <= lam <= 1.0:
        raise InputError(f"λ must be between 0 and 1, got {lam}.")
    if geometry not in GEOMETRIES:
        raise InputError(f"Unknown geometry '{geometry}'. Choose one of: {', '.join(GEOMETRIES)}.")
    words, notices = category_words(theme, max_words)
    base_key = (encoder.identity, tuple((c, words_hash(ws)) for c, ws in words.items()), geometry)
    key = (*base_key, float(lam))
    if key in _LEARNED:
        return _LEARNED[key]
    if base_key not in _PREPARED:
        encodings = {}
        for i, (c, ws) in enumerate(words.items()):
            name = CATEGORY_NAMES.get(c, "theme words")

            def step(fraction: float, message: str, i: int = i) -> None:
                progress((i + fraction) / len(words), message)

            encodings[c] = encode_cached(encoder, ws, step, what=f"{name} ({len(ws)})")
        progress(1.0, "Decomposing")
        _remember(_PREPARED, base_key, (prepare(encodings, tuple(words), geometry), encodings))
    prepared, encodings = _PREPARED[base_key]
    learned = Learned(prepared.solve(lam), words, encodings, notices, encoder.standin)
    return _remember(_LEARNED, key, learned)


def clear_learned() -> None:
    """Forget every decomposition held in memory (the disk cache of encodings stays)."""
    _PREPARED.clear()
    _LEARNED.clear()


def _check_k(k: int, learned: Learned) -> int:
    k = int(k)
    limit = min(MAX_K, learned.subspaces.dim)
    if not 1 <= k <= limit:
        raise InputError(f"k (the subspace dimension) must be between 1 and {limit}, got {k}.")
    return k


def check_prompt(prompt: str | None, tokenizer: ClipBpeTokenizer, what: str = "prompt") -> tuple[str, list[str]]:
    """The cleaned text and notices; an empty text is an error, an over-long one is truncated (said)."""
    text = " ".join((prompt or "").split())
    if not text:
        raise InputError(f"Please enter a {what}: it is empty.")
    _, lengths = tokenizer([text])
    tokens = lengths[0] - 2
    notices = []
    if tokens > MAX_PROMPT_TOKENS:
        kept = tokenizer.decode_kept(text, MAX_PROMPT_TOKENS)
        notices.append(f"The {what} is {tokens} tokens long; CLIP reads only the first {MAX_PROMPT_TOKENS}, "
                       f"so it was truncated after: '…{kept[-40:]}'.")
    return text, notices


# --------------------------------------------------------------------------- diagnostics

@dataclass
class Diagnostics:
    """Where a text lives in the joint space, and what a theme's removal changes."""

    text: str
    theme: str
    k: int
    lam: float
    geometry: str
    categories: list[str]
    energy_before: dict[str, float]
    energy_after: dict[str, float]
    nearest_before: list[tuple[str, str, float]]
    nearest_after: list[tuple[str, str, float]]
    words_per_category: dict[str, int]
    notices: list[str]
    standin: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text, "theme": self.theme, "k": self.k, "lam": self.lam, "geometry": self.geometry,
            "categories": self.categories, "energy_before": self.energy_before, "energy_after": self.energy_after,
            "nearest_before": [{"word": w, "category": c, "cosine": s} for w, c, s in self.nearest_before],
            "nearest_after": [{"word": w, "category": c, "cosine": s} for w, c, s in self.nearest_after],
            "words_per_category": self.words_per_category, "notices": self.notices, "standin": self.standin,
        }


def category_label(c: str) -> str:
    return CATEGORY_NAMES.get(c, "theme")


def nearest_words(query: torch.Tensor, learned: Learned, top: int = NEAREST) -> list[tuple[str, str, float]]:
    """The vocabulary words (any category) with the highest cosine to ``query`` (d,)."""
    names, cats, rows = [], [], []
    for c, ws in learned.words.items():
        names += ws
        cats += [category_label(c)] * len(ws)
        rows.append(learned.encodings[c])
    sims = normalise(torch.cat(rows)) @ normalise(query.reshape(1, -1).float())[0]
    best = torch.topk(sims, min(top, len(names)))
    return [(names[i], cats[i], round(float(v), 4)) for v, i in zip(best.values, best.indices, strict=True)]


@gpu_task(duration=120)
def _learn_and_encode(encoder: WordEncoder, text: str, theme: Theme, lam: float, k: int, geometry: str,
                      cap: int | None, progress: Progress) -> tuple[Learned, int, torch.Tensor, torch.Tensor]:
    """The GPU part of an analysis: the subspaces (vocabulary encoded the first time) and the text's embedding."""
    learned = learn(encoder, theme, lam, geometry, cap, progress)
    k = _check_k(k, learned)
    z = encoder.encode([text])[0]
    return learned, k, z, learned.subspaces.remove(z, THEME, k)[0]


def diagnose(text: str, theme: Theme, lam: float = DEFAULT_LAM, k: int = DEFAULT_K, geometry: str = "tangent",
             max_words: int | None = -1, progress: Progress = _no_progress,
             encoder: WordEncoder | None = None) -> Diagnostics:
    """Energy of ``text`` in each subspace and its nearest words, before and after removing ``theme``.

    ``encoder`` defaults to the CLIP ViT-B/32 joint space (tests pass a tiny one).
    """
    encoder = encoder or joint_encoder()
    text, notices = check_prompt(text, encoder.tokenizer, what="text")
    cap = default_max_words("joint") if max_words == -1 else max_words
    learned, k, z, removed = _learn_and_encode(encoder, text, theme, lam, k, geometry, cap, progress)
    before = learned.subspaces.energy(z, k)
    after = learned.subspaces.energy(removed, k)
    unknown = unknown_words(theme.words, encoder.tokenizer) if theme.name not in PRESET_THEMES else []
    if unknown:
        notices.append(f"{len(unknown)} theme entr{'y is' if len(unknown) == 1 else 'ies are'} not in the "
                       "vocabulary and CLIP reads them as sub-word pieces: " + ", ".join(unknown[:6])
                       + ("..." if len(unknown) > 6 else "") + ".")
    all_notices = ([STANDIN_NOTICE] if encoder.standin else []) + theme.notices + learned.notices + notices
    return Diagnostics(
        text=text, theme=theme.name, k=k, lam=float(lam), geometry=geometry,
        categories=[category_label(c) for c in learned.subspaces.categories],
        energy_before={category_label(c): round(float(v[0]), 5) for c, v in before.items()},
        energy_after={category_label(c): round(float(v[0]), 5) for c, v in after.items()},
        nearest_before=nearest_words(z, learned), nearest_after=nearest_words(removed, learned),
        words_per_category={category_label(c): len(ws) for c, ws in learned.words.items()},
        notices=all_notices, standin=encoder.standin,
    )
