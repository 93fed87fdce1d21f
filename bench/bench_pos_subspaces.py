"""Cost of the PoS-subspaces tab: vocabulary encoding, the decomposition, and one generation.

Run from the repository root:
    .venv/bin/python bench/bench_pos_subspaces.py [--words 512] [--steps 1] [--no-generation] [--parts t2i]

Rows:
* CLIP ViT-B/32 joint space (stand-in weights, real size): build time, word-encoding throughput with the
  context cut to the longest word of each batch (what the tab does) and with the full 77 tokens;
* the decomposition (both geometries) on synthetic unit vectors at the full vocabulary's size
  (112 219 / 18 021 / 7 295 / 3 910 words and a 52-word theme) in 512 and 1024 dimensions;
* SD-Turbo (stand-in weights at the real size, 1.3 G parameters): build time, word-encoding throughput of its
  text encoder, and one request: the prompt's states, the theme removed, both 512-px images from one seed,
  decoded by the full VAE and by TAESD (the CPU default).
Stand-in weights cost what the real ones do; the numbers say nothing about image quality.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from _common import memory_rows, print_table, run_timed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backends import pos_subspaces as ps  # noqa: E402 (needs the sys.path line above)
from backends.networks.pos_subspaces import normalise, prepare  # noqa: E402
from backends.networks.text_to_image import (  # noqa: E402
    SD_TURBO,
    ClipBpeTokenizer,
    load_tiny_autoencoder,
    pipeline_from_components,
    standin_checkpoint_sd_turbo,
    standin_checkpoint_taesd,
    use_tiny_decoder,  # noqa: E402
)
from backends.standin import enable_standin  # noqa: E402

DEVICE = torch.device(os.environ.get("FACELAB_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))
FULL_SIZES = {"N": 112_219, "A": 18_021, "V": 7_295, "AV": 3_910, "theme": 52}


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    return run_timed(fn, DEVICE)


def sample_words(n: int) -> list[str]:
    vocab = ps.vocabulary()
    per = max(1, n // 4)
    return [w for c in ("N", "A", "V", "AV") for w in ps.evenly_spaced(vocab[c], per)]


def bench_joint(words: list[str]) -> list[tuple[str, str]]:
    encoder, t_build = timed(lambda: ps._joint_encoder(True, str(DEVICE)))
    _, t_cut = timed(lambda: encoder.encode(words))
    tokenizer = ClipBpeTokenizer()
    subset = words[: min(len(words), 256)]

    def full_context() -> None:
        with torch.no_grad():
            for i in range(0, len(subset), 128):
                encoder.clip.encode_text(tokenizer(subset[i:i + 128])[0].to(DEVICE))

    _, t_full = timed(full_context)
    return [
        ("CLIP ViT-B/32 stand-in build + strict load", f"{t_build:.1f} s"),
        (f"joint space: encode {len(words)} words (cut context)", f"{len(words) / t_cut:.0f} words/s"),
        (f"joint space: encode {len(subset)} words (full 77 tokens)", f"{len(subset) / t_full:.0f} words/s"),
        ("joint space: full vocabulary (141 445 words), estimated", f"{141_445 / (len(words) / t_cut) / 60:.1f} min"),
    ]


def bench_decomposition() -> list[tuple[str, str]]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    for dim in (512, 1024):
        data = {c: normalise(torch.randn(n, dim, generator=gen) + 2.0) for c, n in FULL_SIZES.items()}
        for geometry in ("euclidean", "tangent"):
            prepared, t_prep = timed(lambda data=data, geometry=geometry: prepare(data, tuple(data), geometry))
            _, t_first = timed(lambda prepared=prepared: prepared.solve(0.5))
            _, t_again = timed(lambda prepared=prepared: prepared.solve(0.3))
            rows.append((f"decomposition, {geometry}, d={dim}, 141 497 vectors, 5 categories: "
                         "means + covariances", f"{t_prep:.2f} s"))
            # The first LAPACK call of a process also starts its thread pool; "another λ" is what a slider costs.
            rows.append((f"decomposition, {geometry}, d={dim}: solve (5 eigh), first / another λ",
                         f"{t_first:.2f} / {t_again:.2f} s"))
        del data
    return rows


def bench_generation(words: list[str], steps: int, skip: bool) -> list[tuple[str, str]]:
    def build():
        return pipeline_from_components(SD_TURBO, standin_checkpoint_sd_turbo(), DEVICE)

    pipe, t_build = timed(build)
    encoder = ps.ConditioningEncoder(pipe, ClipBpeTokenizer(), "bench", True)
    subset = words[: min(len(words), 128)]
    _, t_enc = timed(lambda: encoder.encode(subset))
    rows = [
        ("SD-Turbo stand-in build + strict load (1.3 G params)", f"{t_build:.1f} s"),
        (f"t2i space: encode {len(subset)} words (ViT-H text encoder)", f"{len(subset) / t_enc:.1f} words/s"),
    ]
    if skip:
        return rows
    model = ps.T2IModel("bench", pipe, encoder, SD_TURBO.size, SD_TURBO.steps, 0.0, True)
    theme = ps.parse_theme("artists")
    per = max(1, len(subset) // 4)
    learned, t_learn = timed(lambda: ps.learn(encoder, theme, 0.5, "tangent", per))
    prompt = "a portrait of a woman in a sunlit garden, painted by Claude Monet"
    (states, removed), t_cond = timed(lambda: ps.conditioning_pair(model, prompt, learned, 8))
    cond = torch.cat([states, removed])
    images, t_full = timed(lambda: ps._run_pipeline(model, cond, None, 0, steps, lambda f, m: None))
    taesd = load_tiny_autoencoder(standin_checkpoint_taesd(), DEVICE)
    use_tiny_decoder(pipe, taesd)
    fast, t_fast = timed(lambda: ps._run_pipeline(model, cond, None, 0, steps, lambda f, m: None))
    rows += [
        (f"learn theme subspace ({per} words/part + 52 artists, tangent)", f"{t_learn:.1f} s"),
        ("prompt states + theme removal", f"{t_cond * 1000:.0f} ms"),
        (f"generate original + theme removed, 512 px, {steps} step(s), full VAE decoder", f"{t_full:.1f} s"),
        (f"generate original + theme removed, 512 px, {steps} step(s), TAESD decoder", f"{t_fast:.1f} s"),
        ("image size (full VAE / TAESD)", f"{images[0].size[0]} / {fast[0].size[0]} px"),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=512, help="words encoded in the joint-space row")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--no-generation", action="store_true", help="skip the SD-Turbo generation rows")
    parser.add_argument("--parts", default="joint,decomposition,t2i", help="comma-separated subset to run")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    enable_standin(True)
    os.environ["FACELAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="facelab_bench_")  # cold: no cached encodings
    words = sample_words(args.words)
    rows = [("device", f"{DEVICE} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")]
    parts = set(args.parts.split(","))
    if "joint" in parts:
        rows += bench_joint(words)
    if "decomposition" in parts:
        rows += bench_decomposition()
    if "t2i" in parts:
        rows += bench_generation(words, args.steps, args.no_generation)
    rows += memory_rows(DEVICE)
    print_table(rows)


if __name__ == "__main__":
    main()
