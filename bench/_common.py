"""What every benchmark script shares: peak memory and the printed table."""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence


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
    """Peak RSS, plus peak CUDA memory when ``device`` is a GPU."""
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
