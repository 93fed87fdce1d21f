"""Cost of the HyperReenact and GAN-directions engines at real size, with deterministic stand-in weights.

Run from the repository root:
    .venv/bin/python bench/bench_engines.py [--engine hyperreenact|gan_directions|both] [--frames 4] [--device cpu]

Prints a markdown table per engine: model load (stand-in VoxCeleb G-256, e4e, DECA, and the engine's own
networks: the 302.6 M-parameter hypernetwork + ArcFace, or the A matrix), one photo pair end to end, the
per-frame cost of a driving video (crop + DECA + engine + 256 render), the core step alone (hypernetwork
Δ + render, or Δp + shift + render), and the peak RSS (plus peak CUDA memory on a GPU). Stand-in weights
cost what the real ones do; the numbers say nothing about quality. Each engine runs in its own process
(``--engine both`` re-launches this script) so the peak memory is the engine's own.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import memory_rows, print_table, timed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FACELAB_WEIGHTS_DIR", str(REPO.parent / "shared" / "weights"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backends import reenactment as r  # noqa: E402 (needs the sys.path line above)
from backends.device import force_device  # noqa: E402
from backends.media import write_video  # noqa: E402
from backends.reenactment import gan_directions, hyperreenact, vox  # noqa: E402
from backends.standin import enable_standin  # noqa: E402


def bench(engine_key: str, frames: int, device: torch.device) -> list[tuple[str, str]]:
    from skimage import data

    astronaut = data.astronaut()
    driving = np.ascontiguousarray(astronaut[20:500, ::-1][:, 16:496])
    engine = r.get_engine(engine_key)
    rows = [("load (stand-in weights)", f"{timed(engine.load, device):.1f} s")]
    pair = timed(lambda: r.reenact_images(astronaut, driving, engine=engine_key), device)
    rows.append(("photo pair, end to end (first: aligns and inverts)", f"{pair:.2f} s"))

    src = engine.prepare_source(astronaut, already_aligned=False)
    drv = engine.prepare_driving(driving, already_aligned=False)
    if engine_key == "hyperreenact":
        def core():
            deltas = hyperreenact.weight_deltas(src.state, drv.state)
            vox.render(src.state.wplus, 0.7, deltas)
        label = "hypernetwork Δ + G-256 render"
    else:
        def core():
            gan_directions.render_shift(src.state.wplus, engine.delta_p(src, drv), 0.7)
        label = "Δp + A·Δp + G-256 render"
    core()
    times = [timed(core, device) for _ in range(3)]
    rows.append((label, f"{statistics.median(times) * 1000:.0f} ms (median of 3)"))

    clip = [np.ascontiguousarray(astronaut[d: d + 448, d: d + 448]) for d in range(0, 16 * frames, 16)]
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(clip, Path(tmp) / "drive.mp4", fps=8)
        seconds = timed(lambda: r.reenact_video(astronaut, video, engine=engine_key, out_dir=Path(tmp) / "out"),
                        device)
    rows.append((f"video, {frames} frames (incl. tracking, writing)", f"{seconds:.1f} s"))
    rows.append(("video, per frame", f"{seconds / frames:.2f} s"))
    rows += memory_rows(device)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="both", choices=("hyperreenact", "gan_directions", "both"))
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.engine == "both":
        for key in ("hyperreenact", "gan_directions"):
            subprocess.run([sys.executable, __file__, "--engine", key, "--frames", str(args.frames),
                            "--device", args.device], check=True)
        return
    device = torch.device(args.device)
    force_device(args.device)
    enable_standin(True)
    print(f"\n{args.engine} on {device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})\n")
    print_table(bench(args.engine, args.frames, device))


if __name__ == "__main__":
    main()
