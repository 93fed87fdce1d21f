"""The path corpora (built-in and trained) and their support sets, loaded once per corpus."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, InputError, shorten
from ..networks.contraclip import (
    SupportSets,
    load_support_sets,
    parse_dipoles,
)
from ..standin import standin_enabled
from ..weights import get_entry, load_checkpoint

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
TRAINED_ENV = "FACELAB_TRAINED_PATHS_DIR"


def trained_root() -> Path:
    """Where trained path folders live: $FACELAB_TRAINED_PATHS_DIR, else ~/.cache/facelab/contraclip_trained."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facelab" / "contraclip_trained"
    return Path(os.environ.get(TRAINED_ENV, default))


def trained_folders() -> dict[str, Path]:
    """Experiments written by ``train`` (official layout) under the trained-paths folder, by name."""
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
        raise InputError(f"Unknown path '{shorten(str(name))}' in the {self.corpus} corpus. Paths: {labels}.")


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
