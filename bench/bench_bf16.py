"""bfloat16 against float32 on CPU: what the precision costs in quality, and what it gains in time.

Run from the repository root:
    .venv/bin/python bench/bench_bf16.py [--quality-only] [--speed-only] [--runs 5] [--threads 1,2]

Every network is built from its deterministic stand-in checkpoint at real size through the real
loader, then copied once into bfloat16 the way the device policy does it (weights cast once, inputs
cast at the entry, outputs back to float32). Stand-in weights compute the real cost, but their
outputs are not faces: the quality figures say how far bfloat16 rounding moves *these* networks'
outputs, which is a proxy for the real checkpoints, not a measurement of them.

Quality table (no quiet machine needed):

* G-1024 (FFHQ config-f) and G-256 (VoxCeleb): PSNR of the bfloat16 render against the float32
  render, both as the 8-bit images people see (peak 255); goal >= 40 dB;
* e4e (FFHQ and VoxCeleb): relative error |w_bf16 - w_fp32| / |w_fp32| of the W+ codes;
* CLIP ViT-B/32: cosine of the bfloat16 image and text embeddings with the float32 ones;
* DFER-CLIP: the largest change of any class probability on a 16-frame clip;
* mini-XCEPTION (the real FER2013 file when present): the largest probability change.

Speed table: float32 and bfloat16 of each network run alternately (fp32, bf16, fp32, ...) and the
median of each is reported, at each thread count (wall time; on a loaded machine the ratio is
more trustworthy than either time). YuNet is an ONNX model run by OpenCV, so it has no torch
bfloat16 path and is not measured.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _common import floor_rates, interleaved, print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.device import cpu_has_bf16_units  # noqa: E402 (needs the sys.path line above)
from backends.networks import clip as clip_net  # noqa: E402
from backends.networks import dfer_clip as dfer  # noqa: E402
from backends.networks import e4e  # noqa: E402
from backends.networks import stylegan2 as sg  # noqa: E402

BF16 = torch.bfloat16


def psnr_8bit(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB, peak 255) of two raw generator images in about [-1, 1], each rounded to 8 bits."""

    def to8(x: torch.Tensor) -> torch.Tensor:
        return ((x.float().clamp(-1, 1) + 1) * 127.5).round()

    mse = float((to8(a) - to8(b)).pow(2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def raw_note(ref: torch.Tensor, low: torch.Tensor) -> str:
    """How much of the float32 image lies outside [-1, 1] (clamped in 8 bits, which hides differences there),
    and the PSNR of the unclamped outputs over [-1, 1] pixels only."""
    inside = ref.abs() <= 1
    mse = float((low - ref)[inside].pow(2).mean())
    return (f"{100 * (1 - float(inside.float().mean())):.0f} % of fp32 pixels outside [-1, 1]; "
            f"unclamped PSNR on the rest {10 * np.log10(4 / mse):.1f} dB")


def bf16_copy(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module).to(BF16)


# --------------------------------------------------------------------------- the networks and their inputs


def generator_case(size: int) -> dict[str, Any]:
    ckpt = sg.standin_checkpoint_ffhq1024() if size == 1024 else sg.standin_checkpoint_vox256()
    g32 = sg.load_rosinality_checkpoint(ckpt, size=size, channel_multiplier=2 if size == 1024 else 1)
    del ckpt
    with torch.inference_mode():
        mean = g32.mean_latent(4096, seed=0)
        z = torch.randn(3, 512, generator=torch.Generator().manual_seed(1))
        w = g32.truncate(g32.to_wplus(g32.mapping(z)), 0.7, mean)
    return {"g32": g32, "g16": bf16_copy(g32), "mean": mean, "w": w}


def render(g: sg.Generator, w: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    dtype = g.input.input.dtype
    with torch.inference_mode():
        return g(w.to(dtype), truncation=1.0, truncation_latent=mean.to(dtype)).float()


def stylemask_quality(rows: list[tuple[str, str]], g: dict[str, Any]) -> None:
    """StyleMask's mix (mask network + G-1024 decode), all bfloat16 as the reenactment loader makes it."""
    from backends.networks import stylemask as sm

    net32 = sm.load_mask_network(sm.standin_checkpoint_mask_network(), g["g32"].style_sections).eval()
    net16 = bf16_copy(net32)
    src, drv = g["w"][:1], g["w"][1:2]
    with torch.inference_mode():
        ref = sm.stylemask_forward(g["g32"], net32, src, drv, 0.7, g["mean"])
        low = sm.stylemask_forward(g["g16"], net16, src.to(BF16), drv.to(BF16), 0.7, g["mean"].to(BF16))
    masks = max(float((a.float() - b.float()).abs().max()) for a, b in zip(ref.masks, low.masks, strict=True))
    rows.append(("StyleMask mix + G-1024 decode PSNR bf16 vs fp32, 8-bit; largest mask change",
                 f"{psnr_8bit(ref.image, low.image.float()):.1f} dB; {masks:.2e}"))


def encoder_case(kind: str, faces: torch.Tensor) -> dict[str, Any]:
    if kind == "ffhq":
        enc = e4e.load_e4e_checkpoint(e4e.standin_checkpoint_e4e_ffhq()).eval()
    else:
        enc = e4e.load_e4e_voxceleb_checkpoint(e4e.standin_checkpoint_e4e_voxceleb()).eval()
    return {"e32": enc, "e16": bf16_copy(enc), "x": faces}


def clip_case() -> dict[str, Any]:
    model = clip_net.load_clip(clip_net.standin_checkpoint_clip_vit_b32())
    enc32 = clip_net.ClipEncoder(model).eval()
    enc16 = clip_net.ClipEncoder(bf16_copy(model)).eval()
    return {"c32": enc32, "c16": enc16}


def clip_images(enc: clip_net.ClipEncoder, x: torch.Tensor) -> torch.Tensor:
    dtype = enc.clip.visual.conv1.weight.dtype
    with torch.inference_mode():
        return enc.clip.encode_image(((enc._resize(x) - enc.mean) / enc.std).to(dtype)).float()


def dfer_case() -> dict[str, Any]:
    model = dfer.load_dfer_clip_checkpoint(dfer.standin_checkpoint_dfer_clip_dfew()).eval()
    return {"d32": model, "d16": bf16_copy(model)}


def dfer_probs(model: dfer.DferClip, clip: torch.Tensor) -> torch.Tensor:
    dtype = model.temporal_net.cls_token.dtype
    with torch.inference_mode():
        return model(clip.to(dtype)).float().softmax(dim=-1)


# --------------------------------------------------------------------------- quality


def quality(rows: list[tuple[str, str]]) -> dict[str, Any]:
    """Fill the quality rows; returns the cases (kept for the speed table)."""
    cases: dict[str, Any] = {}
    g = generator_case(1024)
    ref, low = render(g["g32"], g["w"], g["mean"]), render(g["g16"], g["w"], g["mean"])
    values = [psnr_8bit(ref[i], low[i]) for i in range(ref.shape[0])]
    rows.append(("G-1024 render PSNR bf16 vs fp32, 8-bit (3 codes, psi 0.7): min / median",
                 f"{min(values):.1f} / {statistics.median(values):.1f} dB; {raw_note(ref, low)}"))
    faces = F.interpolate(ref.clamp(-1, 1), size=(256, 256), mode="bilinear", antialias=True, align_corners=False)
    cases["g1024"] = g
    del ref, low
    stylemask_quality(rows, g)

    v = generator_case(256)
    ref, low = render(v["g32"], v["w"], v["mean"]), render(v["g16"], v["w"], v["mean"])
    values = [psnr_8bit(ref[i], low[i]) for i in range(ref.shape[0])]
    rows.append(("G-256 VoxCeleb render PSNR bf16 vs fp32, 8-bit: min / median",
                 f"{min(values):.1f} / {statistics.median(values):.1f} dB; {raw_note(ref, low)}"))
    cases["g256"] = v

    for kind in ("ffhq", "vox"):
        c = encoder_case(kind, faces)
        with torch.inference_mode():
            w32 = c["e32"].invert(faces)
            w16 = c["e16"].invert(faces).float()
        rel = float((w16 - w32).norm() / w32.norm())
        worst = float(((w16 - w32).norm(dim=-1) / w32.norm(dim=-1)).max())
        # What the code error does to the picture: the FFHQ generator's render of both codes.
        extra = ""
        if kind == "ffhq":
            img32 = render(g["g32"], w32[:1], g["mean"])
            img16 = render(g["g32"], w16[:1], g["mean"])
            extra = f"; fp32 G of the two codes: {psnr_8bit(img32, img16):.1f} dB"
        rows.append((f"e4e {kind} W+ relative error bf16 vs fp32: all / worst row",
                     f"{rel:.2e} / {worst:.2e}{extra}"))
        cases[f"e4e_{kind}"] = c

    c = clip_case()
    x = (faces + 1) / 2
    f32, f16 = clip_images(c["c32"], x), clip_images(c["c16"], x)
    cos = F.cosine_similarity(f32, f16, dim=-1)
    with torch.inference_mode():
        texts = ["a smiling face", "a face with glasses", "an old man", "a photo of a cat"]
        t32 = c["c32"].clip.encode_text(clip_net.tokenize(texts))
        t16 = c["c16"].clip.encode_text(clip_net.tokenize(texts)).float()
    tcos = F.cosine_similarity(t32, t16, dim=-1)
    rows.append(("CLIP ViT-B/32 embedding cosine bf16 vs fp32: image min / text min",
                 f"{float(cos.min()):.5f} / {float(tcos.min()):.5f}"))
    cases["clip"] = c

    d = dfer_case()
    gen = torch.Generator().manual_seed(3)
    frames = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    clip = torch.stack([frames[torch.randint(0, frames.shape[0], (16,), generator=gen)]])  # [1, 16, 3, 224, 224]
    clip = (clip + 0.05 * torch.randn(clip.shape, generator=gen)).clamp(0, 1)
    p32, p16 = dfer_probs(d["d32"], clip), dfer_probs(d["d16"], clip)
    rows.append(("DFER-CLIP (DFEW) probabilities, largest change bf16 vs fp32",
                 f"{float((p16 - p32).abs().max()):.2e} (top class same: {bool(p16.argmax() == p32.argmax())})"))
    cases["dfer"] = d
    cases["dfer_clip_input"] = clip
    cases["faces"] = faces

    mini_xception_quality(rows, x)
    rows.append(("YuNet detector", "n/a: an ONNX model run by OpenCV's DNN module, no torch bfloat16 path"))
    return cases


def mini_xception_quality(rows: list[tuple[str, str]], x: torch.Tensor) -> None:
    from backends.networks.mini_xception import load_mini_xception_hdf5

    path = Path(os.environ.get("FACELAB_WEIGHTS_DIR", "../shared/weights")) / "fer2013_mini_xception.hdf5"
    if not path.is_file():
        rows.append(("mini-XCEPTION (real FER2013 file)", f"skipped: {path} not found"))
        return
    m32 = load_mini_xception_hdf5(path).eval()
    m16 = bf16_copy(m32)
    gray = F.interpolate(x.mean(dim=1, keepdim=True), size=(64, 64), mode="bilinear", antialias=True) * 2 - 1
    with torch.inference_mode():
        p32 = m32(gray).softmax(-1)
        p16 = m16(gray.to(BF16)).float().softmax(-1)
    rows.append(("mini-XCEPTION (real FER2013 file) probabilities, largest change",
                 f"{float((p16 - p32).abs().max()):.2e} (kept float32: 64x64 grey input, milliseconds either way)"))


# --------------------------------------------------------------------------- speed


def speed(cases: dict[str, Any], runs: int, threads: list[int], rows: list[tuple[str, str]]) -> None:
    g, v = cases["g1024"], cases["g256"]
    faces, clip = cases["faces"][:1], cases["dfer_clip_input"]
    c, d = cases["clip"], cases["dfer"]
    pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "G-1024, one image": (lambda: render(g["g32"], g["w"][:1], g["mean"]),
                              lambda: render(g["g16"], g["w"][:1], g["mean"])),
        "G-256 VoxCeleb, one image": (lambda: render(v["g32"], v["w"][:1], v["mean"]),
                                      lambda: render(v["g16"], v["w"][:1], v["mean"])),
        "e4e FFHQ, one face": (lambda: cases["e4e_ffhq"]["e32"].invert(faces),
                               lambda: cases["e4e_ffhq"]["e16"].invert(faces)),
        "CLIP ViT-B/32 image tower, one image": (lambda: clip_images(c["c32"], (faces + 1) / 2),
                                                 lambda: clip_images(c["c16"], (faces + 1) / 2)),
        "DFER-CLIP, one 16-frame clip": (lambda: dfer_probs(d["d32"], clip), lambda: dfer_probs(d["d16"], clip)),
    }
    before = torch.get_num_threads()
    try:
        for n in threads:
            torch.set_num_threads(n)
            label = f"{n} thread{'s' if n > 1 else ''}"
            r32, r16 = floor_rates(), floor_rates(dtype=BF16)
            rows.append((f"kernel rates fp32 / bf16, {label}: 2048 matmul; 3x3 conv channels-last",
                         f"{r32['matmul']:.0f} / {r16['matmul']:.0f}; {r32['conv3x3']:.0f} / {r16['conv3x3']:.0f} "
                         "GFLOP/s"))
            for name, (f32, f16) in pairs.items():
                t = interleaved({"fp32": f32, "bf16": f16}, runs)
                rows.append((f"{name}, {label}",
                             f"fp32 {t['fp32'] * 1000:.0f} ms, bf16 {t['bf16'] * 1000:.0f} ms, "
                             f"x{t['fp32'] / t['bf16']:.2f}"))
                print(f"  {rows[-1][0]}: {rows[-1][1]}", file=sys.stderr, flush=True)  # progress on slow machines
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts for the speed table")
    parser.add_argument("--quality-only", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    units = cpu_has_bf16_units()
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bfloat16 units: {units}, {os.cpu_count()} cores")
    if not units:
        print("note: no bfloat16 units: torch emulates bfloat16, so the speed table shows emulation, not the path")
    rows: list[tuple[str, str]] = []
    start = time.perf_counter()
    cases = quality(rows)
    print(f"\nquality (stand-in weights at real size; {time.perf_counter() - start:.0f} s)\n")
    print_table(rows)
    if args.quality_only:
        return
    rows = []
    speed(cases, args.runs, [int(t) for t in args.threads.split(",")], rows)
    print(f"\nspeed (median of {args.runs} alternating runs, wall time; label your figures with the machine's load)\n")
    print_table(rows)


if __name__ == "__main__":
    main()
