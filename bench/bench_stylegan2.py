"""Cost of our StyleGAN2 generator at real size, with deterministic stand-in weights.

Run from the repository root:
    .venv/bin/python bench/bench_stylegan2.py [--runs 1] [--device cpu]

Prints a markdown table: stand-in build/load times, mapping (1 z and the
4096-z seeded mean latent), one 1024 image (FFHQ config-f), StyleMask's style
extraction plus decode from styles, one 256 image (VoxCeleb, cm 1), parameter
counts and the process's peak RSS. Each timed step runs once as warm-up, then
``--runs`` times (median reported). Stand-in weights cost exactly what the real
ones do; the numbers say nothing about image quality. Takes < 2 min on 2 cores.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import memory_rows, print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.networks import stylegan2 as sg  # noqa: E402 (needs the sys.path line above)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of ``fn`` in seconds (waits for CUDA work to finish)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], runs: int, device: torch.device) -> float:
    """Median over ``runs`` calls after one warm-up call."""
    timed(fn, device)
    return statistics.median(timed(fn, device) for _ in range(runs))


def param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def bench_1024(runs: int, device: torch.device, rows: list[tuple[str, str]]) -> None:
    """FFHQ config-f: stand-in build, load, mapping, synthesis and the StyleMask style path."""
    start = time.perf_counter()
    ckpt = sg.standin_checkpoint_ffhq1024()
    rows.append(("build stand-in FFHQ-1024 checkpoint (+ mean_latent 4096)", f"{time.perf_counter() - start:.2f} s"))
    start = time.perf_counter()
    G = sg.load_rosinality_checkpoint(ckpt, size=1024, channel_multiplier=2, device=device)
    rows.append(("load G-1024 (strict)", f"{time.perf_counter() - start:.2f} s"))
    del ckpt

    z = torch.randn(1, 512, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.inference_mode():
        ms = median_time(lambda: G.mapping(z), max(runs, 5), device) * 1e3
        rows.append(("mapping, 1 z", f"{ms:.2f} ms"))
        rows.append(("mean_latent(4096, seed=0)", f"{median_time(lambda: G.mean_latent(4096), runs, device):.3f} s"))
        wplus = G.truncate(G.to_wplus(G.mapping(z)), 0.7, G.mean_latent(4096))
        rows.append(("G-1024 synthesis, 1 image", f"{median_time(lambda: G.synthesis(wplus), runs, device):.2f} s"))

        def all_styles() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
            return G.style_vectors(wplus), G.rgb_style_vectors(wplus)

        ms = median_time(all_styles, max(runs, 5), device) * 1e3
        rows.append(("style extraction (17 conv + 9 rgb)", f"{ms:.2f} ms"))

        def styles_and_decode() -> torch.Tensor:
            return G.synthesis_from_styles(G.style_vectors(wplus), wplus)

        seconds = median_time(styles_and_decode, runs, device)
        rows.append(("style extraction + decode from styles, 1024", f"{seconds:.2f} s"))
    rows.append(("G-1024 parameters", f"{param_count(G) / 1e6:.2f} M"))


def bench_256(runs: int, device: torch.device, rows: list[tuple[str, str]]) -> None:
    """VoxCeleb 256 (cm 1), the HyperReenact generator."""
    G = sg.load_rosinality_checkpoint(sg.standin_checkpoint_vox256(), size=256, channel_multiplier=1, device=device)
    z = torch.randn(1, 512, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.inference_mode():
        wplus = G.to_wplus(G.mapping(z))
        seconds = median_time(lambda: G.synthesis(wplus), max(runs, 3), device)
        rows.append(("G-256 (vox, cm 1) synthesis, 1 image", f"{seconds:.3f} s"))
    rows.append(("G-256 parameters", f"{param_count(G) / 1e6:.2f} M"))


def bench(runs: int, device: torch.device) -> list[tuple[str, str]]:
    """Measure every step; returns (row name, value) pairs."""
    rows: list[tuple[str, str]] = []
    bench_1024(runs, device, rows)
    bench_256(runs, device, rows)
    rows.extend(memory_rows(device))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="timed runs per step after one warm-up")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = bench(max(args.runs, 1), device)
    print(f"StyleGAN2 benchmark: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {device}, stand-in weights\n")
    print_table(rows, "step")


if __name__ == "__main__":
    main()
