"""CPU speed per network and end to end, float32 against bfloat16, next to the arithmetic floor.

Run from the repository root:
    .venv/bin/python bench/bench_end_to_end.py [--quick] [--runs 5] [--threads 1,2] [--rounds 2]
                                               [--networks-only | --end-to-end-only]

Networks (stand-in weights at real size, built through the real loaders, bfloat16 copies made the
way the device policy makes them): G-1024 synthesis, StyleMask mix (masks, mixing, 1024 decode),
e4e FFHQ, the VoxCeleb G-256, the CLIP ViT-B/32 image and text towers and DFER-CLIP on a 16-frame
clip. At each thread count, float32 and bfloat16 run alternately (median of ``--runs``, wall time)
and the float32 floor is printed: a network's GFLOP (torch's flop counter) over the best float32
rate of the kernels it uses (channels-last 3x3 conv or 2048 matmul, ``_common.floor_rates``), so
"x floor" is float32 time / that. Without bfloat16 units (AVX512-BF16, AMX) the bfloat16 column is
emulation, not the path ``auto`` would take.

End to end (the app's own functions on stand-in weights, at the default thread count): the
StyleMask photo pair (align, two e4e inversions, masks, mix, decode, reconstructions), one frame of
a driving video, a latent-path strip (5 frames, CLIP margins), each under ``FACELAB_CPU_DTYPE=fp32``
and ``auto``; one FALCO anonymization step (always float32: it differentiates through G-1024). Each
mode runs in its own fresh process (the model caches follow the mode at load), alternately,
``--rounds`` times (median), each step timed ``--e2e-runs`` times after a warm-up.

``--quick``: 3 runs, one thread count (the default), one round, no anonymization step.
Timings on a shared machine are noisy: read the ratios first, and say how loaded the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import floor_rates, gflop, interleaved, print_table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FACELAB_WEIGHTS_DIR", str(REPO.parent / "shared" / "weights"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BF16 = torch.bfloat16
E2E_STEPS = ("photo pair (StyleMask)", "video, one frame (StyleMask)", "latent-path strip, 5 frames + CLIP margins")


# --------------------------------------------------------------------------- networks


def network_pairs() -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """(float32, bfloat16) callables per network, built from bench_bf16's stand-in cases."""
    import bench_bf16 as b
    import torch.nn.functional as F

    from backends.networks import clip as clip_net
    from backends.networks import stylemask as sm

    g, v = b.generator_case(1024), b.generator_case(256)
    faces = F.interpolate(b.render(g["g32"], g["w"][:1], g["mean"]).clamp(-1, 1), size=(256, 256),
                          mode="bilinear", antialias=True, align_corners=False)
    enc = b.encoder_case("ffhq", faces)
    mask32 = sm.load_mask_network(sm.standin_checkpoint_mask_network(), g["g32"].style_sections).eval()
    mask16 = b.bf16_copy(mask32)
    c, d = b.clip_case(), b.dfer_case()
    pixels = (faces + 1) / 2
    frames = F.interpolate(pixels, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    clip = frames.repeat(16, 1, 1, 1)[None]  # [1, 16, 3, 224, 224]
    tokens = clip_net.tokenize(["a smiling face", "a face with glasses", "an old man", "a photo of a cat"])

    def mix(gen: Any, net: Any, dtype: torch.dtype) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                w = g["w"].to(dtype)
                return sm.stylemask_forward(gen, net, w[:1], w[1:2], 0.7, g["mean"].to(dtype)).image
        return run

    def invert(e: Any) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                return e.invert(faces)
        return run

    def text(model: Any) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                return model.clip.encode_text(tokens)
        return run

    return {
        "G-1024 synthesis, 1 image": (lambda: b.render(g["g32"], g["w"][:1], g["mean"]),
                                      lambda: b.render(g["g16"], g["w"][:1], g["mean"])),
        "StyleMask mix (masks + mix + 1024 decode)": (mix(g["g32"], mask32, torch.float32),
                                                      mix(g["g16"], mask16, BF16)),
        "e4e FFHQ, 1 face": (invert(enc["e32"]), invert(enc["e16"])),
        "G-256 VoxCeleb, 1 image": (lambda: b.render(v["g32"], v["w"][:1], v["mean"]),
                                    lambda: b.render(v["g16"], v["w"][:1], v["mean"])),
        "CLIP ViT-B/32 image tower, 1 image": (lambda: b.clip_images(c["c32"], pixels),
                                               lambda: b.clip_images(c["c16"], pixels)),
        "CLIP ViT-B/32 text tower, 4 prompts": (text(c["c32"]), text(c["c16"])),
        "DFER-CLIP, 16-frame clip": (lambda: b.dfer_probs(d["d32"], clip), lambda: b.dfer_probs(d["d16"], clip)),
    }


def network_rows(runs: int, threads: list[int]) -> list[tuple[str, str]]:
    """float32 vs bfloat16 per network at each thread count, with the float32 floor."""
    pairs = network_pairs()
    flops = {name: gflop(f32) for name, (f32, _) in pairs.items()}
    rows: list[tuple[str, str]] = []
    before = torch.get_num_threads()
    try:
        for n in threads:
            torch.set_num_threads(n)
            label = f"{n} thread{'s' if n > 1 else ''}"
            r32, r16 = floor_rates(), floor_rates(dtype=BF16)
            rows.append((f"kernel rates fp32 / bf16, {label}: 2048 matmul; 3x3 conv channels-last",
                         f"{r32['matmul']:.0f} / {r16['matmul']:.0f}; {r32['conv3x3']:.0f} / {r16['conv3x3']:.0f} "
                         f"GFLOP/s (fp32 floor rate {r32['best']:.0f})"))
            for name, (f32, f16) in pairs.items():
                t = interleaved({"fp32": f32, "bf16": f16}, runs)
                floor = flops[name] / r32["best"]
                rows.append((f"{name}, {label}",
                             f"fp32 {t['fp32'] * 1e3:.0f} ms ({t['fp32'] / floor:.2f}x floor, "
                             f"{flops[name]:.1f} GFLOP), bf16 {t['bf16'] * 1e3:.0f} ms, "
                             f"fp32/bf16 x{t['fp32'] / t['bf16']:.2f}"))
                print(f"  {rows[-1][0]}: {rows[-1][1]}", file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(before)
    return rows


# --------------------------------------------------------------------------- end to end (one mode per process)


def _timed(fn: Callable[[], Any], runs: int) -> float:
    """Median wall seconds of ``runs`` calls after one warm-up."""
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def child_end_to_end(runs: int, anonymize: bool) -> dict[str, float]:
    """The end-to-end steps under this process's FACELAB_CPU_DTYPE (seconds per step)."""
    import numpy as np
    from skimage import data

    from backends import latent_paths as cc
    from backends import reenactment as r
    from backends.media import write_video
    from backends.standin import enable_standin

    enable_standin(True)
    astronaut = data.astronaut()
    driving = np.ascontiguousarray(astronaut[20:500, ::-1][:, 16:496])
    out: dict[str, float] = {}

    def pair() -> None:
        r.clear_caches()
        r.reenact_images(astronaut, driving)

    out[E2E_STEPS[0]] = _timed(pair, runs)
    frames = 3
    clip = [np.ascontiguousarray(astronaut[d: d + 448, d: d + 448]) for d in np.linspace(0, 60, frames).astype(int)]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(clip, Path(tmp) / "drive.mp4", fps=8)
        r.invert_photo(astronaut)  # the source is inverted once per video
        start = time.perf_counter()  # (models already loaded by the pair)
        r.reenact_video(astronaut, path, out_dir=Path(tmp) / "out")
        out[E2E_STEPS[1]] = (time.perf_counter() - start) / frames

        def strip() -> None:
            cc.strip(seed=0, corpus="attributes", path=1, max_strength=6.0, frames=5, margin=True, out_dir=tmp)

        out[E2E_STEPS[2]] = _timed(strip, runs)
    if anonymize:
        out.update(anonymization_step())
    return out


def anonymization_step() -> dict[str, float]:
    """Seconds per FALCO optimisation step (G-1024 forward + backward, ArcFace, FaRL), float32."""
    from skimage import data

    from backends import anonymization as falco

    with tempfile.TemporaryDirectory() as cache:
        os.environ["FACELAB_CACHE_DIR"] = cache
        falco.anonymize_photo(data.astronaut(), steps=4, pool_size=4)
    device = torch.device("cpu")
    return {"anonymization, one optimisation step (always fp32)": falco.MEASURED_SECONDS_PER_STEP[device.type]}


def run_child(mode: str, runs: int, anonymize: bool) -> dict[str, float]:
    """:func:`child_end_to_end` in a fresh process with FACELAB_CPU_DTYPE=mode."""
    env = dict(os.environ, FACELAB_CPU_DTYPE=mode)
    cmd = [sys.executable, __file__, "--child", "--runs", str(runs)] + (["--anonymize"] if anonymize else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"end-to-end child ({mode}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def end_to_end_rows(runs: int, rounds: int, anonymize: bool) -> list[tuple[str, str]]:
    """fp32 and auto children run alternately ``rounds`` times; medians per step."""
    from backends.device import cpu_has_bf16_units

    samples: dict[str, dict[str, list[float]]] = {"fp32": {}, "auto": {}}
    for i in range(rounds):
        for mode in ("fp32", "auto"):
            result = run_child(mode, runs, anonymize and i == 0 and mode == "fp32")
            for step, seconds in result.items():
                samples[mode].setdefault(step, []).append(seconds)
            print(f"  round {i + 1}, {mode}: {result}", file=sys.stderr, flush=True)
    auto = "bf16" if cpu_has_bf16_units() else "fp32 (no bf16 units)"
    rows: list[tuple[str, str]] = []
    for step in samples["fp32"]:
        t32 = statistics.median(samples["fp32"][step])
        if step not in samples["auto"]:
            rows.append((f"{step}, {torch.get_num_threads()} threads", f"{t32:.2f} s"))
            continue
        ta = statistics.median(samples["auto"][step])
        rows.append((f"{step}, {torch.get_num_threads()} threads",
                     f"fp32 {t32:.2f} s, auto ({auto}) {ta:.2f} s, x{t32 / ta:.2f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs, default threads, one round, no anonymization")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per network and dtype")
    parser.add_argument("--threads", default="1,2", help="thread counts for the network table")
    parser.add_argument("--rounds", type=int, default=1, help="alternating fp32/auto processes for end to end")
    parser.add_argument("--e2e-runs", type=int, default=1, help="timed end-to-end runs per step after a warm-up")
    parser.add_argument("--networks-only", action="store_true")
    parser.add_argument("--end-to-end-only", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--anonymize", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_end_to_end(max(1, args.runs), args.anonymize)))
        return
    runs, rounds = (3, 1) if args.quick else (max(1, args.runs), max(1, args.rounds))
    threads = [torch.get_num_threads()] if args.quick else [int(t) for t in args.threads.split(",")]
    from backends.device import cpu_has_bf16_units

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bfloat16 units: {cpu_has_bf16_units()}, {os.cpu_count()} cores, default threads {torch.get_num_threads()}")
    if not args.end_to_end_only:
        rows = network_rows(runs, threads)
        print(f"\nnetworks: fp32 vs bf16, median of {runs} alternating runs (wall)\n")
        print_table(rows, "network")
    if not args.networks_only:
        rows = end_to_end_rows(args.e2e_runs, rounds, anonymize=not args.quick)
        print(f"\nend to end: FACELAB_CPU_DTYPE fp32 vs auto, fresh process per mode, median of {rounds} "
              "alternating rounds (wall)\n")
        print_table(rows, "step")


if __name__ == "__main__":
    main()
