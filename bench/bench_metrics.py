"""What the reviewer view adds to each tab: the metrics after a result, and the run card, with stand-in weights.

Run from the repository root:
    .venv/bin/python bench/bench_metrics.py [--tab reenactment|anonymization|latent_paths|pos|compare|video|all]
        [--device cpu] [--engine stylemask] [--steps 2] [--video-frames 8]

For each tab it times one result as the tab computes it, then the metrics the chained event computes after it
(first call: it also loads the metric networks; second call: warm), and the run card built inside the result
(reenactment and anonymization). The metrics never delay the result (they run after it is shown); the table
says how long the panel takes to fill in. ``compare`` times "Engines side by side" (each engine's result and its
metrics, as the compare mode runs them); ``video`` times a short driving clip and the video metrics added per
measured frame (cross- and self-reenactment: the latter adds PSNR and LPIPS). Each tab runs in its own process
so its peak memory is its own.
Stand-in weights cost what the real ones do; the numbers say nothing about quality.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import memory_rows, print_table, run_timed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FACELAB_WEIGHTS_DIR", str(REPO.parent / "shared" / "weights"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backends.device import force_device  # noqa: E402 (needs the sys.path line above)
from backends.standin import enable_standin  # noqa: E402

TABS = ("reenactment", "anonymization", "latent_paths", "pos", "compare", "video")


def _photos() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    astronaut = data.astronaut()
    return astronaut, np.ascontiguousarray(astronaut[20:500, ::-1][:, 16:496])


def _card_seconds(fn) -> str:
    _, seconds = run_timed(fn)
    return f"{seconds * 1000:.0f} ms"


def bench_reenactment(args, device) -> list[tuple[str, str]]:
    from backends.reenactment import common

    source, driving = _photos()
    res, t_result = run_timed(lambda: common.reenact_images(source, driving, engine=args.engine), device)
    _, t_first = run_timed(lambda: common.photo_metrics(res), device)
    _, t_warm = run_timed(lambda: common.photo_metrics(res), device)
    eng = common.get_engine(args.engine)
    card = _card_seconds(lambda: common.photo_run_card(res, source, driving, truncate=True, paste_back=False,
                                                       already_aligned=False, weights=eng.weights))
    return [(f"result: {args.engine} photo pair (loads, aligns, inverts)", f"{t_result:.1f} s"),
            ("metrics after it, first (loads ArcFace, 2DFAN-4, DECA)", f"{t_first:.1f} s"),
            ("metrics after it, warm (CSIM; 3 faces: YuNet, 2DFAN-4, DECA)", f"{t_warm:.2f} s"),
            ("run card (inside the result)", card)]


def bench_anonymization(args, device) -> list[tuple[str, str]]:
    from backends.anonymization import photo

    os.environ.setdefault("FACELAB_FALCO_POOL_SIZE", str(args.pool))
    source, _ = _photos()
    res, t_result = run_timed(lambda: photo.anonymize_photo(source, steps=args.steps, pool_size=args.pool), device)
    _, t_first = run_timed(lambda: photo.photo_metrics(res), device)
    _, t_warm = run_timed(lambda: photo.photo_metrics(res), device)
    decoys = photo.REID_DECOYS.get(device.type, photo.REID_DECOYS["cpu"])
    card = _card_seconds(lambda: photo.photo_run_card(res, source, already_aligned=False))
    return [(f"result: FALCO, {args.steps} steps, pool {args.pool}", f"{t_result:.1f} s"),
            (f"metrics after it, first (renders {decoys} decoy fakes)", f"{t_first:.1f} s"),
            ("metrics after it, warm (decoy embeddings kept)", f"{t_warm:.2f} s"),
            ("run card (inside the result)", card)]


def bench_latent_paths(args, device) -> list[tuple[str, str]]:
    from backends.latent_paths import traversal

    with tempfile.TemporaryDirectory() as tmp:
        res, t_result = run_timed(lambda: traversal.strip(seed=0, frames=args.frames, max_strength=3.0,
                                                          out_dir=tmp), device)
        _, t_first = run_timed(lambda: traversal.strip_metrics(res), device)
        _, t_warm = run_timed(lambda: traversal.strip_metrics(res), device)
    return [(f"result: strip of {args.frames} frames (seed start, CLIP margin)", f"{t_result:.1f} s"),
            ("metrics after it, first (loads ArcFace)", f"{t_first:.1f} s"),
            (f"metrics after it, warm ({args.frames} CSIM + plot)", f"{t_warm:.2f} s")]


def bench_pos(args, device) -> list[tuple[str, str]]:
    from backends import pos_subspaces
    from backends.pos_subspaces.generate import theme_presence

    theme = pos_subspaces.parse_theme("artists")
    res, t_result = run_timed(lambda: pos_subspaces.generate("a portrait of a woman, painted by Claude Monet",
                                                             theme, steps=1), device)
    _, t_first = run_timed(lambda: theme_presence(res, theme), device)
    _, t_warm = run_timed(lambda: theme_presence(res, theme), device)
    return [("result: SD-Turbo, both images, 1 step", f"{t_result:.1f} s"),
            ("metrics after it, first (CLIP text of the theme words)", f"{t_first:.1f} s"),
            ("metrics after it, warm (2 CLIP images)", f"{t_warm:.2f} s")]


def bench_compare(args, device) -> list[tuple[str, str]]:
    """Compare mode: every engine on one pair, the CPU wall time of each engine's result and metrics."""
    from backends.reenactment import common

    source, driving = _photos()
    rows = []
    for label in ("first (loads every engine)", "warm"):
        runs, total = run_timed(lambda: common.compare_engines(source, driving), device)
        for run in runs:
            if run.result is None:
                rows.append((f"{run.engine}, {label}", f"unavailable: {run.reason[:60]}"))
                continue
            rows.append((f"{run.engine}, {label}: result / metrics",
                         f"{run.seconds:.1f} s / {run.metrics_seconds:.1f} s"))
        rows.append((f"all engines, {label}", f"{total:.1f} s"))
    return rows


