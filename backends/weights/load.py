"""Loading a checkpoint by key: the resolved file through the safe loader, or its stand-in tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoints import safe_load
from ..errors import MissingWeightsError
from ..standin import standin_enabled
from .download import missing_message, weights_path
from .lock import check_file
from .registry import get_entry

# --------------------------------------------------------------------------- loading

@dataclass
class Loaded:
    """A checkpoint object in its official structure, and whether it is a stand-in."""

    key: str
    obj: Any
    standin: bool
    path: Path | None = None


def load_checkpoint(key: str, *, allow: Sequence[tuple[Any, str]] = ()) -> Loaded:
    """The checkpoint for ``key``: stand-in tensors when enabled, else the verified file, safely read."""
    entry = get_entry(key)
    if standin_enabled():
        builder = entry.standin_builder()
        if builder is None:
            raise MissingWeightsError(
                missing_message(entry, "This network has no stand-in weights."), key=key, filename=entry.filename
            )
        return Loaded(key=key, obj=builder(), standin=True)
    path = weights_path(key)
    check_file(key, path)
    return Loaded(key=key, obj=safe_load(path, allow=allow, what=entry.title), standin=False, path=path)
