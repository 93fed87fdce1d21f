"""Cost of StyleMask reenactment at real size, with deterministic stand-in weights.

Run from the repository root:
    .venv/bin/python bench/bench_reenactment.py [--runs 1] [--frames 4] [--device cpu] [--threads N]
                                                [--baseline-rev REV]

Prints a markdown table: model load (stand-in G-1024 + e4e + mask network, and
the seeded 4096-z mean latent), one photo pair end to end (align both faces,
two e4e inversions, masks, mixing, 1024 decode, both reconstructions), the same
pair with cached inversions, the mixing step alone, the per-frame cost of a
driving video, and the peak RSS. Uses the astronaut photo from scikit-image and
the YuNet detector from $FACELAB_WEIGHTS_DIR (default ../shared/weights).
Stand-in weights cost exactly what the real ones do; numbers say nothing about
quality. Takes about 2–3 min on 2 CPU cores.

``--baseline-rev REV`` adds before/after rows: the photo pair and the video
are run alternately with the generator and e4e encoder of git revision REV
(the same loaded weights, the modules' classes swapped in place) and with
ours, medians of ``--runs`` rounds, in CPU time of this process when
``--threads 1`` (what a shared machine disturbs least), else wall time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import allocator_state, memory_rows, print_table, timed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FACELAB_WEIGHTS_DIR", str(REPO.parent / "shared" / "weights"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backends import inversion  # noqa: E402 (needs the sys.path line above)
from backends import reenactment as r  # noqa: E402
from backends.device import force_device  # noqa: E402
from backends.media import write_video  # noqa: E402
from backends.networks.stylemask import stylemask_forward  # noqa: E402
from backends.standin import enable_standin  # noqa: E402


def swap_networks(models, old_modules, to_baseline: bool) -> None:
    """Give the loaded generator and e4e encoder the classes of ``old_modules`` (or ours back), in place.

    Same parameters and buffers; only the forward code changes.
    """
    from backends.networks import e4e as new_e4e
    from backends.networks import stylegan2 as new_sg

    old_sg, old_e4e = old_modules
    inv = models.inversion
    for net, new_mod, old_mod in ((inv.generator, new_sg, old_sg), (inv.encoder.encoder, new_e4e, old_e4e)):
        source, target = (new_mod, old_mod) if to_baseline else (old_mod, new_mod)
        for module in net.modules():
            if type(module).__module__ == source.__name__:
                module.__class__ = getattr(target, type(module).__name__)


def bench_baseline(rev: str, runs: int, frames: int, device: torch.device) -> list[tuple[str, str]]:
    """Interleaved before/after of the photo pair and the video (see the module docstring)."""
    from bench_stylegan2 import import_baseline
    from skimage import data

    astronaut = data.astronaut()
    driving = np.ascontiguousarray(astronaut[20:500, ::-1][:, 16:496])
    clip = [np.ascontiguousarray(astronaut[d : d + 448, d : d + 448]) for d in np.linspace(0, 60, frames).astype(int)]
    models = r.get_models()
    cpu_time = torch.get_num_threads() == 1
    clock = time.process_time if cpu_time else time.perf_counter
    samples: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        old_sg = import_baseline(rev, "networks.stylegan2", tmp)
        old_e4e = importlib.import_module(old_sg.__name__.replace("stylegan2", "e4e"))
        path = write_video(clip, Path(tmp) / "drive.mp4", fps=8)

        def pair() -> None:
            r.clear_caches()
            r.reenact_images(astronaut, driving)

        def video() -> float:
            r.clear_caches()
            r.invert_photo(astronaut)
            start = clock()
            r.reenact_video(astronaut, path, out_dir=Path(tmp) / "out")
            return clock() - start

        pair()  # warm-up (detector, allocator)
        for _ in range(runs):
            for which in ("baseline", "ours"):
                swap_networks(models, (old_sg, old_e4e), to_baseline=which == "baseline")
                start = clock()
                pair()
                samples.setdefault(("pair", which), []).append(clock() - start)
                samples.setdefault(("video", which), []).append(video() / frames)
        swap_networks(models, (old_sg, old_e4e), to_baseline=False)
    unit = "CPU s" if cpu_time else "s"
    rows = []
    for step, label in (("pair", "photo pair end to end"), ("video", "video, per frame end to end")):
        before, after = (statistics.median(samples[(step, w)]) for w in ("baseline", "ours"))
        rows.append((f"{label}: {rev} -> now ({torch.get_num_threads()} thread(s))",
                     f"{before:.2f} -> {after:.2f} {unit} ({after / before:.2f}x)"))
    return rows


def bench(runs: int, frames: int, device: torch.device) -> list[tuple[str, str]]:
    from skimage import data

    rows: list[tuple[str, str]] = []
    astronaut = data.astronaut()
    driving = np.ascontiguousarray(astronaut[20:500, ::-1][:, 16:496])

    rows.append(
        ("model load: G-1024 + e4e + mask net, stand-in (+ mean latent)", f"{timed(r.get_models, device):.2f} s")
    )
    models = r.get_models()
    inv = models.inversion

    def fresh_pair() -> None:
        r.clear_caches()
        r.reenact_images(astronaut, driving)

    timed(fresh_pair, device)  # warm-up (detector, allocator)
    pair = statistics.median(timed(fresh_pair, device) for _ in range(runs))
    rows.append(("photo pair: align x2 + e4e x2 + masks + mix + decode 1024 + 2 reconstructions", f"{pair:.2f} s"))
    cached = statistics.median(
        timed(lambda: r.reenact_images(astronaut, driving, paste_back=True), device) for _ in range(runs)
    )
    rows.append(("photo pair again (inversions + reconstructions cached), with paste-back", f"{cached:.2f} s"))

    src = r.invert_photo(astronaut)
    drv = r.invert_photo(driving)
    w_src, w_drv = src.wplus.to(inv.device), drv.wplus.to(inv.device)
    with torch.inference_mode():
        mix_only = statistics.median(
            timed(
                lambda: stylemask_forward(
                    inv.generator, models.mask_net, w_src, w_drv, 0.7, inv.mean_latent, decode=False
                ),
                device,
            )
            for _ in range(max(runs, 5))
        )
        e4e = statistics.median(
            timed(lambda: inversion.encode_crop(inv, src.aligned.image), device) for _ in range(runs)
        )
        decode = statistics.median(
            timed(lambda: r._reenact_codes(models, src.wplus, drv.wplus, 0.7), device) for _ in range(runs)
        )
    rows.append(("  of which: e4e inversion, 1 crop", f"{e4e:.2f} s"))
    rows.append(("  of which: styles + masks + mixing (no decode)", f"{mix_only * 1e3:.1f} ms"))
    rows.append(("  of which: StyleMask forward incl. 1024 decode", f"{decode:.2f} s"))

    clip = [np.ascontiguousarray(astronaut[d : d + 448, d : d + 448]) for d in np.linspace(0, 60, frames).astype(int)]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(clip, Path(tmp) / "drive.mp4", fps=8)
        r.invert_photo(astronaut)  # the source is inverted once per video; keep it out of the per-frame cost
        seconds = timed(lambda: r.reenact_video(astronaut, path, out_dir=Path(tmp) / "out"), device)
    rows.append((f"video: {frames} frames end to end (track, smooth, e4e, StyleMask, 2 MP4s)", f"{seconds:.2f} s"))
    rows.append(("video: per frame", f"{seconds / frames:.2f} s"))
    params = sum(p.numel() for m in (inv.generator, inv.encoder, models.mask_net) for p in m.parameters())
    rows.append(("parameters (G + e4e + mask net)", f"{params / 1e6:.1f} M"))
    rows.extend(memory_rows(device))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="timed runs per step (after one warm-up for the pair)")
    parser.add_argument("--frames", type=int, default=4, help="frames of the synthetic driving video")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--baseline-rev", help="only the interleaved before/after rows against this git revision")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    force_device(args.device)
    enable_standin(True)
    device = torch.device(args.device)
    if args.baseline_rev:
        rows = bench_baseline(args.baseline_rev, max(1, args.runs), max(1, args.frames), device)
    else:
        rows = bench(max(1, args.runs), max(1, args.frames), device)
    print(
        f"StyleMask reenactment benchmark: torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, device {device}, "
        f"freed memory kept for reuse: {allocator_state()}\n"
    )
    print_table(rows, "step")


if __name__ == "__main__":
    main()
