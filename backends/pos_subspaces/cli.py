"""Command line: ``python -m backends.pos_subspaces diagnose|generate ...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import CheckpointError, InputError, MissingWeightsError
from ..networks.pos_subspaces import (
    GEOMETRIES,
)
from ..networks.text_to_image import (
    SD_TURBO_ID,
)
from .encoders import SPACES, joint_encoder
from .generate import generate
from .subspaces import DEFAULT_K, DEFAULT_LAM, category_label, diagnose, learn
from .text_to_image import t2i_model
from .vocabulary import PRESET_THEMES, Theme, default_max_words, parse_theme

# --------------------------------------------------------------------------- CLI

def _theme_from_args(args: argparse.Namespace) -> Theme:
    if args.theme_file:
        return parse_theme(None, Path(args.theme_file).read_text(encoding="utf-8"))
    return parse_theme(args.theme)


def _print_progress(fraction: float, message: str) -> None:
    print(f"\r{message}: {100 * fraction:5.1f}%", end="", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.pos_subspaces", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stand-in", action="store_true", help="stand-in weights (outputs are not results)")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--theme", default="artists", help=f"preset theme: {', '.join(PRESET_THEMES)}")
    common.add_argument("--theme-file", help="your own theme list (one entry a line, or comma separated)")
    common.add_argument("--lam", type=float, default=DEFAULT_LAM)
    common.add_argument("--geometry", choices=GEOMETRIES, default="tangent")
    common.add_argument("--max-words", type=int, default=-1, help="words per category (0: all; default by device)")
    learn_p = sub.add_parser("learn", parents=[common], help="encode the vocabulary and save the subspaces")
    learn_p.add_argument("--space", choices=SPACES, default="joint")
    learn_p.add_argument("--model", default=None, help="text-to-image model id (space t2i)")
    learn_p.add_argument("--out", default="pos_subspaces.safetensors")
    remove_p = sub.add_parser("remove", parents=[common], help="energy and nearest words before/after removal")
    remove_p.add_argument("text")
    remove_p.add_argument("--k", type=int, default=DEFAULT_K)
    gen_p = sub.add_parser("generate", parents=[common], help="original and theme-removed images")
    gen_p.add_argument("prompt")
    gen_p.add_argument("--k", type=int, default=DEFAULT_K)
    gen_p.add_argument("--seed", type=int, default=0)
    gen_p.add_argument("--steps", type=int, default=None)
    gen_p.add_argument("--model", default=None, help=f"diffusers model id or folder (default {SD_TURBO_ID})")
    gen_p.add_argument("--out", default="out/pos_subspaces")
    args = parser.parse_args(argv)
    if args.stand_in:
        from ..standin import enable_standin

        enable_standin(True)
    max_words = None if args.max_words == 0 else args.max_words
    try:
        theme = _theme_from_args(args)
        if args.command == "learn":
            encoder = joint_encoder() if args.space == "joint" else t2i_model(args.model).encoder
            cap = default_max_words(args.space) if max_words == -1 else max_words
            learned = learn(encoder, theme, args.lam, args.geometry, cap, _print_progress)
            path = learned.subspaces.save(args.out)
            print(file=sys.stderr)
            for c in learned.subspaces.categories:
                top = learned.subspaces.eigenvalues[c][:3].tolist()
                print(f"{category_label(c):>10}: {len(learned.words[c]):6d} words, top eigenvalues "
                      + ", ".join(f"{v:.3e}" for v in top))
            print(f"saved {path}")
        elif args.command == "remove":
            result = diagnose(args.text, theme, args.lam, args.k, args.geometry, max_words, _print_progress)
            print(file=sys.stderr)
            print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        else:
            result = generate(args.prompt, theme, args.lam, args.k, args.geometry, args.seed, args.steps, args.model,
                              max_words, _print_progress)
            print(file=sys.stderr)
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            result.original.save(out / "original.png")
            result.removed.save(out / "theme_removed.png")
            (out / "result.json").write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
            print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
            print(f"images in {out}")
    except (InputError, MissingWeightsError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


