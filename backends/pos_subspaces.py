"""The PoS-subspaces tab's backend (Oldfield et al., NeurIPS 2023): learn part-of-speech and theme
subspaces of CLIP, measure where a text's embedding lives, and remove a visual theme from text-to-image.

Two embedding spaces, each with its own decomposition (same closed-form model, see
:mod:`backends.networks.pos_subspaces`):

* the **joint space** of CLIP ViT-B/32 (open_clip text tower, the one the other CLIP tabs use): the
  paper's setting. Diagnostics run here: the share of a text's energy in each PoS subspace, and the
  nearest vocabulary words before and after a theme is removed.
* the **conditioning space** of the text-to-image model (default ``stabilityai/sd-turbo``): the text
  encoder's token states the UNet attends to. Each vocabulary word is encoded as the state at its end
  token; the theme subspace learned there is removed from every token state of the prompt (start token
  kept), each state keeping its norm. *This is our adaptation*: the paper's own experiments project the
  pooled CLIP embedding that conditions a different text-to-image model.

Vocabulary: WordNet 3.0 lemmas that occur in one part of speech only, sorted (assets/pos_vocab, made by
tools/make_pos_vocab.py). A theme is one more category made of a word list (a preset in assets/pos_themes,
or the user's own list); its words are taken out of the PoS lists before learning. Encodings are cached
on disk, keyed by the encoder and a hash of the word list. On a CPU only an evenly spaced subset of each
list is encoded by default (see :func:`default_max_words`); results say how many words were used.

CLI::

    python -m backends.pos_subspaces learn [--space joint|t2i] [--geometry tangent|euclidean] [--lam 0.5]
    python -m backends.pos_subspaces remove "a text" [--theme artists | --theme-file FILE] [--k 8]
    python -m backends.pos_subspaces generate "a prompt" [--theme artists] [--seed 0] [--steps 1] [--out DIR]

Add ``--stand-in`` to run on stand-in weights (outputs are not results).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .device import get_device, get_dtype, gpu_task
from .errors import CheckpointError, InputError, MissingWeightsError
from .networks.clip import clip_text_embeddings
from .networks.pos_subspaces import (
    CATEGORY_NAMES,
    GEOMETRIES,
    OFFICIAL_CATEGORIES,
    Prepared,
    Subspaces,
    normalise,
    prepare,
    remove_from_token_states,
)
from .networks.text_to_image import (
    SD_TURBO,
    SD_TURBO_ID,
    TINY,
    TINY_ID,
    ClipBpeTokenizer,
    end_token_states,
    load_pretrained_pipeline,
    load_tiny_autoencoder,
    pipeline_from_components,
    tiny_pipeline,
    token_states,
    use_tiny_decoder,
)
from .standin import standin_enabled

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VOCAB_DIR = ASSETS / "pos_vocab"
THEMES_DIR = ASSETS / "pos_themes"
VOCAB_FILES = {"N": "nouns.txt", "A": "adjectives.txt", "V": "verbs.txt", "AV": "adverbs.txt"}
PRESET_THEMES = {"artists": "artists.txt"}
THEME = "theme"  # the category key of the theme
SPACES = ("joint", "t2i")

MAX_WORDS_ENV = "FACELAB_POS_MAX_WORDS"
T2I_MAX_WORDS_ENV = "FACELAB_POS_T2I_MAX_WORDS"
T2I_MODEL_ENV = "FACELAB_POS_T2I_MODEL"
DECODER_ENV = "FACELAB_POS_DECODER"  # auto (TAESD on a CPU, the full VAE on a GPU), taesd or vae
CPU_MAX_WORDS = {"joint": 500, "t2i": 100}  # per category (first request ≈ a minute on 2 cores); all on a GPU
ENCODE_BATCH = 256

DEFAULT_LAM = 0.5
DEFAULT_K = 8
MAX_K = 64
MIN_THEME_WORDS = 2
MAX_THEME_WORDS = 300
MAX_PROMPT_TOKENS = 75  # CLIP reads 77 tokens: start, 75 of the text, end
MAX_STEPS = 50
NEAREST = 8
STANDIN_NOTICE = "Stand-in weights were used: the images, energies and nearest words are not results."
ADAPTATION_NOTE = (
    "Adaptation: the theme subspace is learned on the text-to-image model's own text-encoder states "
    "(one state per vocabulary word, at its end token) and removed from every token state of the prompt. "
    "The paper projects the pooled CLIP embedding that conditions another text-to-image model."
)

Progress = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    return None


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


# --------------------------------------------------------------------------- encoders

class WordEncoder:
    """Maps texts to vectors of one space; ``identity`` names the weights (for the disk cache)."""

    space: str = ""
    identity: str = ""
    standin: bool = False
    tokenizer: ClipBpeTokenizer

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, texts: Sequence[str], progress: Progress = _no_progress, what: str = "words",
               batch_size: int = ENCODE_BATCH) -> torch.Tensor:
        """(N, d) float32 CPU vectors, batched; texts of equal token length are batched together."""
        texts = list(texts)
        lengths = self.tokenizer(texts)[1] if texts else []
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        parts: list[torch.Tensor] = []
        for start in range(0, len(order), batch_size):
            chunk = [texts[i] for i in order[start:start + batch_size]]
            parts.append(self.encode_batch(chunk).float().cpu())
            progress(min(1.0, (start + len(chunk)) / max(1, len(order))), f"Encoding {what}")
        if not parts:
            return torch.zeros(0, 0)
        out = torch.empty(len(texts), parts[0].shape[1])
        out[torch.tensor(order)] = torch.cat(parts)
        return out


class JointSpaceEncoder(WordEncoder):
    """CLIP ViT-B/32 text embeddings in the joint image-text space (open_clip, OpenAI weights)."""

    space = "joint"

    def __init__(self, clip: torch.nn.Module, standin: bool):
        self.clip, self.standin = clip, standin
        self.identity = "clip_vit_b32" + ("-standin" if standin else "")
        self.tokenizer = ClipBpeTokenizer()

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        ids, _ = self.tokenizer(texts)
        return clip_text_embeddings(self.clip, ids)


class ConditioningEncoder(WordEncoder):
    """The text-to-image model's text encoder: end-token states of words, all token states of prompts."""

    space = "t2i"

    def __init__(self, pipe: Any, tokenizer: ClipBpeTokenizer, identity: str, standin: bool):
        self.pipe, self.tokenizer, self.identity, self.standin = pipe, tokenizer, identity, standin

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        ids, _ = self.tokenizer(texts)
        return end_token_states(self.pipe.text_encoder, ids)

    @torch.no_grad()
    def prompt_states(self, prompt: str) -> torch.Tensor:
        ids, _ = self.tokenizer([prompt])
        return token_states(self.pipe.text_encoder, ids)


