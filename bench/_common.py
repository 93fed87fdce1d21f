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


# --------------------------------------------------------------------------- the arithmetic floor

# 3x3 convolutions of the shapes that carry most of StyleGAN2's and e4e's FLOPs (channels, side): the
# rate is the best of them, as torch runs them (channels-last, oneDNN), so the floor is one the
# network's own kernels can reach on this CPU.
CONV3X3_SHAPES = ((512, 32), (256, 64), (128, 128))


def _best_seconds(fn: Callable[[], Any], runs: int, cpu_time: bool) -> float:
    clock = time.process_time if cpu_time else time.perf_counter
    fn()
    best = float("inf")
    for _ in range(runs):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def matmul_gflops(n: int = 2048, runs: int = 5, cpu_time: bool = False, dtype: Any = None) -> float:
    """Matmul GFLOP/s (float32 unless ``dtype``) at the current thread count, best of ``runs``.

    ``cpu_time`` times with the process's CPU time, as the one-thread rows do.
    """
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n ** 3 / _best_seconds(lambda: a @ b, runs, cpu_time) / 1e9


def conv3x3_gflops(runs: int = 5, cpu_time: bool = False, dtype: Any = None,
                   shapes: Sequence[tuple[int, int]] = CONV3X3_SHAPES) -> float:
    """Best GFLOP/s of torch's own 3x3 convolution (channels-last, float32 unless ``dtype``) over ``shapes``."""
    import torch
    import torch.nn.functional as F

    best = 0.0
    with torch.inference_mode():
        for channels, side in shapes:
            x = torch.randn(1, channels, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
            w = torch.randn(channels, channels, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
            flops = 2 * channels * channels * 9 * side * side
            seconds = _best_seconds(lambda x=x, w=w: F.conv2d(x, w, padding=1), runs, cpu_time)
            best = max(best, flops / seconds / 1e9)
    return best


def floor_rates(cpu_time: bool = False, dtype: Any = None) -> dict[str, float]:
    """The kernel rates a CPU floor is measured against: ``matmul``, ``conv3x3`` and ``best`` (GFLOP/s).

    The floor of a network is its GFLOP / ``best``: what the fastest kernel it uses would need if
    every FLOP ran at that kernel's rate. (A 2048 matmul alone understates the machine wherever the
    BLAS is pinned to an older core type than oneDNN's convolutions use.)
    """
    rates = {"matmul": matmul_gflops(cpu_time=cpu_time, dtype=dtype),
             "conv3x3": conv3x3_gflops(cpu_time=cpu_time, dtype=dtype)}
    rates["best"] = max(rates.values())
    return rates


def floor_rows(rates: dict[str, float], label: str) -> list[tuple[str, str]]:
    """The rows that print the rates of :func:`floor_rates` next to each other."""
    return [(f"float32 matmul 2048^2, {label}", f"{rates['matmul']:.1f} GFLOP/s"),
            (f"float32 3x3 conv channels-last (best of {len(CONV3X3_SHAPES)} shapes), {label}",
             f"{rates['conv3x3']:.1f} GFLOP/s (floor rate: the best, {rates['best']:.1f})")]


def interleaved(fns: dict[str, Callable[[], Any]], runs: int) -> dict[str, float]:
    """Median wall seconds of each function, run alternately after one warm-up each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def gflop(fn: Callable[[], Any]) -> float:
    """GFLOP of one call of ``fn`` by torch's flop counter (convolutions and matrix products).

    Counts the network's own arithmetic, as the direct convolution defines it: while counting,
    StyleGAN2's up-convs convolve their exact inputs (``stylegan2.exact_up_convs``: the zero row the
    faster path appends never inflates the count a floor ratio divides by) and its 3x3 convs run
    oneDNN's direct algorithm (``stylegan2.direct_convs``: the counter cannot see NNPACK's Winograd
    convs, which do about a fifth of those multiplications).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from backends.networks.stylegan2 import direct_convs, exact_up_convs

    with exact_up_convs(), direct_convs(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9
