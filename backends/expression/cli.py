"""Command line: ``python -m backends.expression evaluate ...`` (UAR/WAR on an annotation list)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import FaceLabError
from ..jobs import cli as jobs_cli
from ..networks.dfer_clip import (
    CLASSES_BY_DATASET,
)
from .analysis import analyze_photo, analyze_video
from .classifiers import DATASETS, MODES
from .evaluation import (
    IMAGE_SUFFIXES,
    EvaluationJob,
    _load_model_for_evaluation,
    _model_predictor,
    evaluate,
    evaluate_job,
    read_annotations,
)

# --------------------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.expression", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="UAR/WAR of a DFER-CLIP checkpoint on an official annotation list")
    ev.add_argument("--annotations", required=True, help="file of 'video_dir num_frames label' lines")
    ev.add_argument("--frames-root", default=None, help="folder the video_dir entries are relative to")
    ev.add_argument("--checkpoint", default=None, help="registry key or .pth path (default: the dataset's key)")
    ev.add_argument("--dataset", choices=DATASETS, default="dfew")
    ev.add_argument("--out", default=None,
                    help="folder for predictions.csv and the manifest: the run becomes resumable (needed with --ray)")
    ev.add_argument("--stand-in-weights", action="store_true",
                    help="deterministic random weights instead of checkpoints (the numbers are not results)")
    jobs_cli.add_arguments(ev)
    pr = sub.add_parser("predict", help="expression probabilities of a video or photo, as JSON")
    pr.add_argument("path")
    pr.add_argument("--mode", choices=MODES, default="auto")
    pr.add_argument("--dataset", choices=DATASETS, default="dfew")
    pr.add_argument("--annotate", action="store_true", help="also write the annotated video (videos only)")
    args = parser.parse_args(argv)
    try:
        if args.command == "evaluate":
            return _evaluate(args)
        path = Path(args.path)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            result = analyze_photo(path, args.mode, args.dataset)
        else:
            result = analyze_video(path, args.mode, args.dataset, annotate=args.annotate)
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    except FaceLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2




def _evaluate(args: argparse.Namespace) -> int:
    if args.stand_in_weights:
        from ..standin import enable_standin

        enable_standin(True)
    run = jobs_cli.run_options(args)
    records = read_annotations(args.annotations)
    if args.out is None:
        if run.ray is not None:
            print("error: --ray needs --out (the folder that keeps the predictions and the manifest).", file=sys.stderr)
            return 2
        model = _load_model_for_evaluation(args.checkpoint, args.dataset)
        result = evaluate(records, args.frames_root, _model_predictor(model),
                          len(CLASSES_BY_DATASET[args.dataset]), progress=True)
        failed = 0
    else:
        job = EvaluationJob(args.checkpoint, args.dataset, args.frames_root)
        done = evaluate_job(records, job, args.out, run, on_progress=jobs_cli.print_progress)
        print(file=sys.stderr)
        print(done.report.table(), file=sys.stderr)
        result, failed = done.result, done.report.failed
        if result is None:
            print(f"error: none of the {len(records)} clips could be read; see {done.report.report_path}",
                  file=sys.stderr)
            return 2
    print(f"videos: {result.count}")
    if failed:
        print(f"failed: {failed} (not counted; see predictions.csv)")
    print(f"UAR: {result.uar:.2f}")
    print(f"WAR: {result.war:.2f}")
    return 0
