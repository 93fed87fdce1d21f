"""fp32 vs fp16 of the StyleGAN stack on a GPU, with deterministic stand-in weights at real size.

Run from the repository root on a machine with CUDA:
    python bench/bench_fp16.py --device cuda [--runs 7] [--cudnn-benchmark] [--out results.md]

The precision comes from the one device policy (``backends.device.get_dtype``: float16 only on
CUDA with ``FACELAB_FP16=1``); this script only flips that variable and reloads the models.
Three modes run in one process on the same inputs:

* ``fp32``: TF32 off for matmuls and cuDNN, so the reference is true float32;
* ``fp32+TF32``: the same float32 models with TF32 on (matmul and cuDNN);
* ``fp16``: ``FACELAB_FP16=1``, models reloaded in half precision.

Steps, each timed through the public GPU step (casts and host transfers included; median of
``--runs`` after one warm-up, ``cuda.synchronize`` around every call): G-1024 synthesis of one
image (``inversion.render``, ψ 0.7), e4e inversion of one aligned crop (``inversion.encode``),
StyleMask forward with the 1024 decode (``reenactment._reenact_codes``) and the photo pair end
to end (``reenactment.reenact_images``: the skimage astronaut and a mirrored, off-centre crop of
it; alignment of both, two inversions, masks, decode, two reconstructions; caches cleared
before every call). Outputs are compared with the fp32 ones: images on the [-1, 1] scale (raw
and clamped as shown), W+ codes, per-layer mask means; peak CUDA memory includes the weights.
The YuNet detector comes from ``$FACELAB_WEIGHTS_DIR``. On CPU the policy keeps float32, so
``--device cpu`` only checks that the script runs (all modes equal).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FACELAB_WEIGHTS_DIR", str(REPO.parent / "shared" / "weights"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backends import device as device_policy  # noqa: E402 (needs the sys.path line above)
from backends import inversion  # noqa: E402
from backends import reenactment as r  # noqa: E402
from backends.networks.e4e import preprocess_aligned  # noqa: E402
from backends.standin import enable_standin  # noqa: E402

PSI = 0.7
MODES = ("fp32", "fp32+TF32", "fp16")
STEPS = (
    ("synth", "G-1024 synthesis, 1 image (render, ψ 0.7)"),
    ("e4e", "e4e inversion, 1 crop (encode)"),
    ("stylemask", "StyleMask forward incl. 1024 decode"),
    ("pair", "photo pair end to end (reenact_images)"),
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def set_mode(mode: str) -> None:
    """FACELAB_FP16 and the TF32 switches of one mode."""
    os.environ["FACELAB_FP16"] = "1" if mode == "fp16" else "0"
    tf32 = mode == "fp32+TF32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    device_policy.get_device.cache_clear()


def drop_models(device: torch.device) -> None:
    """Forget every cached model and result, and give the memory back."""
    inversion._cached_models.cache_clear()
    r._cached_mask_net.cache_clear()
    inversion.clear_caches()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def mib(n: float) -> float:
    return n / 2**20


def module_dtypes(module: torch.nn.Module) -> set[str]:
    tensors = list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]
    return {str(t.dtype).removeprefix("torch.") for t in tensors}


def pil_to_unit(image) -> torch.Tensor:
    """An 8-bit RGB image on the generator's [-1, 1] scale."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32)) / 127.5 - 1


def load_models(mode: str, device: torch.device) -> dict[str, Any]:
    """Drop every cached model, then load G + e4e + mask net in ``mode``: seconds and weight memory."""
    set_mode(mode)
    drop_models(device)
    seconds, _ = timed(r.get_models, device)
    facts: dict[str, Any] = {"load_s": seconds}
    if device.type == "cuda":
        facts["weights_mib"] = mib(torch.cuda.memory_allocated(device))
    log(f"{mode}: models loaded in {seconds:.1f} s")
    return facts


