"""Cost of FALCO at real size, with deterministic stand-in weights.

Run from the repository root:
    .venv/bin/python bench/bench_falco.py [--steps 50] [--pool 100] [--device cpu]

Prints a markdown table: loading the three networks (genforce G-1024, ArcFace IR-SE50, FaRL
ViT-B/16), building the fake pool (reported per 100 faces), and one photo (the astronaut:
alignment + e4e inversion + neighbour search + ``--steps`` optimisation steps + final render
and paste-back), with the median time per optimisation step and the peak memory. YuNet comes
from $FACELAB_WEIGHTS_DIR (default ../shared/weights). Stand-in
weights cost exactly what the real ones do; the numbers say nothing about image quality.

On a 2-core CPU one step is about a minute, so ``--steps 3 --pool 8`` (≈ 6 min) gives the
per-step and per-face figures; the 50-step time is then ``50 × step``.

``--end-to-end`` measures what a visitor of the tab waits for with its defaults (the device's pool
size, ``--steps``, default 20 on a CPU as the tab's slider): the first photo in a fresh process with
an empty pool cache (loading every network, building the pool, inverting, optimising, pasting back),
then a second photo (everything loaded and cached, a new inversion).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import memory_rows, print_table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FACELAB_WEIGHTS_DIR", str(REPO.parent / "shared" / "weights"))  # YuNet
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backends import anonymization as falco  # noqa: E402 (needs the sys.path line above)
from backends.device import force_device  # noqa: E402
from backends.standin import enable_standin  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=falco.STEPS)
    parser.add_argument("--pool", type=int, default=100, help="fakes to generate for the pool timing")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variant", default="official", choices=falco.VARIANTS)
    parser.add_argument("--end-to-end", action="store_true",
                        help="the tab's defaults, first and second photo (see the module docstring)")
    args = parser.parse_args()
    device = torch.device(args.device)
    force_device(str(device))
    enable_standin(True)
    if args.end_to_end:
        end_to_end(device, args)
        return
    rows: list[tuple[str, str]] = [
        ("device", f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
    ]
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FACELAB_CACHE_DIR"] = cache
        start = time.perf_counter()
        models = falco.get_models(falco.get_variant(args.variant))
        rows.append(("load G-1024 + IR-SE50 + FaRL (stand-ins, strict)", f"{time.perf_counter() - start:.1f} s"))

        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        falco.build_pool(models, falco.get_variant(args.variant), size=args.pool)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        rows.append((f"fake pool: {args.pool} faces (G-1024 + FaRL)", f"{seconds:.1f} s"))
        rows.append(("fake pool per 100 faces", f"{seconds / args.pool * 100:.1f} s"))

        from skimage import data

        stamps: list[float] = []

        def progress(fraction: float, desc: str) -> None:
            if desc.startswith("step "):  # reported after each optimisation step
                stamps.append(time.perf_counter())

        start = time.perf_counter()
        res = falco.anonymize_photo(data.astronaut(), steps=args.steps, pool_size=args.pool,
                                    variant=args.variant, progress=progress)
        total = time.perf_counter() - start
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        per_step = statistics.median(gaps) if gaps else float("nan")
        rows.append((f"one photo, {args.steps} steps (align, invert, search, optimise, paste)", f"{total:.1f} s"))
        rows.append(("time per optimisation step (median; G-1024 fwd+bwd, ArcFace, FaRL)", f"{per_step:.2f} s"))
        rows.append(("50 steps at that rate", f"{50 * per_step:.0f} s"))
        rows.append(("identity cosine: inversion → anonymised", f"{res.cos_inversion:.3f} → {res.cos_final:.3f}"))
    rows += memory_rows(device)
    print_table(rows)


def end_to_end(device: torch.device, args: argparse.Namespace) -> None:
    from skimage import data

    steps = args.steps if "--steps" in sys.argv else (50 if device.type == "cuda" else 20)
    rows: list[tuple[str, str]] = [
        ("device", f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
        ("pool size (the device's default), steps", f"{falco.pool_size_for(device)}, {steps}"),
    ]
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FACELAB_CACHE_DIR"] = cache
        for name, photo in (("first photo (fresh process: load, pool, invert, optimise)", data.astronaut()),
                            ("second photo (loaded and cached)", data.camera())):
            built_before = falco.MEASURED_SECONDS_PER_FAKE.pop(device.type, None)
            start = time.perf_counter()
            res = falco.anonymize_photo(photo, steps=steps, variant=args.variant)
            rows.append((name, f"{time.perf_counter() - start:.0f} s"))
            per_fake = falco.MEASURED_SECONDS_PER_FAKE.get(device.type)
            if per_fake is not None and built_before is None:
                rows.append(("  pool: seconds per fake (measured by the build)", f"{per_fake:.1f} s"))
            rows.append(("  optimisation: seconds per step (measured)",
                         f"{falco.MEASURED_SECONDS_PER_STEP.get(device.type, float('nan')):.1f} s"))
            rows.append(("  identity cosine: inversion → anonymised", f"{res.cos_inversion:.3f} → {res.cos_final:.3f}"))
    rows += memory_rows(device)
    print_table(rows)


if __name__ == "__main__":
    main()
