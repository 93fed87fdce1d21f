"""What every reenactment engine provides, so the photo and video flows are written once (:mod:`.common`).

An engine prepares a face (align, invert or encode, cached where it is costly), renders a source
against a driving face, and says which checkpoints it needs. It never decides what to do when its
weights are missing: :func:`engine_status` reports that, and the flows refuse to run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..face import AlignedFace
from ..media import ImageSource
from ..standin import standin_enabled
from ..weights import find_local, get_entry


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
    """Whether every checkpoint is at hand (stand-ins count), else which host-supplied files are missing and
    how to get each. Files Face Lab can download itself count as available (they are fetched on first use).
    """
    if standin_enabled():
        return True, ""
    missing = [get_entry(k) for k in keys if get_entry(k).host_supplied and find_local(k) is None]
    if not missing:
        return True, ""
    parts = [f"missing weights: {', '.join(e.filename for e in missing)}."]
    for entry in missing:
        how = entry.how_to_get or "; ".join(s.describe() for s in entry.sources)
        parts.append(f"{entry.filename} ({entry.title}): {how.rstrip('.')}.")
    parts.append(
        "The host provides these files: put them in $FACELAB_WEIGHTS_DIR (or a Hugging Face repo named by "
        "$FACELAB_HUB_REPO). To try the engine without them, start the app with --stand-in-weights "
        "(outputs are not results)."
    )
    return False, " ".join(parts)
