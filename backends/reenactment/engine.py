"""What every reenactment engine provides, so the photo and video flows are written once (:mod:`.common`).

An engine prepares a face (align, invert or encode, cached where it is costly), renders a source
against a driving face, and says which checkpoints it needs. It never decides what to do when its
weights are missing: :func:`engine_status` reports that, and the flows refuse to run it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from .. import catalog
from ..errors import InputError, MissingWeightsError
from ..face import AlignedFace
from ..media import ImageSource
from ..standin import standin_enabled
from ..weights import find_local, get_entry, missing_message, offline


@dataclass
class Side:
    """One prepared face: the photo (None for video frames), its crop, notices and the engine's state."""

    photo: Image.Image | None
    aligned: AlignedFace
    state: Any
    notices: list[str] = field(default_factory=list)


@dataclass
class Rendered:
    """One reenacted crop and the engine's numbers about it (shown in the details panel)."""

    image: Image.Image
    extras: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    key: str
    name: str
    weights: tuple[str, ...]  # registry keys of every checkpoint the engine loads

    def load(self) -> bool:
        """Load (and cache) the models; returns whether they are stand-ins."""

    def prepare_source(self, source: ImageSource, *, already_aligned: bool) -> Side: ...

    def prepare_driving(self, driving: ImageSource, *, already_aligned: bool) -> Side: ...

    def prepare_frame(self, frame: np.ndarray, landmarks: np.ndarray, box: np.ndarray) -> Side: ...

    def render(self, source: Side, driving: Side, psi: float) -> Rendered: ...

    def source_preview(self, source: Side, truncate: bool) -> Image.Image:
        """What the engine keeps of the source (its inversion)."""

    def driving_preview(self, driving: Side, truncate: bool) -> tuple[Image.Image, str]:
        """What the engine reads from the driving face, with a caption."""


@dataclass(frozen=True)
class EngineStatus:
    key: str
    available: bool
    reason: str = ""


def weights_status(keys: tuple[str, ...]) -> tuple[bool, str]:
    """Whether every checkpoint is at hand (stand-ins count), else why not.

    A file is missing when it is not local and cannot be fetched (host-supplied, or downloads are off).
    The reason is the usual message for the first missing file — the one loading would raise — and
    then every other missing file with how to get it (DECA's licence terms, for instance).
    """
    if standin_enabled():
        return True, ""
    missing = [get_entry(k) for k in keys if find_local(k) is None and (get_entry(k).host_supplied or offline())]
    if not missing:
        return True, ""
    first = missing[0]
    reason = "" if first.host_supplied else "Downloads are off (HF_HUB_OFFLINE=1)."
    parts = [missing_message(first, reason)]
    if len(missing) > 1:
        parts.append(f"Also missing: {', '.join(e.filename for e in missing[1:])}.")
        for entry in missing[1:]:
            how = entry.how_to_get or "; ".join(s.describe() for s in entry.sources)
            parts.append(f"{entry.filename} ({entry.title}): {how.rstrip('.')}.")
    return False, " ".join(parts)


ENGINES = ("stylemask", "hyperreenact", "gan_directions")


def get_engine(key: str) -> Engine:
    """The engine object of ``key`` (its module is imported on first use)."""
    if key not in ENGINES:
        raise InputError(f"Unknown reenactment engine '{key}'. Choose one of: {', '.join(ENGINES)}.")
    return importlib.import_module(f"{__package__}.{key}").ENGINE


def engine_status(key: str) -> EngineStatus:
    """Whether ``key`` can run in this process, and if not, why (missing host-supplied weights...)."""
    method = catalog.METHODS[key]
    if not method.available:
        return EngineStatus(key, False, f"{method.name} ({method.paper}) is not available in this build.")
    ok, reason = weights_status(get_engine(key).weights)
    return EngineStatus(key, ok, reason)


def engine_statuses() -> list[EngineStatus]:
    return [engine_status(k) for k in ENGINES]


def require_engine(key: str) -> Engine:
    """The engine, or an error with the reason (:class:`MissingWeightsError` naming every missing file and
    how to get it); never another engine instead."""
    engine = get_engine(key)
    catalog.require(key)
    status = engine_status(key)
    if not status.available:
        raise MissingWeightsError(status.reason, key=key)
    return engine
