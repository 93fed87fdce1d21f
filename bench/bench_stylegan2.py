"""Cost of our StyleGAN2 generator at real size, with deterministic stand-in weights.

Run from the repository root:
    .venv/bin/python bench/bench_stylegan2.py [--runs 1] [--device cpu] [--speed] [--baseline-rev REV]

Prints a markdown table: stand-in build/load times, mapping (1 z and the
4096-z seeded mean latent), one 1024 image (FFHQ config-f), StyleMask's style
extraction plus decode from styles, one 256 image (VoxCeleb, cm 1), parameter
counts and the process's peak RSS. Each timed step runs once as warm-up, then
``--runs`` times (median reported). Stand-in weights cost exactly what the real
ones do; the numbers say nothing about image quality. Takes < 2 min on 2 cores.

``--speed`` (CPU) adds the arithmetic-floor table: G-1024 synthesis, forward +
backward w.r.t. W+ (FALCO's step) and a batch of 4 W+ codes, on one thread
(CPU time of the process, which a shared machine disturbs least) and on all
cores (wall time), each with its GFLOP (torch's flop counter) and its ratio to
the floor = GFLOP / (the best float32 rate of the kernels it uses at the same thread count:
torch's 3x3 convolution channels-last or a 2048 matmul, both printed; ``_common.floor_rates``).
``--baseline-rev REV`` also times the generator of git revision REV in the same
process, interleaved with ours (median of alternating runs), for a before/after
column. Takes several minutes.

``--profile`` prints where one G-1024 synthesis spends its time on one thread (3x3 convs, FIR
blur/upsampling, noise + activation, modulation), by torch.profiler's self CPU time per op, in
float32 and in bfloat16.

``--winograd`` times the one-image 3x3 convs of G-1024, G-256 and e4e on one thread as oneDNN's
direct conv and as NNPACK's Winograd conv (``sg.winograd_conv3x3``, layout transposes included),
next to what ``sg._winograd`` picks, then whole G-1024 and G-256 syntheses with and without it:
the measurement behind ``sg.WINOGRAD_MIN_CHANNELS`` and its neighbours.

``--up-convs`` times each up-conv shape of G-1024 and G-256 (one image, one thread, CPU time,
interleaved) as the transposed conv + blur of the exact input and of the input with one zero row
appended (``sg.up_conv_blur``), in float32 and bfloat16, next to what ``sg._pad_row`` picks: the
measurement behind ``sg.PAD_ROW_MIN_ELEMENTS``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import allocator_state, floor_rates, floor_rows, gflop, median_time, memory_rows, print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.networks import stylegan2 as sg  # noqa: E402 (needs the sys.path line above)


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


# --------------------------------------------------------------------------
# Arithmetic floor, one thread and all cores, optional interleaved baseline
# --------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def import_baseline(rev: str, module: str, tmp: str):
    """``backends.<module>`` as it was at git revision ``rev`` (exported to ``tmp`` as package ``backends_<rev>``)."""
    name = "backends_" + "".join(ch if ch.isalnum() else "_" for ch in rev)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "backends"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
    os.rename(os.path.join(tmp, "backends"), os.path.join(tmp, name))
    sys.path.insert(0, tmp)
    return importlib.import_module(f"{name}.{module}")


def interleaved(fns: dict[str, Callable[[], object]], runs: int, cpu_time: bool) -> dict[str, float]:
    """Median seconds of each function over ``runs`` alternating rounds, after one warm-up each.

    ``cpu_time`` measures the process's CPU time (right for one thread on a shared machine),
    otherwise wall time.
    """
    clock = time.process_time if cpu_time else time.perf_counter
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = clock()
            fn()
            samples[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def speed_rows(runs: int, baseline_rev: str | None) -> list[tuple[str, str]]:
    """The floor table of G-1024 on CPU (see the module docstring)."""
    rows: list[tuple[str, str]] = []
    G = sg.Generator(1024, channel_multiplier=2).eval()
    G.load_state_dict(sg.standin_checkpoint_ffhq1024()["g_ema"])
    G.requires_grad_(False)
    gens = {"ours": G}
    with tempfile.TemporaryDirectory() as tmp:
        if baseline_rev:
            old = import_baseline(baseline_rev, "networks.stylegan2", tmp)
            G_old = old.Generator(1024, channel_multiplier=2).eval()
            G_old.load_state_dict(G.state_dict())
            gens["baseline"] = G_old.requires_grad_(False)
        w1 = G.truncate(G.to_wplus(G.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)))),
                        0.7, G.mean_latent(4096)).detach()
        w4 = w1.repeat(4, 1, 1) + 0.1 * torch.randn(4, *w1.shape[1:], generator=torch.Generator().manual_seed(1))

        def synth(g: sg.Generator) -> Callable[[], object]:
            def run() -> object:
                with torch.inference_mode():
                    return g.synthesis(w1)
            return run

        def fwd_bwd(g: sg.Generator) -> Callable[[], object]:
            def run() -> object:  # FALCO's step: image from W+, a loss, its gradient w.r.t. W+
                w = w1.clone().requires_grad_(True)
                g.synthesis(w).square().mean().backward()
                return w.grad
            return run

        def batch4(g: sg.Generator) -> Callable[[], object]:
            def run() -> object:
                with torch.inference_mode():
                    return g.synthesis(w4)
            return run

        cases = [("G-1024 synthesis, 1 image", synth, 1), ("G-1024 forward+backward w.r.t. W+ (FALCO)", fwd_bwd, 1),
                 ("G-1024 batch of 4 W+ codes, per image", batch4, 4)]
        all_cores = os.cpu_count() or 1
        for threads in sorted({1, all_cores}):
            torch.set_num_threads(threads)
            rates = floor_rates(cpu_time=threads == 1)
            rate = rates["best"]
            label = f"{threads} thread{'s' if threads > 1 else ''}"
            clock = "CPU time" if threads == 1 else "wall"
            rows.extend(floor_rows(rates, label))
            for name, make, per in cases:
                flops = gflop(make(G)) / per
                times = interleaved({k: make(g) for k, g in gens.items()}, runs, cpu_time=threads == 1)
                ours = times["ours"] / per
                value = f"{ours:.2f} s {clock}, {flops:.0f} GFLOP, {ours / (flops / rate):.2f}x floor"
                if "baseline" in times:
                    before = times["baseline"] / per
                    value += (f"; {baseline_rev}: {before:.2f} s ({before / (flops / rate):.2f}x floor), "
                              f"now {ours / before:.2f}x")
                rows.append((f"{name}, {label}", value))
        torch.set_num_threads(all_cores)
    return rows


def _category(name: str, shapes: list) -> str:
    """Which part of a styled layer an aten op (with its input shapes) belongs to."""
    if "conv" in name:
        weight = shapes[1] if len(shapes) > 1 else []
        if len(weight) == 4 and weight[1] == 1:
            return "FIR blur / upsample (depthwise convs)"
        if len(weight) == 4 and weight[-1] == 1:
            return "toRGB (1x1 convs)"
        return "3x3 convs (dense, incl. the transposed up-convs)"
    if name == "aten::addmm" and len(shapes) > 1 and shapes[1] and shapes[1][0] > 4096:
        return "toRGB (1x1 convs)"  # one matrix product on the [pixels, channels] view
    if any(k in name for k in ("leaky_relu", "addcmul", "add_", "aten::add")):  # (addmm_: the noise add)
        return "noise + bias + leaky ReLU"
    if any(k in name for k in ("mul", "rsqrt", "pow", "sum", "addmm", "linear", "mm", "div")):
        return "modulation / demodulation / style affines"
    return "other (copies, layout, allocation)"


def profile_rows(dtype: torch.dtype = torch.float32) -> list[tuple[str, str]]:
    """Where one G-1024 synthesis spends its time on one thread (torch.profiler, self CPU time per op)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    G = sg.Generator(1024, channel_multiplier=2).eval()
    G.load_state_dict(sg.standin_checkpoint_ffhq1024()["g_ema"])
    G = G.to(dtype)
    w = G.to_wplus(G.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)).to(dtype))).detach()
    with torch.inference_mode():
        G.synthesis(w)  # warm-up: kernels chosen, FIR weights cached, memory reused
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            G.synthesis(w)
    totals: dict[str, float] = {}
    for event in prof.key_averages(group_by_input_shape=True):
        if event.self_cpu_time_total <= 0:
            continue
        cat = _category(event.key, list(event.input_shapes or []))
        totals[cat] = totals.get(cat, 0.0) + event.self_cpu_time_total / 1e6
    whole = sum(totals.values())
    return [(cat, f"{sec:.2f} s ({100 * sec / whole:.0f} %)") for cat, sec in
            sorted(totals.items(), key=lambda kv: -kv[1])] + [(f"total ({dtype})", f"{whole:.2f} s")]