def _cache_root() -> Path:
    from .weights import cache_dir

    return cache_dir() / "pos_subspaces"


def encode_cached(encoder: WordEncoder, words: Sequence[str], progress: Progress = _no_progress,
                  what: str = "words") -> torch.Tensor:
    """Encodings of ``words``, from the disk cache (keyed by encoder and word-list hash) when present."""
    from safetensors.torch import load_file, save_file

    path = _cache_root() / f"{encoder.identity.replace('/', '--')}-{words_hash(words)}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))["encodings"]
        except Exception:  # a damaged cache file is rebuilt
            path.unlink(missing_ok=True)
    out = encoder.encode(words, progress, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    save_file({"encodings": out.contiguous()}, str(tmp), metadata={"encoder": encoder.identity, "n": str(len(words))})
    tmp.replace(path)
    return out


@functools.lru_cache(maxsize=1)
def _joint_encoder(standin: bool, device: str) -> JointSpaceEncoder:
    from .networks.clip import load_clip
    from .weights import load_checkpoint

    loaded = load_checkpoint("clip_vit_b32")
    clip = load_clip(loaded.obj, device).to(dtype=get_dtype(torch.device(device)))
    return JointSpaceEncoder(clip, loaded.standin)


def joint_encoder() -> JointSpaceEncoder:
    """The cached CLIP ViT-B/32 joint-space encoder (stand-in weights when enabled)."""
    return _joint_encoder(standin_enabled(), str(get_device()))


T2I_MODELS_ENV = "FACELAB_POS_T2I_MODELS"  # extra model ids the host lets visitors pick (comma separated)


def default_model_id() -> str:
    """The text-to-image model: ``$FACELAB_POS_T2I_MODEL``, else SD-Turbo."""
    return os.environ.get(T2I_MODEL_ENV, "").strip() or SD_TURBO_ID


def allowed_model_ids() -> list[str]:
    """The models the UI and API offer: the default, the host's extras, and the tiny wiring model when
    stand-in weights are on. Anything else would make the server download a visitor's choice."""
    ids = [default_model_id()]
    ids += [m.strip() for m in os.environ.get(T2I_MODELS_ENV, "").split(",") if m.strip()]
    if standin_enabled():
        ids.append(TINY_ID)
    return list(dict.fromkeys(ids))


def check_model_id(model_id: str | None) -> str:
    """``model_id`` if this server offers it (empty: the default), else an InputError."""
    model_id = (model_id or "").strip() or default_model_id()
    allowed = allowed_model_ids()
    if model_id not in allowed:
        raise InputError(f"The text-to-image model '{model_id}' is not offered here. Choose one of: "
                         f"{', '.join(allowed)}.")
    return model_id


@dataclass
class T2IModel:
    """A loaded text-to-image pipeline and how to run it."""

    model_id: str
    pipe: Any
    encoder: ConditioningEncoder
    size: int
    default_steps: int
    guidance_scale: float
    standin: bool
    notices: list[str] = field(default_factory=list)
    decoder: str = "vae"


def decoder_choice(device: torch.device | None = None) -> str:
    """``taesd`` or ``vae``: ``$FACELAB_POS_DECODER``, else TAESD on a CPU (the full VAE decoder is most of a
    CPU request) and the full VAE on a GPU."""
    choice = os.environ.get(DECODER_ENV, "auto").strip().lower() or "auto"
    if choice not in {"auto", "taesd", "vae"}:
        raise InputError(f"{DECODER_ENV} must be auto, taesd or vae, not '{choice}'.")
    if choice == "auto":
        return "vae" if (device or get_device()).type == "cuda" else "taesd"
    return choice


def _with_decoder(model: T2IModel, decoder: str, device: torch.device) -> T2IModel:
    """Swap in TAESD when asked; without its weights keep the full VAE and say so."""
    if decoder != "taesd":
        return model
    from .weights import load_checkpoint

    try:
        loaded = load_checkpoint("taesd")
    except (MissingWeightsError, CheckpointError) as exc:
        model.notices.append(f"The fast TAESD decoder is not available ({str(exc).split('.')[0]}); the full VAE "
                             "decoder was used, which is slower on a CPU.")
        return model
    use_tiny_decoder(model.pipe, load_tiny_autoencoder(loaded.obj, device, get_dtype(device)))
    model.decoder = "taesd"
    return model


def _load_real_pipeline(model_id: str, device: torch.device) -> Any:
    from .weights import find_local, get_entry, missing_message, offline

    entry = get_entry("sd_turbo")
    source: str = model_id
    if model_id == SD_TURBO_ID:
        local = find_local("sd_turbo")
        if local is not None:
            source = str(local.parent)
    try:
        return load_pretrained_pipeline(source, device, get_dtype(device))
    except (OSError, ValueError) as exc:
        if source != model_id:  # the folder is there but does not load: say why, it is not "missing"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"The text-to-image folder {source} could not be loaded: {first}") from None
        reason = "Downloads are off (HF_HUB_OFFLINE=1)." if offline() else f"Loading failed: {exc}"
        if model_id == SD_TURBO_ID:
            raise MissingWeightsError(missing_message(entry, reason), key=entry.key, filename=entry.filename) from None
        raise MissingWeightsError(f"The text-to-image model '{model_id}' could not be loaded. {reason}") from None


@functools.lru_cache(maxsize=1)
def _t2i_model(model_id: str, standin: bool, device: str, decoder: str = "vae") -> T2IModel:
    dev = torch.device(device)
    return _with_decoder(_build_t2i_model(model_id, standin, dev), decoder, dev)


def _build_t2i_model(model_id: str, standin: bool, dev: torch.device) -> T2IModel:
    from .weights import load_checkpoint

    if model_id == TINY_ID:
        pipe = tiny_pipeline(device=dev)
        encoder = ConditioningEncoder(pipe, ClipBpeTokenizer(), "t2i-tiny", True)
        return T2IModel(model_id, pipe, encoder, TINY.size, TINY.steps, TINY.guidance_scale, True,
                        ["The tiny test pipeline was used: it checks the wiring and draws no real image."])
    if standin:
        notices = []
        if model_id != SD_TURBO_ID:
            notices.append(f"Stand-in weights: the SD-Turbo architecture was used in place of '{model_id}'.")
        loaded = load_checkpoint("sd_turbo")
        pipe = pipeline_from_components(SD_TURBO, loaded.obj, dev, get_dtype(dev))
        encoder = ConditioningEncoder(pipe, ClipBpeTokenizer(), "sd-turbo-standin", True)
        return T2IModel(SD_TURBO_ID, pipe, encoder, SD_TURBO.size, SD_TURBO.steps, SD_TURBO.guidance_scale,
                        True, notices)
    pipe = _load_real_pipeline(model_id, dev)
    if type(pipe).__name__ != "StableDiffusionPipeline":  # SDXL & co. need pooled states from two encoders
        raise CheckpointError(f"'{model_id}' loads as {type(pipe).__name__}; this tab needs a Stable Diffusion "
                              "1.x/2.x pipeline (one CLIP text encoder), such as stabilityai/sd-turbo.")
    turbo = model_id == SD_TURBO_ID or "turbo" in model_id.lower()
    size = int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
    encoder = ConditioningEncoder(pipe, ClipBpeTokenizer(pipe.tokenizer), model_id, False)
    return T2IModel(model_id, pipe, encoder, size, 1 if turbo else 25, 0.0 if turbo else 7.5, False)


def t2i_model(model_id: str | None = None) -> T2IModel:
    """The cached text-to-image model (stand-in at real size when stand-in weights are on)."""
    model_id = model_id or default_model_id()
    if model_id == TINY_ID:  # the wiring model keeps its own tiny VAE
        return _t2i_model(model_id, True, str(get_device()), "vae")
    return _t2i_model(model_id, standin_enabled(), str(get_device()), decoder_choice())


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt, "theme": self.theme, "seed": self.seed, "steps": self.steps, "k": self.k,
            "lam": self.lam, "geometry": self.geometry, "model_id": self.model_id, "decoder": self.decoder,
            "size": self.size,
            "seconds": round(self.seconds, 2), "conditioning_change": round(self.conditioning_change, 5),
            "words_per_category": self.words_per_category, "notices": self.notices, "standin": self.standin,
            "adaptation": ADAPTATION_NOTE,
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
    return Generation(
        original=images[0], removed=images[1], prompt=prompt, theme=theme.name, seed=seed, steps=steps, k=k,
        lam=float(lam), geometry=geometry, model_id=model.model_id, decoder=model.decoder, size=model.size,
        seconds=time.perf_counter() - start, conditioning_change=change,
        words_per_category={category_label(c): len(ws) for c, ws in learned.words.items()},
        notices=all_notices + notices, standin=model.standin,
    )


# --------------------------------------------------------------------------- CLI

def _theme_from_args(args: argparse.Namespace) -> Theme:
    if args.theme_file:
        return parse_theme(None, Path(args.theme_file).read_text(encoding="utf-8"))
    return parse_theme(args.theme)


def _print_progress(fraction: float, message: str) -> None:
    print(f"\r{message}: {100 * fraction:5.1f}%", end="", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.pos_subspaces", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stand-in", action="store_true", help="stand-in weights (outputs are not results)")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--theme", default="artists", help=f"preset theme: {', '.join(PRESET_THEMES)}")
    common.add_argument("--theme-file", help="your own theme list (one entry a line, or comma separated)")
    common.add_argument("--lam", type=float, default=DEFAULT_LAM)
    common.add_argument("--geometry", choices=GEOMETRIES, default="tangent")
    common.add_argument("--max-words", type=int, default=-1, help="words per category (0: all; default by device)")
    learn_p = sub.add_parser("learn", parents=[common], help="encode the vocabulary and save the subspaces")
    learn_p.add_argument("--space", choices=SPACES, default="joint")
    learn_p.add_argument("--model", default=None, help="text-to-image model id (space t2i)")
    learn_p.add_argument("--out", default="pos_subspaces.safetensors")
    remove_p = sub.add_parser("remove", parents=[common], help="energy and nearest words before/after removal")
    remove_p.add_argument("text")
    remove_p.add_argument("--k", type=int, default=DEFAULT_K)
    gen_p = sub.add_parser("generate", parents=[common], help="original and theme-removed images")
    gen_p.add_argument("prompt")
    gen_p.add_argument("--k", type=int, default=DEFAULT_K)
    gen_p.add_argument("--seed", type=int, default=0)
    gen_p.add_argument("--steps", type=int, default=None)
    gen_p.add_argument("--model", default=None, help=f"diffusers model id or folder (default {SD_TURBO_ID})")
    gen_p.add_argument("--out", default="out/pos_subspaces")
    args = parser.parse_args(argv)
    if args.stand_in:
        from .standin import enable_standin

        enable_standin(True)
    max_words = None if args.max_words == 0 else args.max_words
    try:
        theme = _theme_from_args(args)
        if args.command == "learn":
            encoder = joint_encoder() if args.space == "joint" else t2i_model(args.model).encoder
            cap = default_max_words(args.space) if max_words == -1 else max_words
            learned = learn(encoder, theme, args.lam, args.geometry, cap, _print_progress)
            path = learned.subspaces.save(args.out)
            print(file=sys.stderr)
            for c in learned.subspaces.categories:
                top = learned.subspaces.eigenvalues[c][:3].tolist()
                print(f"{category_label(c):>10}: {len(learned.words[c]):6d} words, top eigenvalues "
                      + ", ".join(f"{v:.3e}" for v in top))
            print(f"saved {path}")
        elif args.command == "remove":
            result = diagnose(args.text, theme, args.lam, args.k, args.geometry, max_words, _print_progress)
            print(file=sys.stderr)
            print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        else:
            result = generate(args.prompt, theme, args.lam, args.k, args.geometry, args.seed, args.steps, args.model,
                              max_words, _print_progress)
            print(file=sys.stderr)
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            result.original.save(out / "original.png")
            result.removed.save(out / "theme_removed.png")
            (out / "result.json").write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
            print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
            print(f"images in {out}")
    except (InputError, MissingWeightsError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
