"""The shared face pipeline: detection with 5 landmarks, 68 landmarks (2DFAN-4), alignment, tracking, paste-back."""

from .align import (
    AlignedFace,
    align_ffhq,
    align_vox,
    map_points,
    paste_back,
    square_crop,
)
from .detect import Face, FaceDetector, detect_largest, get_detector
from .landmarks68 import face_landmarks68
from .pipeline import PreparedFace, prepare_face

__all__ = [
    "AlignedFace",
    "Face",
    "FaceDetector",
    "align_ffhq",
    "align_vox",
    "detect_largest",
    "get_detector",
    "face_landmarks68",
    "map_points",
    "paste_back",
    "PreparedFace",
    "prepare_face",
    "square_crop",
]