# (in channels, out channels, input side) of every up-conv of G-1024 (cm 2) and G-256 (cm 1) from 32^2 up
UP_CONV_SHAPES = ((512, 512, 32), (512, 256, 64), (256, 128, 128), (128, 64, 256), (64, 32, 512),
                  (512, 256, 32), (256, 128, 64), (128, 64, 128))


def up_conv_rows(runs: int) -> list[tuple[str, str]]:
    """Transposed conv + blur of the exact input against the one with a zero row appended, per shape and dtype."""
    torch.set_num_threads(1)
    rows: list[tuple[str, str]] = []
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            for c_in, c_out, side in UP_CONV_SHAPES:
                layer = sg.ModulatedConv2d(c_in, c_out, 3, 512, upsample=True)
                x = torch.randn(1, c_in, side, side, generator=gen).to(dtype)
                x = x.contiguous(memory_format=torch.channels_last)
                weight = (0.05 * torch.randn(c_in, c_out, 3, 3, generator=gen)).to(dtype)
                weight = weight.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # as _scaled_weight lays it
                bias = torch.randn(c_out, generator=gen).to(dtype)

                def way(pad_row: bool, x=x, weight=weight, blur=layer.blur, bias=bias) -> Callable[[], object]:
                    return lambda: sg.up_conv_blur(x, weight, blur, bias, pad_row=pad_row)

                times = interleaved({"exact": way(False), "padded": way(True)}, runs, cpu_time=True)
                picked = "zero row appended" if sg._pad_row(x) else "exact input"
                name = f"{str(dtype).removeprefix('torch.')} {c_in}->{c_out} at {side}^2"
                rows.append((name, f"exact {1e3 * times['exact']:.1f} ms, zero row appended "
                                   f"{1e3 * times['padded']:.1f} ms ({times['padded'] / times['exact']:.2f}x); "
                                   f"picked: {picked}"))
    return rows


