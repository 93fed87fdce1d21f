"""The shared face pipeline: detection with 5 landmarks, alignment, tracking, paste-back."""

from .align import (
    AlignedFace,
    align_ffhq,
    align_vox,
    landmark_box_from_face,
    map_points,
    paste_back,
    square_crop,
)
from .detect import Face, FaceDetector, detect_largest, get_detector
from .pipeline import PreparedFace, prepare_face

__all__ = [
    "AlignedFace",
    "Face",
    "FaceDetector",
    "align_ffhq",
    "align_vox",
    "detect_largest",
    "get_detector",
    "landmark_box_from_face",
    "map_points",
    "paste_back",
    "PreparedFace",
    "prepare_face",
    "square_crop",
]
