"""The one device policy of Face Lab.

``FACELAB_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``...) overrides; otherwise CUDA
when available, else CPU. The ZeroGPU seam (:func:`gpu_task`) decorates only the
GPU-heavy step of a handler.

Precision (:func:`get_dtype`):

* CUDA: float16 with ``FACELAB_FP16=1``, else float32 (every network alike);
* CPU: ``FACELAB_CPU_DTYPE`` = ``auto`` (default), ``bf16`` or ``fp32``. bfloat16 is used only for the
  networks that name themselves (``get_dtype(device, network=...)``, see :data:`CPU_BF16_AUTO`) and only
  where the CPU has bfloat16 units (AVX512-BF16 or AMX on x86, the BF16 extension on Arm;
  :func:`cpu_has_bf16_units`). Without units torch emulates bfloat16 correctly but slower than float32,
  so ``bf16`` there falls back to float32 with a warning. Callers that pass no network (the parity
  tests, SD-Turbo, FALCO's optimisation) always get float32 on CPU.

bfloat16 is an inference precision here: weights are cast once when loaded, inputs at the network's
entry, outputs back to float32. Code that differentiates through a network (FALCO, ContraCLIP training)
pins float32 with :func:`force_cpu_dtype` or loads its own float32 copy.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)

_FORCED: str | None = None
_FORCED_CPU_DTYPE: str | None = None

CPU_DTYPE_ENV = "FACELAB_CPU_DTYPE"
CPU_DTYPE_MODES = ("auto", "bf16", "fp32")
# The CPU flags of bfloat16 units: AVX512-BF16 and AMX (x86, /proc/cpuinfo "flags"), Arm's BF16 ("Features").
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})

# Model sets with a CPU bfloat16 path, and whether ``auto`` takes it. Each was measured against float32
# on real-size stand-in weights by bench/bench_bf16.py (README, *CPU speed*); one whose bfloat16 output
# missed the quality goal would stay float32 under ``auto`` (``bf16`` still forces it).
CPU_BF16_AUTO: dict[str, bool] = {
    "stylegan2_ffhq1024": True,  # G-1024 with its e4e and StyleMask's mask network (one set, one dtype)
    "stylegan2_vox256": True,  # the VoxCeleb G-256 with its e4e (DECA and the FAN stay float32)
    "clip": True,  # CLIP ViT-B/32 towers: ContraCLIP's margins, zero-shot expressions
    "dfer_clip": True,  # DFER-CLIP (its CLIP towers, prompt text encoder and temporal transformer)
}


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


def force_cpu_dtype(mode: str | None) -> None:
    """Pin the CPU precision mode for this process (``fp32`` for code that runs under autograd); None unpins."""
    global _FORCED_CPU_DTYPE
    if mode is not None and mode not in CPU_DTYPE_MODES:
        raise ValueError(f"CPU precision must be one of {', '.join(CPU_DTYPE_MODES)}, not {mode!r}")
    _FORCED_CPU_DTYPE = mode


@contextlib.contextmanager
def pinned_cpu_dtype(mode: str | None) -> Iterator[None]:
    """:func:`force_cpu_dtype` for a block (models loaded inside keep that precision), then the previous pin."""
    before = _FORCED_CPU_DTYPE
    force_cpu_dtype(mode)
    try:
        yield
    finally:
        force_cpu_dtype(before)


def cpu_dtype_mode() -> str:
    """``auto``, ``bf16`` or ``fp32``: the pinned mode, else ``FACELAB_CPU_DTYPE`` (default ``auto``)."""
    if _FORCED_CPU_DTYPE is not None:
        return _FORCED_CPU_DTYPE
    mode = os.environ.get(CPU_DTYPE_ENV, "").strip().lower() or "auto"
    if mode not in CPU_DTYPE_MODES:
        raise ValueError(f"{CPU_DTYPE_ENV} must be one of {', '.join(CPU_DTYPE_MODES)}, not {mode!r}")
    return mode


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags: /proc/cpuinfo's ``flags``/``Features`` plus what torch's own probes report."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("flags", "features"):
                flags.update(value.split())
    except OSError:  # not Linux: torch's probes below still answer on x86
        pass
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private; torch >= 2.3, x86 only
    try:
        if probe is not None and probe():
            flags.add("avx512_bf16")
    except Exception:  # pragma: no cover - a probe that fails says nothing
        pass
    return frozenset(flags)


def cpu_has_bf16_units(flags: Iterable[str] | None = None) -> bool:
    """True when the CPU computes bfloat16 in hardware (``flags``: injected feature flags, for tests)."""
    return bool(BF16_FLAGS & set(cpu_flags() if flags is None else flags))


def cpu_dtype(network: str | None, flags: Iterable[str] | None = None) -> torch.dtype:
    """The CPU precision of one network under the current mode (see the module docstring)."""
    if network is None:
        return torch.float32
    if network not in CPU_BF16_AUTO:
        raise ValueError(f"no CPU bfloat16 path is known for {network!r}; known: {', '.join(CPU_BF16_AUTO)}")
    mode = cpu_dtype_mode()
    if mode == "fp32":
        return torch.float32
    units = cpu_has_bf16_units(flags)
    if mode == "bf16":
        if not units:
            warnings.warn(f"{CPU_DTYPE_ENV}=bf16 but this CPU has no bfloat16 units (AVX512-BF16, AMX or Arm "
                          "BF16): emulated bfloat16 would be slower than float32, so float32 is used.",
                          RuntimeWarning, stacklevel=3)
            return torch.float32
        return torch.bfloat16
    return torch.bfloat16 if units and CPU_BF16_AUTO[network] else torch.float32


def get_dtype(device: torch.device | None = None, network: str | None = None) -> torch.dtype:
    """The inference precision of ``network`` on ``device``.

    CUDA: float16 with FACELAB_FP16=1, else float32. CPU: :func:`cpu_dtype` (float32 unless the network
    is named, has a bfloat16 path and the mode and the CPU allow it).
    """
    device = device or get_device()
    if device.type == "cuda":
        return torch.float16 if os.environ.get("FACELAB_FP16", "0") == "1" else torch.float32
    if device.type == "cpu":
        return cpu_dtype(network)
    return torch.float32


def precision_report(device: torch.device | None = None) -> dict[str, object]:
    """What runs in which precision here: the CPU mode, whether the CPU has bfloat16 units, and per network."""
    device = device or get_device()
    return {
        "cpu_dtype_mode": cpu_dtype_mode(),
        "cpu_bf16_units": cpu_has_bf16_units(),
        "networks": {name: precision_name(get_dtype(device, network=name)) for name in CPU_BF16_AUTO},
        "other_networks": precision_name(get_dtype(device)),
    }


def precision_name(dtype: torch.dtype) -> str:
    """``float32``, ``bfloat16`` or ``float16``: how results report the precision that ran."""
    return str(dtype).removeprefix("torch.")


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
