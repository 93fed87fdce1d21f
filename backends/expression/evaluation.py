"""Benchmark evaluation on DFEW/MAFW/FERV39k annotation lists: UAR and WAR."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..device import get_device
from ..errors import InputError, VideoError
from ..networks.dfer_clip import (
    CLASSES_BY_DATASET,
    OFFICIAL_CHECKPOINT_ALLOW,
    DferClip,
    load_dfer_clip_checkpoint,
)
from .analysis import CROP_SIZE, sample_indices
from .classifiers import CHECKPOINT_KEYS, STANDIN_NOTICE, crops_to_unit_tensor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


# --------------------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class AnnotationRecord:
    """One line of an official annotation file: folder of face frames, frame count, 0-based label."""

    video_dir: str
    num_frames: int
    label: int


def read_annotations(path: str | Path) -> list[AnnotationRecord]:
    """Parse ``video_dir num_frames label`` lines (label 1-based, as in the official lists)."""
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < 3:
            raise InputError(f"{Path(path).name}, line {number}: expected 'video_dir num_frames label'.")
        try:
            # The folder name may hold spaces: the last two fields are the numbers.
            records.append(AnnotationRecord(" ".join(parts[:-2]), int(parts[-2]), int(parts[-1]) - 1))
        except ValueError:
            raise InputError(f"{Path(path).name}, line {number}: frame count and label must be integers.") from None
    if not records:
        raise InputError(f"{Path(path).name} holds no annotations.")
    return records


def frames_dir(video_dir: str, frames_root: str | Path | None) -> Path:
    """Where a record's frames are: relative paths under ``frames_root``; absolute paths as given,
    else their last component under ``frames_root`` (lists written on another machine)."""
    path = Path(video_dir)
    if frames_root is None:
        return path
    if not path.is_absolute():
        return Path(frames_root) / path
    return path if path.is_dir() else Path(frames_root) / path.name


def load_frame_folder_clip(folder: Path, num_frames: int | None = None) -> torch.Tensor:
    """(16, 3, 224, 224) in [0, 1] from a folder of face frames, as the official test loader builds it.

    Frames are the folder's image files in lexicographic order; the count from the
    annotation decides the sampling, as officially (clamped to the files present).
    """
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise VideoError(f"No frames found in {folder}.")
    n = min(num_frames or len(files), len(files))
    images = []
    for idx in sample_indices(n):
        with Image.open(files[idx]) as im:
            images.append(np.asarray(im.convert("RGB").resize((CROP_SIZE, CROP_SIZE), Image.Resampling.BILINEAR)))
    return crops_to_unit_tensor(np.stack(images))


def uar_war(labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> tuple[float, float]:
    """Unweighted average recall (mean per-class recall over the classes present) and weighted
    average recall (overall accuracy), both in percent."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.size == 0:
        raise InputError("Nothing to evaluate.")
    recalls = [float(np.mean(predictions[labels == c] == c)) for c in range(num_classes) if np.any(labels == c)]
    return 100.0 * float(np.mean(recalls)), 100.0 * float(np.mean(labels == predictions))


@dataclass
class EvaluationResult:
    uar: float
    war: float
    count: int
    confusion: np.ndarray


Predictor = Callable[[torch.Tensor], Any]


def evaluate(records: Sequence[AnnotationRecord], frames_root: str | Path | None, predict: Predictor,
             num_classes: int, progress: bool = False) -> EvaluationResult:
    """UAR/WAR of ``predict`` ((1, 16, 3, 224, 224) clip -> class scores) over the records."""
    labels, preds = [], []
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for k, record in enumerate(records, start=1):
        if not 0 <= record.label < num_classes:
            raise InputError(f"{record.video_dir}: label {record.label + 1} is outside 1..{num_classes}.")
        clip = load_frame_folder_clip(frames_dir(record.video_dir, frames_root), record.num_frames)
        scores = np.asarray(torch.as_tensor(predict(clip[None])).detach().cpu(), dtype=np.float64).reshape(-1)
        labels.append(record.label)
        preds.append(int(scores.argmax()))
        confusion[record.label, preds[-1]] += 1
        if progress and (k % 50 == 0 or k == len(records)):
            print(f"{k}/{len(records)}", file=sys.stderr)
    uar, war = uar_war(labels, preds, num_classes)
    return EvaluationResult(uar, war, len(records), confusion)


def _load_model_for_evaluation(checkpoint: str | None, dataset: str) -> DferClip:
    from ..weights import REGISTRY, load_checkpoint

    key = checkpoint or CHECKPOINT_KEYS[dataset]
    num_classes = len(CLASSES_BY_DATASET[dataset])
    if key in REGISTRY:
        loaded = load_checkpoint(key, allow=OFFICIAL_CHECKPOINT_ALLOW)
        if loaded.standin:
            print(f"warning: {STANDIN_NOTICE}", file=sys.stderr)
        return load_dfer_clip_checkpoint(loaded.obj, num_classes, device=get_device())
    return load_dfer_clip_checkpoint(Path(key), num_classes, device=get_device())


def _model_predictor(model: DferClip) -> Predictor:
    device = model.prompt_learner.ctx.device

    def predict(clip: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(clip.to(device))[0]

    return predict