def _clip(frames: int, folder: Path) -> Path:
    """A short driving clip: crops of the astronaut moving over ``frames`` frames."""
    from backends.media import write_video

    astronaut, _ = _photos()
    crops = [np.ascontiguousarray(astronaut[d: d + 448, d: d + 448]) for d in np.linspace(0, 48, frames).astype(int)]
    return write_video(crops, folder / "drive.mp4", fps=8)


def bench_video(args, device) -> list[tuple[str, str]]:
    """A short clip reenacted, then the video metrics: the added time per measured frame."""
    from backends.reenactment import common

    source, _ = _photos()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = _clip(args.video_frames, Path(tmp))
        for label, kwargs in (("cross", {"source": source}), ("self", {"source": None, "first_frame_as_source": True})):
            res, t_result = run_timed(lambda kw=kwargs: common.reenact_video(
                kw["source"], clip, engine=args.engine, out_dir=tmp,
                first_frame_as_source=kw.get("first_frame_as_source", False)), device)
            _, t_first = run_timed(lambda r=res: common.video_metrics(r), device)
            _, t_warm = run_timed(lambda r=res: common.video_metrics(r), device)
            n = max(1, len(res.samples))
            extra = " + PSNR, LPIPS" if label == "self" else ""
            rows += [(f"{label}: result, {res.frames} frames ({args.engine})",
                      f"{t_result:.1f} s ({t_result / res.frames:.2f} s/frame)"),
                     (f"{label}: metrics, first (loads networks{extra})", f"{t_first:.1f} s"),
                     (f"{label}: metrics, warm, per measured frame ({n} frames{extra})", f"{t_warm / n:.2f} s")]
    return rows


BENCHES = {"reenactment": bench_reenactment, "anonymization": bench_anonymization,
           "latent_paths": bench_latent_paths, "pos": bench_pos, "compare": bench_compare, "video": bench_video}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tab", default="all", choices=(*TABS, "all"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engine", default="stylemask", help="reenactment engine")
    parser.add_argument("--steps", type=int, default=2, help="FALCO steps")
    parser.add_argument("--pool", type=int, default=8, help="FALCO pool size (built once, cached)")
    parser.add_argument("--frames", type=int, default=5, help="latent-path strip frames")
    parser.add_argument("--video-frames", type=int, default=8, help="frames of the driving clip (video tab)")
    args = parser.parse_args()
    if args.tab == "all":
        for tab in TABS:
            subprocess.run([sys.executable, __file__, "--tab", tab, "--device", args.device, "--engine", args.engine,
                            "--steps", str(args.steps), "--pool", str(args.pool), "--frames", str(args.frames),
                            "--video-frames", str(args.video_frames)],
                           check=False)
        return
    device = torch.device(args.device)
    force_device(args.device)
    enable_standin(True)
    print(f"\n{args.tab} on {device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})\n")
    print_table(BENCHES[args.tab](args, device) + memory_rows(device))


if __name__ == "__main__":
    main()
