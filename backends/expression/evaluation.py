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
from ..jobs import FolderJob, Item, JobReport, Outcome, RunOptions, run_job
from ..networks.dfer_clip import (
    CLASSES_BY_DATASET,
    OFFICIAL_CHECKPOINT_ALLOW,
    DferClip,
    load_dfer_clip_checkpoint,
)
from ..standin import enable_standin, standin_enabled
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


def predict_record(record: AnnotationRecord, frames_root: str | Path | None, predict: Predictor) -> np.ndarray:
    """Class scores of one annotated clip: its frames sampled as officially, through ``predict``."""
    clip = load_frame_folder_clip(frames_dir(record.video_dir, frames_root), record.num_frames)
    return np.asarray(torch.as_tensor(predict(clip[None])).detach().cpu(), dtype=np.float64).reshape(-1)


def check_labels(records: Sequence[AnnotationRecord], num_classes: int) -> None:
    for record in records:
        if not 0 <= record.label < num_classes:
            raise InputError(f"{record.video_dir}: label {record.label + 1} is outside 1..{num_classes}.")


def scores_to_result(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> EvaluationResult:
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for label, pred in zip(labels, preds, strict=True):
        confusion[label, pred] += 1
    uar, war = uar_war(labels, preds, num_classes)
    return EvaluationResult(uar, war, len(labels), confusion)


def evaluate(records: Sequence[AnnotationRecord], frames_root: str | Path | None, predict: Predictor,
             num_classes: int, progress: bool = False) -> EvaluationResult:
    """UAR/WAR of ``predict`` ((1, 16, 3, 224, 224) clip -> class scores) over the records, in this process."""
    check_labels(records, num_classes)
    labels, preds = [], []
    for k, record in enumerate(records, start=1):
        labels.append(record.label)
        preds.append(int(predict_record(record, frames_root, predict).argmax()))
        if progress and (k % 50 == 0 or k == len(records)):
            print(f"{k}/{len(records)}", file=sys.stderr)
    return scores_to_result(labels, preds, num_classes)


# --------------------------------------------------------------------------- the same, as a resumable job


class EvaluationJob(FolderJob):
    """DFER-CLIP over an annotation list, one clip per item (:func:`predict_record`), resumable:
    ``predictions.csv`` holds each clip's label, prediction and scores, or why it failed."""

    name = "dfer_evaluate"
    fields = ("video_dir", "label", "prediction", "status", "scores", "seconds", "message")
    key_field = "video_dir"
    report_name = "predictions.csv"

    def __init__(self, checkpoint: str | None, dataset: str, frames_root: str | Path | None):
        self.checkpoint, self.dataset = checkpoint, dataset
        self.frames_root = None if frames_root is None else str(frames_root)
        self.standin = standin_enabled()

    @property
    def options(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "dataset": self.dataset, "frames_root": self.frames_root,
                "standin": self.standin}

    def setup(self) -> Predictor:
        if self.standin:
            enable_standin(True)
        return _model_predictor(_load_model_for_evaluation(self.checkpoint, self.dataset))

    def failure_row(self, item: Item, status: str, message: str, seconds: float = 0.0) -> dict[str, str]:
        row = super().failure_row(item, status, message, seconds)
        row["label"] = str(item.payload.label + 1)
        return row

    def run(self, state: Predictor, item: Item, progress: Any = None) -> Outcome:
        record: AnnotationRecord = item.payload
        scores = predict_record(record, self.frames_root, state)
        row = self.blank_row(item.key)
        row.update(label=str(record.label + 1), prediction=str(int(scores.argmax()) + 1), status="ok",
                   scores=" ".join(f"{v:.6g}" for v in scores))
        return Outcome(row)


@dataclass
class JobEvaluation:
    """UAR/WAR over the clips that could be read, and the run's report (failures listed there)."""

    result: EvaluationResult | None
    report: JobReport


def evaluate_job(records: Sequence[AnnotationRecord], job: EvaluationJob, out_dir: str | Path,
                 run: RunOptions | None = None, on_progress: Any = None) -> JobEvaluation:
    """:func:`evaluate` as a resumable job (in this process or on Ray): same predictions, same UAR/WAR."""
    num_classes = len(CLASSES_BY_DATASET[job.dataset])
    check_labels(records, num_classes)
    items = [Item(r.video_dir, r) for r in records]
    report = run_job(job, items, out_dir, run, on_progress=on_progress)
    done = [row for row in report.rows if row["status"] == "ok"]
    result = None
    if done:
        result = scores_to_result([int(r["label"]) - 1 for r in done], [int(r["prediction"]) - 1 for r in done],
                                  num_classes)
    return JobEvaluation(result, report)


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