def run_mode(mode: str, device: torch.device, inputs: dict[str, Any], runs: int,
             loaded: dict[str, Any]) -> dict[str, Any]:
    """Time every step in one mode; returns {step: {seconds, peak_mib, out}} plus the load facts."""
    set_mode(mode)
    result: dict[str, Any] = {"steps": {}, **loaded}
    models = r.get_models()
    inv = models.inversion
    result["dtype"] = str(inv.dtype).removeprefix("torch.")
    result["module_dtypes"] = {
        "generator": module_dtypes(inv.generator),
        "e4e": module_dtypes(inv.encoder),
        "mask net": module_dtypes(models.mask_net),
        "mean latent": {str(inv.mean_latent.dtype).removeprefix("torch.")},
    }
    log(f"{mode}: models in {result['dtype']} on {inv.device}: {result['module_dtypes']}")

    def pair() -> dict[str, Any]:
        r.clear_caches()
        res = r.reenact_images(inputs["source"], inputs["driving"])
        src = r.invert_photo(inputs["source"])  # cached by the call above
        return {"image": pil_to_unit(res.result), "wplus": src.wplus, "masks": torch.tensor(res.mask_means)}

    steps: dict[str, Callable[[], Any]] = {
        "synth": lambda: {"image": inversion.render(inv, inputs["w_src"], PSI)},
        "e4e": lambda: {"wplus": inversion.encode(inv, inputs["crop"])},
        "stylemask": lambda: dict(
            zip(("image", "masks"), r._reenact_codes(models, inputs["w_src"], inputs["w_drv"], PSI), strict=True)
        ),
        "pair": pair,
    }
    for key, fn in steps.items():
        try:
            timed(fn, device)  # warm-up (cuDNN plans, allocator, detector)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times, out = [], None
            for _ in range(runs):
                seconds, out = timed(fn, device)
                times.append(seconds)
            entry = {"seconds": statistics.median(times), "out": out}
            if isinstance(entry["out"].get("masks"), list):
                entry["out"]["masks"] = torch.tensor(entry["out"]["masks"])
            if device.type == "cuda":
                entry["peak_mib"] = mib(torch.cuda.max_memory_allocated(device))
            result["steps"][key] = entry
            log(f"{mode}: {key} {entry['seconds'] * 1e3:.1f} ms")
        except Exception as exc:  # keep measuring the other steps; the error goes in the report
            traceback.print_exc()
            result["steps"][key] = {"error": f"{type(exc).__name__}: {exc}"}
    return result


def activation_peaks(models: r.ReenactmentModels, inputs: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """The largest |output| of any submodule (and which) during one render and one e4e call.

    float16 overflows at 65504: this is the headroom the current weights leave.
    """
    peaks: dict[str, tuple[float, str]] = {}

    def watch(root: torch.nn.Module, label: str, fn: Callable[[], Any]) -> None:
        best = [0.0, ""]

        def hook(module, _inputs, output, name=""):
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                value = float(output.detach().abs().max())
                if value > best[0]:
                    best[0], best[1] = value, name

        handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(mod, i, o, n)) for n, m in root.named_modules()]
        try:
            fn()
        finally:
            for h in handles:
                h.remove()
        peaks[label] = (best[0], best[1])

    inv = models.inversion
    watch(inv.generator, "G-1024 render", lambda: inversion.render(inv, inputs["w_src"], PSI))
    watch(inv.encoder, "e4e", lambda: inversion.encode(inv, inputs["crop"]))
    return peaks


def prepare_inputs() -> dict[str, Any]:
    """The two photos, the aligned source crop and both W+ codes (float32, CPU) from the loaded models."""
    from skimage import data

    astronaut = data.astronaut()
    driving = np.ascontiguousarray(astronaut[20:500, ::-1][:, 16:496])
    src = r.invert_photo(astronaut)
    drv = r.invert_photo(driving)
    return {
        "source": astronaut,
        "driving": driving,
        "crop": preprocess_aligned(src.aligned.image).unsqueeze(0),
        "w_src": src.wplus.clone(),
        "w_drv": drv.wplus.clone(),
    }


