"""CPU cost of e4e inversion and of the ArcFace IR-SE50 embedding, with real-size stand-in weights.

Run from the repository root:  .venv/bin/python bench/bench_e4e.py [--runs 5] [--baseline-rev REV]

Prints a markdown table: build/load times, median forward time over a few
runs (after one warm-up), parameter counts, and the process's peak RSS.
Stand-in weights cost exactly what the real ones do; the numbers say nothing
about output quality. The floor rows time one inversion on one thread (CPU
time) and on all cores (wall), with its GFLOP (torch's flop counter) and its
ratio to the floor GFLOP / (the best float32 rate of its kernels: 3x3 conv
channels-last or matmul, ``_common.floor_rates``); ``--baseline-rev REV``
adds git revision REV's encoder, timed interleaved with ours.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
from functools import partial
from pathlib import Path

import torch
from _common import floor_rates, floor_rows, median_time, peak_rss_mb, print_table
from _common import run_timed as timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_stylegan2 import gflop, import_baseline, interleaved  # noqa: E402

from backends.networks import e4e, irse  # noqa: E402 (needs the sys.path line above)


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


def bench_e4e_floor(runs: int, baseline_rev: str | None) -> list[tuple[str, str]]:
    """One inversion against the arithmetic floor, one thread and all cores (optionally vs a git revision)."""
    import tempfile

    inverter = e4e.load_e4e_checkpoint(e4e.standin_checkpoint_e4e_ffhq())
    gc.collect()
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fns = {"ours": partial(inverter.invert, image)}
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if baseline_rev:
            old = import_baseline(baseline_rev, "networks.e4e", tmp)
            with torch.device("meta"):
                encoder = old.Encoder4Editing(n_styles=inverter.n_styles)
            encoder = encoder.to_empty(device="cpu")
            encoder.load_state_dict({k: v.contiguous() for k, v in inverter.encoder.state_dict().items()})
            old_inverter = old.E4EInverter(encoder.eval(), inverter.latent_avg)
            fns["baseline"] = partial(old_inverter.invert, image)
        flops = gflop(fns["ours"])
        all_cores = os.cpu_count() or 1
        for threads in sorted({1, all_cores}):
            torch.set_num_threads(threads)
            rates = floor_rates(cpu_time=threads == 1)
            rate = rates["best"]
            times = interleaved(fns, runs, cpu_time=threads == 1)
            label = f"{threads} thread{'s' if threads > 1 else ''}, {'CPU time' if threads == 1 else 'wall'}"
            value = f"{times['ours']:.2f} s, {flops:.0f} GFLOP, {times['ours'] / (flops / rate):.2f}x floor"
            if "baseline" in times:
                value += f"; {baseline_rev}: {times['baseline']:.2f} s, now {times['ours'] / times['baseline']:.2f}x"
            rows.extend(floor_rows(rates, f"{threads} thread(s)"))
            rows.append((f"e4e invert 1x256, {label}", value))
        torch.set_num_threads(all_cores)
    return rows


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


_LOAD_SNIPPET = """
import sys, threading, time, torch
sys.path.insert(0, {repo!r})
from backends.checkpoints import safe_load
from backends.networks import e4e

peak_anon = [0]
def sample():  # RssAnon: memory only swap could free (file-backed mmap pages are not in it)
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak_anon[0] = max(peak_anon[0], int(line.split()[1]))
        time.sleep(0.002)
threading.Thread(target=sample, daemon=True).start()
time.sleep(0.05)
base = peak_anon[0]
path = {path!r}
if {new}:
    inverter = e4e.load_e4e_checkpoint(path)  # safe_load: mmap, then the tensors become the parameters
else:  # the old way: the whole file read into memory, then copied into a freshly allocated encoder
    obj = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):
        encoder = e4e.Encoder4Editing(n_styles=18)
    encoder = encoder.to_empty(device="cpu")
    encoder.load_state_dict({{k[8:]: v for k, v in obj["state_dict"].items() if k.startswith("encoder.")}})
time.sleep(0.05)
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
print((peak_anon[0] - base) / 1024, hwm / 1024)
"""


def bench_load_memory() -> list[tuple[str, str]]:
    """Memory of loading e4e_ffhq_encode.pt (~1 GB) from disk: whole-file read + copy vs mmap + assign."""
    import subprocess
    import tempfile

    repo = str(Path(__file__).resolve().parents[1])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "e4e_ffhq_encode.pt")
        torch.save(e4e.standin_checkpoint_e4e_ffhq(), path)
        size_mb = Path(path).stat().st_size / 2**20
        for label, new in (("before: read whole + copy", False), ("now: mmap + assign", True)):
            code = _LOAD_SNIPPET.format(repo=repo, path=path, new=new)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            anon, peak = (float(x) for x in out.stdout.split())
            rows.append((f"e4e load ({size_mb:.0f} MB file), {label}: anonymous memory added (MB)", f"{anon:.0f}"))
            rows.append((f"e4e load ({size_mb:.0f} MB file), {label}: peak RSS incl. page cache (MB)", f"{peak:.0f}"))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per model (median reported)")
    parser.add_argument("--skip-load-memory", action="store_true", help="skip the file-loading memory rows")
    parser.add_argument("--baseline-rev", help="also time this git revision's e4e encoder, interleaved with ours")
    args = parser.parse_args(argv)
    rows = [] if args.skip_load_memory else bench_load_memory()
    rows += bench_e4e(args.runs)
    gc.collect()
    rows += bench_e4e_floor(args.runs, args.baseline_rev)
    gc.collect()
    rows += bench_arcface(args.runs)
    rows.append(("peak RSS overall (MB)", f"{peak_rss_mb():.0f}"))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    print_table(rows, "measure")


if __name__ == "__main__":
    main()
