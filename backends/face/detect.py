"""Face detection with 5 landmarks behind one interface, two engines.

- ``retinaface``: facexlib's RetinaFace ResNet-50 (accurate; the default where its weights are present).
- ``yunet``: OpenCV's YuNet through ``cv2.FaceDetectorYN`` (light and CPU-fast).

Both return :class:`Face` objects whose landmarks are ordered as seen in the
image: left eye, right eye, nose tip, left mouth corner, right mouth corner
("left" meaning the smaller x). Weights always come from the weight manager;
neither library is ever allowed to download on its own.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, MissingWeightsError, NoFaceError
from ..weights import find_local, weights_path

NO_FACE_TIPS = (
    "Tips: use a photo where the face is clearly visible, facing the camera, well lit and not too small "
    "(at least about 80 px across); or tick 'already aligned' if the photo is an aligned face crop."
)


@dataclass
class Face:
    """One detected face: box (x, y, w, h), 5 landmarks in image order, detector score."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2.0, y + h / 2.0


def _ordered_landmarks(points: np.ndarray) -> np.ndarray:
    """Order eyes and mouth corners by x so every engine agrees on 'left' and 'right'."""
    pts = np.asarray(points, dtype=np.float32).reshape(5, 2).copy()
    if pts[0, 0] > pts[1, 0]:
        pts[[0, 1]] = pts[[1, 0]]
    if pts[3, 0] > pts[4, 0]:
        pts[[3, 4]] = pts[[4, 3]]
    return pts


class FaceDetector:
    """Interface: ``detect(rgb uint8 HxWx3) -> list[Face]``, largest face first."""

    name = "base"

    def detect(self, rgb: np.ndarray) -> list[Face]:  # pragma: no cover - interface
        raise NotImplementedError

    @staticmethod
    def _check(rgb: np.ndarray) -> np.ndarray:
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError("Face detection needs an 8-bit RGB image.")
        return np.ascontiguousarray(rgb)


class YuNetDetector(FaceDetector):
    """OpenCV YuNet. One cv2 object per thread: FaceDetectorYN keeps per-call state (input size)."""

    name = "yunet"

    def __init__(self, model_path: str, score_threshold: float = 0.6):
        self.model_path = model_path
        self.score_threshold = score_threshold
        self._local = threading.local()

    def _net(self):
        import cv2

        net = getattr(self._local, "net", None)
        if net is None:
            net = cv2.FaceDetectorYN.create(self.model_path, "", (320, 320), self.score_threshold, 0.3, 5000)
            self._local.net = net
        return net

    def detect(self, rgb: np.ndarray) -> list[Face]:
        import cv2

        rgb = self._check(rgb)
        # YuNet misses large faces in big frames; detect on a copy of at most 640 px and scale back.
        scale = min(1.0, 640.0 / max(rgb.shape[:2]))
        small = rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        net = self._net()
        net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = net.detect(bgr)
        faces = []
        for row in [] if rows is None else rows:
            x, y, w, h = (float(v) / scale for v in row[:4])
            faces.append(Face((x, y, w, h), _ordered_landmarks(row[4:14] / scale), float(row[14])))
        return sorted(faces, key=lambda f: f.area, reverse=True)


class RetinaFaceDetector(FaceDetector):
    """facexlib RetinaFace ResNet-50, weights read safely through the weight manager."""

    name = "retinaface"

    def __init__(self, model_path: str, score_threshold: float = 0.8):
        import torch
        from facexlib.detection.retinaface import RetinaFace

        from ..checkpoints import load_state_dict_strict, safe_load
        from ..device import get_device

        device = get_device()
        state = safe_load(model_path, what="RetinaFace")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        model = RetinaFace(network_name="resnet50", half=False, device=device)
        load_state_dict_strict(model, state, "RetinaFace ResNet-50")
        self.model = model.eval().to(device)
        self.score_threshold = score_threshold
        self._lock = threading.Lock()  # facexlib stores per-call sizes on the module
        self._torch = torch

    def detect(self, rgb: np.ndarray) -> list[Face]:
        import cv2

        rgb = self._check(rgb)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        with self._lock, self._torch.inference_mode():
            rows = self.model.detect_faces(bgr, conf_threshold=self.score_threshold)
        faces = []
        for row in rows:
            x1, y1, x2, y2, score = (float(v) for v in row[:5])
            faces.append(Face((x1, y1, x2 - x1, y2 - y1), _ordered_landmarks(row[5:15]), score))
        return sorted(faces, key=lambda f: f.area, reverse=True)


ENGINES = ("auto", "retinaface", "yunet")


@functools.cache
def get_detector(engine: str = "auto") -> FaceDetector:
    """The detector for ``engine``, built once. ``auto`` prefers RetinaFace when its weights are local."""
    if engine not in ENGINES:
        raise InputError(f"Unknown face detector '{engine}'. Choose one of: {', '.join(ENGINES)}.")
    if engine == "auto":
        engine = "retinaface" if find_local("retinaface_resnet50") is not None else "yunet"
    if engine == "retinaface":
        return RetinaFaceDetector(str(weights_path("retinaface_resnet50")))
    try:
        return YuNetDetector(str(weights_path("yunet")))
    except MissingWeightsError:
        raise
    except Exception as exc:  # cv2 raises cv2.error for unreadable ONNX files
        raise MissingWeightsError(f"The YuNet face detector could not be loaded: {exc}", key="yunet") from exc


def detect_faces(rgb: np.ndarray, engine: str = "auto", what: str = "photo") -> list[Face]:
    """Every face of ``rgb``, largest first; :class:`NoFaceError` with tips if there is none."""
    faces = get_detector(engine).detect(rgb)
    if not faces:
        raise NoFaceError(f"No face was found in the {what}. {NO_FACE_TIPS}")
    return faces


def detect_largest(rgb: np.ndarray, engine: str = "auto", what: str = "photo") -> tuple[Face, list[str]]:
    """The largest face of ``rgb`` and any notices; :class:`NoFaceError` with tips if there is none."""
    faces = detect_faces(rgb, engine, what)
    notices = [several_faces_notice(len(faces), what)] if len(faces) > 1 else []
    return faces[0], notices


def several_faces_notice(count: int, what: str) -> str:
    return f"{count} faces were found in the {what}; the largest one was used."