def compare(ref: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> dict[str, float]:
    """max |Δ| per output; images also clamped to [-1, 1] (what is shown) and the count of non-finite values."""
    facts: dict[str, float] = {"nonfinite": 0.0}
    for name, a in ref.items():
        b = out[name].float()
        a = a.float()
        facts["nonfinite"] += float((~torch.isfinite(b)).sum())
        facts[f"{name}_max"] = float((b - a).abs().max())
        facts[f"{name}_mean"] = float((b - a).abs().mean())
        facts[f"{name}_ref_absmax"] = float(a.abs().max())
        if name == "image":
            facts["image_clamped_max"] = float((b.clamp(-1, 1) - a.clamp(-1, 1)).abs().max())
    return facts


def fmt_ms(entry: dict[str, Any]) -> str:
    return "error" if "error" in entry else f"{entry['seconds'] * 1e3:.1f}"


def report(results: dict[str, dict[str, Any]], device: torch.device, runs: int) -> str:
    lines: list[str] = []
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    lines.append(
        f"fp32 vs fp16, stand-in weights at real size: torch {torch.__version__}, {gpu}, "
        f"cuDNN {torch.backends.cudnn.version()}, median of {runs} runs after 1 warm-up, "
        f"cudnn.benchmark={torch.backends.cudnn.benchmark}\n"
    )
    lines.append("| step | fp32 ms | fp32+TF32 ms | fp16 ms | fp16 speed-up | peak MiB fp32 | peak MiB fp16 |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    base, tf32, half = (results[m] for m in MODES)
    if "load_s" in base:
        lines.append(
            f"| model load (G + e4e + mask net, stand-in build incl.) | {base['load_s'] * 1e3:.0f} | – "
            f"| {half['load_s'] * 1e3:.0f} | – | {base.get('weights_mib', 0):.0f} (weights) "
            f"| {half.get('weights_mib', 0):.0f} (weights) |"
        )
    for key, label in STEPS:
        a, t, h = base["steps"][key], tf32["steps"][key], half["steps"][key]
        speed = f"{a['seconds'] / h['seconds']:.2f}x" if "seconds" in a and "seconds" in h else "–"
        lines.append(
            f"| {label} | {fmt_ms(a)} | {fmt_ms(t)} | {fmt_ms(h)} | {speed} "
            f"| {a.get('peak_mib', 0):.0f} | {h.get('peak_mib', 0):.0f} |"
        )
    lines.append("")
    lines.append("| step | output | max abs fp32 | fp16 max abs diff | fp16 mean abs diff | TF32 max abs diff "
                 "| fp16 non-finite |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for key, label in STEPS:
        a, t, h = base["steps"][key], tf32["steps"][key], half["steps"][key]
        if "out" not in a or "out" not in h:
            lines.append(f"| {label} | {h.get('error') or a.get('error')} | | | | | |")
            continue
        fh = compare(a["out"], h["out"])
        ft = compare(a["out"], t["out"]) if "out" in t else {}
        for name in a["out"]:
            rows = [(name, f"{name}_max")]
            if name == "image":
                rows.append(("image, clamped to [-1, 1]", "image_clamped_max"))
            for shown, field in rows:
                ref_max = fh[f"{name}_ref_absmax"] if field == f"{name}_max" else min(1.0, fh[f"{name}_ref_absmax"])
                mean = f"{fh[f'{name}_mean']:.2e}" if field == f"{name}_max" else ""
                lines.append(
                    f"| {label} | {shown} | {ref_max:.3g} | {fh[field]:.2e} | {mean} "
                    f"| {ft.get(field, float('nan')):.2e} | {int(fh['nonfinite'])} |"
                )
    lines.append("")
    for label, (value, name) in base.get("activation_peaks", {}).items():
        lines.append(f"largest |activation| in fp32, {label}: {value:.4g} at `{name}` (float16 max is 65504)")
    lines.append(f"dtypes: fp32 mode {base['module_dtypes']}; fp16 mode {half['module_dtypes']}")
    for mode in MODES:
        for key, entry in results[mode]["steps"].items():
            if "error" in entry:
                lines.append(f"error in {mode} / {key}: {entry['error']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke run only)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per step (median reported)")
    parser.add_argument("--out", help="also write the markdown report to this file")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN autotune its conv algorithms")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here; run with --device cpu for a smoke run")
    device_policy.force_device(args.device)
    enable_standin(True)
    runs = max(1, args.runs)

    log(f"torch {torch.__version__} on {device}")
    results: dict[str, dict[str, Any]] = {}
    # The fp32 models give the shared inputs, then run true fp32 and fp32 + TF32 (same models);
    # fp16 reloads half-precision models through the policy.
    loaded = load_models("fp32", device)
    inputs = prepare_inputs()
    results["fp32"] = run_mode("fp32", device, inputs, runs, loaded)
    results["fp32"]["activation_peaks"] = activation_peaks(r.get_models(), inputs)
    results["fp32+TF32"] = run_mode("fp32+TF32", device, inputs, runs, {})
    results["fp16"] = run_mode("fp16", device, inputs, runs, load_models("fp16", device))
    text = report(results, device, runs)
    print("\n" + text, flush=True)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