# (in = out channels, side) of the one-image 3x3 convs NNPACK's Winograd path was measured on: G-1024's and
# G-256's stride-1 convs from 16^2 up (cm 2 and cm 1), and e4e's 256-channel stage
WINOGRAD_SHAPES = ((512, 16), (512, 32), (512, 64), (256, 128), (128, 256), (64, 512), (256, 64), (128, 128),
                   (256, 32))


def winograd_rows(runs: int) -> list[tuple[str, str]]:
    """One thread: each 3x3 conv shape direct (oneDNN) against Winograd (NNPACK), then whole syntheses."""
    torch.set_num_threads(1)
    if not sg._nnpack_ready():
        return [("NNPACK", "not in this torch build: every 3x3 conv is oneDNN's direct one")]
    rows: list[tuple[str, str]] = []
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for c, side in WINOGRAD_SHAPES:
            x = torch.randn(1, c, side, side, generator=gen).contiguous(memory_format=torch.channels_last)
            weight = 0.02 * torch.randn(c, c, 3, 3, generator=gen)
            laid_out = weight.contiguous(memory_format=torch.channels_last)  # as _scaled_weight lays it
            bias = torch.randn(c, generator=gen)
            times = interleaved({"direct": lambda x=x, w=laid_out, b=bias: F.conv2d(x, w, b, padding=1),
                                 "winograd": lambda x=x, w=weight, b=bias: sg.winograd_conv3x3(x, w, b)},
                                runs, cpu_time=True)
            picked = "Winograd" if sg._winograd(x, c) else "direct"
            rows.append((f"3x3 conv {c}->{c} at {side}^2",
                         f"direct {1e3 * times['direct']:.1f} ms, Winograd (transposes included) "
                         f"{1e3 * times['winograd']:.1f} ms ({times['winograd'] / times['direct']:.2f}x); "
                         f"picked: {picked}"))
    for size, cm, make in ((1024, 2, sg.standin_checkpoint_ffhq1024), (256, 1, sg.standin_checkpoint_vox256)):
        G = sg.load_rosinality_checkpoint(make(), size=size, channel_multiplier=cm)  # (outside inference mode)
        with torch.inference_mode():
            w = G.to_wplus(G.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(0))))

            def direct(G=G, w=w) -> object:
                with sg.direct_convs():
                    return G.synthesis(w)

            diff = float((G.synthesis(w) - direct()).abs().max())
            times = interleaved({"direct": direct, "winograd": lambda G=G, w=w: G.synthesis(w)}, runs, cpu_time=True)
            rows.append((f"G-{size} synthesis, 1 image",
                         f"all direct {1e3 * times['direct']:.0f} ms, Winograd where picked "
                         f"{1e3 * times['winograd']:.0f} ms ({times['winograd'] / times['direct']:.2f}x); "
                         f"images differ by {diff:.1e} at most"))
    return rows


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
    parser.add_argument("--speed", action="store_true", help="only the CPU floor table (one thread and all cores)")
    parser.add_argument("--baseline-rev", help="with --speed: also time this git revision's generator, interleaved")
    parser.add_argument("--profile", action="store_true",
                        help="only where one G-1024 synthesis spends its time on one thread (fp32 and bf16)")
    parser.add_argument("--up-convs", action="store_true",
                        help="only the up-conv table: exact input against one zero row appended")
    parser.add_argument("--winograd", action="store_true",
                        help="only the Winograd table: direct against NNPACK 3x3 convs, one thread")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.up_convs:
        print(f"StyleGAN2 up-convs, one image, one thread, median of {max(args.runs, 5)} interleaved runs (CPU time)\n")
        print_table(up_conv_rows(max(args.runs, 5)), "up-conv")
        return
    if args.winograd:
        print(f"StyleGAN2 3x3 convs, one image, one thread, float32, median of {max(args.runs, 5)} interleaved runs "
              f"(CPU time)\n")
        print_table(winograd_rows(max(args.runs, 5)), "conv")
        return
    if args.profile:
        for dtype in (torch.float32, torch.bfloat16):
            print(f"\nG-1024 synthesis, one thread, {dtype}, self CPU time by part (torch.profiler)\n")
            print_table(profile_rows(dtype), "part")
        return
    if args.speed:
        rows = speed_rows(max(args.runs, 1), args.baseline_rev)
        print(f"StyleGAN2 CPU floor table: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
              f"stand-in weights, median of {max(args.runs, 1)} interleaved runs, freed memory kept for reuse: "
              f"{allocator_state()}\n")
        print_table(rows, "step")
        return
    rows = bench(max(args.runs, 1), device)
    print(f"StyleGAN2 benchmark: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {device}, stand-in weights\n")
    print_table(rows, "step")


if __name__ == "__main__":
    main()
