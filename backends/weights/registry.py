"""The registry of every checkpoint (assembled from :mod:`.data`), the cache folder, and the missing-file message."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import MissingWeightsError
from . import data
from .data import anonymization, expression, latent_paths, pos_subspaces, reenactment, shared  # noqa: F401 - loads data.*
from .entry import Checkpoint

log = logging.getLogger("facelab.weights")

WEIGHTS_DIR_ENV = "FACELAB_WEIGHTS_DIR"
HUB_REPO_ENV = "FACELAB_HUB_REPO"
CACHE_DIR_ENV = "FACELAB_CACHE_DIR"
LOCK_NAME = "weights.lock.json"
CLI = "python -m backends.weights"
TABS = ("reenactment", "latent_paths", "pos_subspaces", "anonymization", "expression")

REGISTRY: dict[str, Checkpoint] = {
    entry.key: entry
    for module in (data.shared, data.reenactment, data.latent_paths, data.pos_subspaces, data.anonymization,
                   data.expression)
    for entry in module.ENTRIES
}


def get_entry(key: str) -> Checkpoint:
    """The registry entry for ``key``; a clear error for an unknown key."""
    try:
        return REGISTRY[key]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise MissingWeightsError(f"Unknown checkpoint '{key}'. Known keys: {known}.", key=key) from None


def keys_for_tab(tab: str) -> list[str]:
    """The checkpoints a tab may load (entries marked ``all`` serve every tab)."""
    if tab not in TABS:
        raise MissingWeightsError(f"Unknown tab '{tab}'. Tabs: {', '.join(TABS)}.")
    return [e.key for e in REGISTRY.values() if tab in e.tabs or "all" in e.tabs]


def cache_dir() -> Path:
    """Where Face Lab's own downloads are kept (hub files live in the Hugging Face cache)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facelab"
    return Path(os.environ.get(CACHE_DIR_ENV, default))


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "?"






