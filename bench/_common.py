"""What every benchmark script shares: timing, peak memory, the allocator state and the printed table."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def run_timed(fn: Callable[[], Any], device: Any = None) -> tuple[Any, float]:
    """``fn()`` and its wall time in seconds; on a CUDA ``device``, after its queued work has finished."""
    cuda = device is not None and getattr(device, "type", str(device)).startswith("cuda")
    if cuda:
        import torch

        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def timed(fn: Callable[[], Any], device: Any = None) -> float:
    """Wall time of one call of ``fn`` in seconds (see :func:`run_timed`)."""
    return run_timed(fn, device)[1]


def median_time(fn: Callable[[], Any], runs: int, device: Any = None) -> float:
    """Median wall time of ``runs`` calls after one untimed warm-up call."""
    fn()
    return statistics.median(timed(fn, device) for _ in range(runs))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    scale = 1 / 1024 / 1024 if sys.platform == "darwin" else 1 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def allocator_state() -> str:
    """Whether glibc's malloc keeps freed memory (see backends/allocator.py); it changes CPU times a lot."""
    try:
        from backends import allocator
    except ImportError:
        return "unknown"
    return "on" if allocator.tuned() else f"off ({allocator.ENV}=0 or not glibc)"


def memory_rows(device) -> list[tuple[str, str]]:
    """Peak RSS and whether freed memory is kept for reuse, plus peak CUDA memory when ``device`` is a GPU."""
    rows = [("peak RSS", f"{peak_rss_mb():.0f} MB"),
            ("freed memory kept for reuse (backends.allocator)", allocator_state())]
    if device.type == "cuda":
        import torch

        rows.append(("peak CUDA memory", f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MB"))
    return rows


def print_table(rows: Sequence[tuple[str, str]], first: str = "measure") -> None:
    """Print (name, value) rows as an aligned markdown table."""
    width = max(len(first), *(len(name) for name, _ in rows))
    print(f"| {first.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
