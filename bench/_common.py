"""What every benchmark script shares: peak memory and the printed table."""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    scale = 1 / 1024 / 1024 if sys.platform == "darwin" else 1 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def memory_rows(device) -> list[tuple[str, str]]:
    """Peak RSS, plus peak CUDA memory when ``device`` is a GPU."""
    rows = [("peak RSS", f"{peak_rss_mb():.0f} MB")]
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
