"""CPU cost of 2DFAN-4 landmarks per face (real size, stand-in weights).

Run from the repository root:
    .venv/bin/python bench/bench_fan68.py [--runs 5]

Prints a markdown table: stand-in build time, then per thread count (1 and 2) and memory layout
(channels-last, the loader's default, and plain NCHW) the median time of the box → crop step, of
the network alone and of the whole ``get_landmarks`` call (crop, network, decoding), after one
warm-up. Stand-in weights cost exactly what the real ones do; the numbers say nothing about accuracy.
Face detection is not included. On a machine shared with other jobs, 2 threads can be much slower
than 1 (OpenMP workers waiting on each other); run it alone.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from _common import median_time, peak_rss_mb, print_table, run_timed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backends.networks import fan68  # noqa: E402 (needs the sys.path line above)

DEVICE = torch.device("cpu")
BOX = (168.5, 56.25, 275.75, 180.0)  # a 107×124 face box in a 512² photo: a 236-px window (upsampled)


def _photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(512, 512, 3), dtype=np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    state, t_build = run_timed(fan68.standin_checkpoint_fan68, DEVICE)
    rows = [("torch", torch.__version__), ("CPU", platform.processor() or platform.machine()),
            ("stand-in build (weights + BN calibration)", f"{t_build:.2f} s")]
    photo = _photo()
    center, scale = fan68.box_center_scale(BOX)
    tensor = fan68.image_to_tensor(photo)
    for layout, channels_last in (("channels-last", True), ("NCHW", False)):
        net, t_load = run_timed(lambda cl=channels_last: fan68.load_fan68_checkpoint(state, channels_last=cl), DEVICE)
        rows.append((f"{layout}: strict load", f"{t_load:.2f} s"))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            crop = fan68.crop_face(tensor, center, scale)
            if channels_last:
                crop = crop.contiguous(memory_format=torch.channels_last)

            def network(net: fan68.FAN = net, crop: torch.Tensor = crop) -> None:
                with torch.inference_mode():
                    net.heatmaps(crop)

            t_crop = median_time(lambda: fan68.crop_face(tensor, center, scale), args.runs, DEVICE)
            t_net = median_time(network, args.runs, DEVICE)
            t_all = median_time(lambda net=net: fan68.get_landmarks(net, photo, BOX), args.runs, DEVICE)
            rows += [(f"{layout}, {threads} thread(s): crop + resize", f"{t_crop * 1e3:.1f} ms"),
                     (f"{layout}, {threads} thread(s): network", f"{t_net * 1e3:.0f} ms"),
                     (f"{layout}, {threads} thread(s): get_landmarks per face", f"{t_all * 1e3:.0f} ms")]
        del net
    rows.append(("peak RSS", f"{peak_rss_mb():.0f} MB"))
    print_table(rows)


if __name__ == "__main__":
    main()
