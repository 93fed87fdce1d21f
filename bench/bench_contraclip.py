"""CPU cost of ContraCLIP paths, with real-size stand-in weights (9 paths × 64 dipoles × 6144).

Run from the repository root:  .venv/bin/python bench/bench_contraclip.py [--runs 20] [--frames 9]

Prints a markdown table: one direction d(x) (closed form), one Euler step, a 100-step walk,
one 1024 render of a W+ code, and a strip of N frames end to end from a seed (walk, renders,
strip/GIF/MP4; the CLIP margin is timed separately). Stand-in weights cost what the real ones do.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import median_time, memory_rows, print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("FACELAB_STAND_IN", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backends import inversion  # noqa: E402
from backends import latent_paths as cc  # noqa: E402
from backends.networks import contraclip as net  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--render-runs", type=int, default=3)
    parser.add_argument("--no-clip", action="store_true", help="skip the CLIP margin timing")
    parser.add_argument("--train-steps", type=int, default=0,
                        help="also time this many training iterations at real size (1024 G + CLIP; for a GPU)")
    parser.add_argument("--train-batch", type=int, default=7)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = [("threads", str(torch.get_num_threads()))]

    start = time.perf_counter()
    model = cc.get_paths("attributes")
    rows.append(("load support sets (stand-in, s)", f"{time.perf_counter() - start:.2f}"))
    lss = model.support_sets
    start = time.perf_counter()
    models = inversion.get_models()
    rows.append(("load generator + e4e (stand-in, s)", f"{time.perf_counter() - start:.2f}"))

    wplus = cc.start_from_seed(0).wplus
    x = net.moved_part(wplus)
    with torch.no_grad():
        t_dir = median_time(lambda: lss.direction(x, 1), args.runs)
        t_step = median_time(lambda: net.walk(lss, wplus, 1, 0.15, 1), args.runs)
        t_walk = median_time(lambda: net.traverse(lss, wplus, 1, 0.15, 100), 2)
    rows += [
        (f"direction d(x), median of {args.runs} (ms)", f"{t_dir * 1e3:.2f}"),
        ("one Euler step (direction + shift) (ms)", f"{t_step * 1e3:.2f}"),
        ("walk 100 steps each way (s)", f"{t_walk:.3f}"),
    ]
    t_render = median_time(lambda: inversion.render(models, wplus, 1.0), args.render_runs)
    rows.append((f"render one frame 1024, median of {args.render_runs} (s)", f"{t_render:.2f}"))

    cc.clear_caches()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cc.strip(seed=0, corpus="attributes", path=1, max_strength=6.0, frames=args.frames, margin=False, out_dir=tmp)
        rows.append((f"strip of {args.frames} frames end to end, no CLIP (s)", f"{time.perf_counter() - start:.2f}"))
        if not args.no_clip:
            start = time.perf_counter()
            cc.get_clip()
            rows.append(("load CLIP ViT-B/32 (stand-in, s)", f"{time.perf_counter() - start:.2f}"))
            frames = [inversion.tensor_to_pil(inversion.render(models, wplus, 1.0))] * args.frames
            start = time.perf_counter()
            cc.clip_margins(frames, model.paths[1])
            rows.append((f"CLIP margin of {args.frames} frames (s)", f"{time.perf_counter() - start:.2f}"))
    if args.train_steps > 0:
        from backends.latent_paths import training as tr

        clip, _ = cc.get_clip()
        cfg = tr.TrainConfig(dipoles=[("a picture of a smiling face.", "a picture of a face in neutral expression.")],
                             iterations=args.train_steps + 1, batch_size=args.train_batch)
        marks: list[float] = []
        tr.train(models.generator.float(), models.mean_latent.float(), clip, cfg,
                 progress=lambda _it, _loss: marks.append(time.perf_counter()))
        per_iter = (marks[-1] - marks[0]) / args.train_steps  # the first iteration is a warm-up
        rows.append((f"training, batch {args.train_batch}, per iteration (s)", f"{per_iter:.3f}"))
        rows.append(("training, per 1000 iterations (min)", f"{per_iter * 1000 / 60:.1f}"))
    rows += memory_rows(models.device)
    print_table(rows)


if __name__ == "__main__":
    main()
