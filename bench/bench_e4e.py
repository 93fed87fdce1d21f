"""CPU cost of e4e inversion and of the ArcFace IR-SE50 embedding, with real-size stand-in weights.

Run from the repository root:  .venv/bin/python bench/bench_e4e.py [--runs 5]

Prints a markdown table: build/load times, median forward time over a few
runs (after one warm-up), parameter counts, and the process's peak RSS.
Stand-in weights cost exactly what the real ones do; the numbers say nothing
about output quality.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from _common import peak_rss_mb, print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.networks import e4e, irse  # noqa: E402 (needs the sys.path line above)


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """``fn()`` and its wall time in seconds."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls after one untimed warm-up call."""
    fn()
    return statistics.median(timed(fn)[1] for _ in range(runs))


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def bench_e4e(runs: int) -> list[tuple[str, str]]:
    """Stand-in build, load and median inversion time of the e4e FFHQ encoder."""
    ckpt, t_build = timed(e4e.standin_checkpoint_e4e_ffhq)
    inverter, t_load = timed(partial(e4e.load_e4e_checkpoint, ckpt))
    ckpt.clear()  # keep only the loaded copy of the ~1.1 GB encoder
    gc.collect()
    image = torch.rand(1, 3, 256, 256) * 2 - 1
    t_invert = median_time(partial(inverter.invert, image), runs)
    return [
        ("e4e stand-in build (s)", f"{t_build:.2f}"),
        ("e4e load from dict (s)", f"{t_load:.2f}"),
        (f"e4e invert 1x256 CPU, median of {runs} (s)", f"{t_invert:.3f}"),
        ("e4e encoder params", f"{n_params(inverter.encoder) / 1e6:.1f} M"),
        ("peak RSS after e4e (MB)", f"{peak_rss_mb():.0f}"),
    ]


def bench_arcface(runs: int) -> list[tuple[str, str]]:
    """Median embedding time of ArcFace IR-SE50, bare (112) and through FALCO's 256 identity path."""
    state, t_build = timed(irse.standin_checkpoint_ir_se50)
    backbone = irse.load_arcface_checkpoint(state)
    face = torch.rand(1, 3, 112, 112) * 2 - 1
    image = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        t_embed = median_time(partial(backbone, face), runs)
        t_falco = median_time(partial(irse.falco_identity_embedding, image, backbone), runs)
    return [
        ("ArcFace stand-in build (s)", f"{t_build:.2f}"),
        (f"ArcFace embed 1x112 CPU, median of {runs} (s)", f"{t_embed:.3f}"),
        (f"FALCO identity path 1x256 CPU, median of {runs} (s)", f"{t_falco:.3f}"),
        ("ArcFace IR-SE50 params", f"{n_params(backbone) / 1e6:.1f} M"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per model (median reported)")
    args = parser.parse_args(argv)
    rows = bench_e4e(args.runs)
    gc.collect()
    rows += bench_arcface(args.runs)
    rows.append(("peak RSS overall (MB)", f"{peak_rss_mb():.0f}"))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    print_table(rows, "measure")


if __name__ == "__main__":
    main()
