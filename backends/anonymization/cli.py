"""Command line: ``python -m backends.anonymization IN_DIR OUT_DIR`` anonymises a folder, resumably, with a
CSV report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import FaceLabError
from ..jobs import cli as jobs_cli
from .folder import anonymize_folder
from .optimisation import STEPS, VARIANTS

# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backends.anonymization",
        description="Anonymise every face photo of a folder with FALCO (resumable; writes OUT_DIR/report.csv).",
    )
    parser.add_argument("in_dir", help="folder of photos (read only; searched recursively)")
    parser.add_argument("out_dir", help="folder for the anonymised photos and report.csv")
    parser.add_argument("--margin", type=float, default=0.0, help="identity margin m (default 0)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"optimisation steps (default {STEPS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=1, help="start from one of the k nearest fakes (default 1)")
    parser.add_argument("--variant", choices=VARIANTS, default="official",
                        help="official: replicate FALCO's range/precision quirks; corrected: consistent ranges")
    parser.add_argument("--aligned", action="store_true", help="photos are FFHQ-aligned crops (skip detection)")
    parser.add_argument("--pool-size", type=int, default=None, help="fake pool size (default: per device)")
    parser.add_argument("--stand-in-weights", action="store_true",
                        help="deterministic random weights instead of checkpoints (outputs are not results)")
    jobs_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    run = jobs_cli.run_options(args)
    if args.stand_in_weights:
        from ..standin import enable_standin

        enable_standin(True)

    def progress(fraction: float, desc: str) -> None:
        print(f"\r{fraction * 100:5.1f}%  {desc[:70]:<70}", end="", file=sys.stderr)

    try:
        report = anonymize_folder(
            args.in_dir, args.out_dir, progress=progress if run.ray is None else None, run=run, manifest=True,
            on_progress=jobs_cli.print_progress if run.ray is not None else None,
            margin=args.margin, steps=args.steps, seed=args.seed, candidates=args.candidates,
            variant=args.variant, already_aligned=args.aligned, pool_size=args.pool_size,
        )
    except FaceLabError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    if report.job is not None:
        print(report.job.table(), file=sys.stderr)
    print(f"{report.succeeded} anonymised, {report.failed} failed, {report.skipped} already done; "
          f"report: {report.report_path}")
    if report.standin:
        print("note: stand-in weights were used: the images are not results of FALCO.", file=sys.stderr)
    return 0


