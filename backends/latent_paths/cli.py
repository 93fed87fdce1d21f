"""Command line: ``python -m backends.latent_paths edit|strip|train ...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import FaceLabError
from ..networks.contraclip import (
    DEFAULT_EPS,
    RENDER_MODES,
)
from .traversal import DEFAULT_FRAMES, edit, strip

# --------------------------------------------------------------------------- CLI

def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("photo", nargs="?", help="face photo (omit and give --seed to sample a face)")
    p.add_argument("--seed", type=int, default=None, help="sample a face from this seed (psi 0.7) instead of a photo")
    p.add_argument("--corpus", default="attributes", help="attributes, expressions or trained:<name>")
    p.add_argument("--path", required=True, help="path label, its first sentence, or its number")
    p.add_argument("--eps", type=float, default=DEFAULT_EPS, help="step size along the path")
    p.add_argument("--render", default="stored", choices=RENDER_MODES,
                   help="stored codes (default) or the official double-shift rendering")
    p.add_argument("--paste-back", action="store_true", help="blend the result back into the photo")
    p.add_argument("--stand-in-weights", action="store_true",
                   help="deterministic random weights instead of checkpoints (outputs are not results)")
    p.add_argument("--out", required=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.latent_paths", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_edit = sub.add_parser("edit", help="one edit along a path")
    _add_common(p_edit)
    p_edit.add_argument("--strength", type=float, required=True, help="signed distance along the path")
    p_strip = sub.add_parser("strip", help="frames across a path, as a strip PNG, a GIF or an MP4")
    _add_common(p_strip)
    p_strip.add_argument("--max-strength", type=float, default=6.0)
    p_strip.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    sub.add_parser("train", help="learn new paths from sentence pairs", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        from .training import main as train_main

        return train_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.stand_in_weights:
        from ..standin import enable_standin

        enable_standin(True)
    out = Path(args.out)
    opts = dict(seed=args.seed, corpus=args.corpus, path=args.path, eps=args.eps, render_mode=args.render,
                paste_back=args.paste_back)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if args.command == "edit":
            res = edit(args.photo, strength=args.strength, **opts)
            res.final.save(out if out.suffix else out.with_suffix(".png"))
            info = res.to_dict()
        else:
            res = strip(args.photo, max_strength=args.max_strength, frames=args.frames, **opts)
            suffix = out.suffix.lower()
            if suffix == ".gif":
                out.write_bytes(res.gif.read_bytes())
            elif suffix == ".mp4":
                out.write_bytes(res.mp4.read_bytes())
            else:
                res.strip.save(out if suffix else out.with_suffix(".png"))
            info = res.to_dict()
    except FaceLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=1))
    if info.get("standin"):
        print("note: stand-in weights were used; this is not a result", file=sys.stderr)
    return 0


