"""The one device policy of Face Lab.

``FACELAB_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``...) overrides; otherwise CUDA
when available, else CPU. Half precision is used only on CUDA. The ZeroGPU seam
(:func:`gpu_task`) decorates only the GPU-heavy step of a handler.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)

_FORCED: str | None = None


def force_device(name: str | None) -> None:
    """Pin the device for this process (used by ``app.py --cpu``)."""
    global _FORCED
    _FORCED = name
    get_device.cache_clear()


@functools.cache
def get_device() -> torch.device:
    """The device every model of this process runs on."""
    name = _FORCED or os.environ.get("FACELAB_DEVICE", "").strip()
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def get_dtype(device: torch.device | None = None) -> torch.dtype:
    """fp16 on CUDA when FACELAB_FP16=1, float32 everywhere else."""
    device = device or get_device()
    if device.type == "cuda" and os.environ.get("FACELAB_FP16", "0") == "1":
        return torch.float16
    return torch.float32


def gpu_task(duration: int = 60) -> Callable[[F], F]:
    """Mark a function as the GPU step of a request.

    On a ZeroGPU Space the ``spaces`` package is importable and this becomes
    ``spaces.GPU(duration=...)``; elsewhere it changes nothing.
    """

    def wrap(fn: F) -> F:
        try:
            import spaces  # type: ignore[import-not-found]
        except ImportError:
            return fn
        return spaces.GPU(duration=duration)(fn)  # pragma: no cover - only on Spaces

    return wrap
