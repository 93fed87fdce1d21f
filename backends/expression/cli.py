"""Command line: ``python -m backends.expression evaluate ...`` (UAR/WAR on an annotation list)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import FaceLabError
from ..networks.dfer_clip import (
    CLASSES_BY_DATASET,
)
from .analysis import analyze_photo, analyze_video
from .classifiers import DATASETS, MODES
from .evaluation import IMAGE_SUFFIXES, _load_model_for_evaluation, _model_predictor, evaluate, read_annotations

# --------------------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.expression", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="UAR/WAR of a DFER-CLIP checkpoint on an official annotation list")
    ev.add_argument("--annotations", required=True, help="file of 'video_dir num_frames label' lines")
    ev.add_argument("--frames-root", default=None, help="folder the video_dir entries are relative to")
    ev.add_argument("--checkpoint", default=None, help="registry key or .pth path (default: the dataset's key)")
    ev.add_argument("--dataset", choices=DATASETS, default="dfew")
    pr = sub.add_parser("predict", help="expression probabilities of a video or photo, as JSON")
    pr.add_argument("path")
    pr.add_argument("--mode", choices=MODES, default="auto")
    pr.add_argument("--dataset", choices=DATASETS, default="dfew")
    pr.add_argument("--annotate", action="store_true", help="also write the annotated video (videos only)")
    args = parser.parse_args(argv)
    try:
        if args.command == "evaluate":
            records = read_annotations(args.annotations)
            model = _load_model_for_evaluation(args.checkpoint, args.dataset)
            result = evaluate(records, args.frames_root, _model_predictor(model),
                              len(CLASSES_BY_DATASET[args.dataset]), progress=True)
            print(f"videos: {result.count}")
            print(f"UAR: {result.uar:.2f}")
            print(f"WAR: {result.war:.2f}")
            return 0
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


