"""The WordNet vocabulary per part of speech and the themes (presets or a user's list)."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..device import get_device
from ..errors import InputError, MissingWeightsError
from ..networks.pos_subspaces import (
    OFFICIAL_CATEGORIES,
)
from ..networks.text_to_image import (
    ClipBpeTokenizer,
)

ASSETS = Path(__file__).resolve().parents[2] / "assets"
VOCAB_DIR = ASSETS / "pos_vocab"
THEMES_DIR = ASSETS / "pos_themes"
VOCAB_FILES = {"N": "nouns.txt", "A": "adjectives.txt", "V": "verbs.txt", "AV": "adverbs.txt"}
PRESET_THEMES = {"artists": "artists.txt"}
THEME = "theme"  # the category key of the theme

MAX_WORDS_ENV = "FACELAB_POS_MAX_WORDS"
T2I_MAX_WORDS_ENV = "FACELAB_POS_T2I_MAX_WORDS"
CPU_MAX_WORDS = {"joint": 500, "t2i": 100}  # per category (first request ≈ a minute on 2 cores); all on a GPU
MIN_THEME_WORDS = 2
MAX_THEME_WORDS = 300


# --------------------------------------------------------------------------- vocabulary and themes

@functools.cache
def vocabulary() -> dict[str, tuple[str, ...]]:
    """The shipped single-PoS WordNet lists, sorted, per category (N, A, V, AV)."""
    out = {}
    for c, name in VOCAB_FILES.items():
        path = VOCAB_DIR / name
        if not path.is_file():
            raise MissingWeightsError(f"The vocabulary file {path} is missing; run tools/make_pos_vocab.py.")
        out[c] = tuple(w for w in path.read_text(encoding="utf-8").splitlines() if w)
    return out


def evenly_spaced(words: Sequence[str], cap: int | None) -> list[str]:
    """At most ``cap`` words spread evenly over the sorted list (first word kept: it seeds the mean)."""
    if cap is None or cap >= len(words):
        return list(words)
    idx = np.unique(np.linspace(0, len(words) - 1, cap).round().astype(int))
    return [words[i] for i in idx]


def default_max_words(space: str, device: torch.device | None = None) -> int | None:
    """Words per category to encode: the env override, else everything on a GPU, a subset on a CPU."""
    env = os.environ.get(T2I_MAX_WORDS_ENV if space == "t2i" else MAX_WORDS_ENV, "").strip().lower()
    if env:
        return None if env in {"all", "0", "none"} else int(env)
    device = device or get_device()
    return None if device.type == "cuda" else CPU_MAX_WORDS[space]


def preset_words(name: str) -> list[str]:
    """The word list of a preset theme."""
    if name not in PRESET_THEMES:
        raise InputError(f"Unknown theme preset '{name}'. Choose one of: {', '.join(PRESET_THEMES)}, "
                         "or paste your own list.")
    text = (THEMES_DIR / PRESET_THEMES[name]).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@dataclass
class Theme:
    """A theme: its name, its words (cleaned, unique, in the given order) and notices about the list."""

    name: str
    words: tuple[str, ...]
    notices: list[str] = field(default_factory=list)


def parse_theme(preset: str | None = "artists", custom: str | None = None) -> Theme:
    """The theme to learn: ``custom`` (commas or new lines between entries) when given, else ``preset``."""
    if custom is not None and custom.strip():
        raw, name = re.split(r"[,\n;]+", custom), "your list"
    elif preset in (None, "", "custom"):
        raise InputError("The theme list is empty. Paste at least 2 words or names, separated by commas or "
                         "one per line, or choose a preset theme.")
    else:
        raw, name = preset_words(preset), preset
    words, seen, notices = [], set(), []
    for entry in raw:
        word = " ".join(entry.split())
        if not word:
            continue
        if word.lower() in seen:
            continue
        seen.add(word.lower())
        words.append(word)
    not_words = [w for w in words if not re.search(r"[^\W_]", w)]
    if not_words:
        raise InputError("These theme entries hold no letters or digits, so they are not words: "
                         + ", ".join(repr(w) for w in not_words[:5]) + ".")
    too_long = [w for w in words if len(w) > 200]
    if too_long:
        raise InputError(f"Theme entries must be words or short names; '{too_long[0][:40]}...' is too long.")
    if len(words) == 0:
        raise InputError("The theme list is empty. Paste at least 2 words or names, separated by commas or "
                         "one per line.")
    if len(words) < MIN_THEME_WORDS:
        raise InputError(f"A theme needs at least {MIN_THEME_WORDS} different words to have a subspace; "
                         f"the list holds only '{words[0]}'. Add related words or names.")
    if len(words) > MAX_THEME_WORDS:
        notices.append(f"The theme list has {len(words)} entries; the first {MAX_THEME_WORDS} were used.")
        words = words[:MAX_THEME_WORDS]
    return Theme(name, tuple(words), notices)


@functools.cache
def _known_words() -> frozenset[str]:
    return frozenset(w.lower() for ws in vocabulary().values() for w in ws)


def unknown_words(words: Sequence[str], tokenizer: ClipBpeTokenizer) -> list[str]:
    """Entries neither in the WordNet vocabulary nor a single CLIP token: CLIP reads them as sub-word pieces."""
    known = _known_words()
    out = []
    for w in words:
        if w.lower() in known:
            continue
        if all(len(tokenizer.pieces(part)) == 1 for part in w.split()):
            continue
        out.append(w)
    return out


def category_words(theme: Theme | None, max_words: int | None) -> tuple[dict[str, list[str]], list[str]]:
    """The word list of every category (PoS lists capped, theme words taken out of them) and notices."""
    vocab = vocabulary()
    out = {c: evenly_spaced(vocab[c], max_words) for c in OFFICIAL_CATEGORIES}
    notices = []
    if theme is not None:
        theme_set = {w.lower() for w in theme.words}
        overlap = sorted({w for c in out for w in out[c] if w.lower() in theme_set})
        if overlap:
            notices.append(f"{len(overlap)} theme word(s) also in the PoS lists were kept in the theme only: "
                           + ", ".join(overlap[:5]) + ("..." if len(overlap) > 5 else "") + ".")
        out = {c: [w for w in ws if w.lower() not in theme_set] for c, ws in out.items()}
        out[THEME] = list(theme.words)
    return out, notices


def words_hash(words: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()[:16]
