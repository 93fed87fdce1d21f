"""How the process keeps freed CPU memory (glibc's malloc), tuned for large tensors.

By default glibc hands every block above 32 MB to the kernel on ``free`` and asks for fresh pages on
the next ``malloc``: each 1024x1024 activation of StyleGAN2 is then zero-filled by the kernel, page by
page, on every layer of every pass. That was a quarter of a G-1024 render's CPU time and a third of
FALCO's forward+backward (system time; bench/bench_stylegan2.py). :func:`tune` makes glibc serve
large blocks from its heap, in one arena, and give back only what exceeds :data:`KEEP_BYTES` of free
memory at the heap's top, so a request reuses its own freed tensors. :func:`release_free_memory`
returns every free page (after models are dropped).

Applied once when :mod:`backends` is imported; ``FACELAB_MALLOC_TUNING=0`` keeps the C library's
defaults. Elsewhere than Linux with glibc both functions do nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading

ENV = "FACELAB_MALLOC_TUNING"
KEEP_BYTES = 2**31 - 1  # free memory (about 2 GB) kept at the heap's top before glibc trims it

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_lock = threading.Lock()
_state: dict[str, object] = {"libc": None, "tuned": False}


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if _state["libc"] is None:
        try:
            _state["libc"] = ctypes.CDLL("libc.so.6")
        except OSError:
            return None
    return _state["libc"]  # type: ignore[return-value]


def tune() -> bool:
    """Serve large blocks from the heap and keep up to :data:`KEEP_BYTES` free; True when in effect."""
    with _lock:
        if _state["tuned"]:
            return True
        if os.environ.get(ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
            return False
        libc = _libc()
        if libc is None:
            return False
        # One arena: worker threads (gradio runs requests in them) share the main heap; their own
        # arenas would map and unmap every large block again.
        ok = all(libc.mallopt(param, value) == 1 for param, value in (
            (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, KEEP_BYTES)))
        _state["tuned"] = ok
        return ok


def tuned() -> bool:
    return bool(_state["tuned"])


def release_free_memory() -> bool:
    """Give every free page of the heap back to the system (``malloc_trim``); True when any was."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
