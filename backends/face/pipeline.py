"""Photo → input policy → largest face (5 landmarks) → [68 landmarks] → aligned crop, the first step of every face tab.

The FFHQ crop is driven by the detector's 5 landmarks; the VoxCeleb crop by 68 landmarks (2DFAN-4 on the
detector's box, :mod:`backends.face.landmarks68`), as the official HyperReenact preprocessing does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from ..media import ImageSource, load_image
from .align import AlignedFace, align_ffhq, align_vox, square_quad, warp_crop
from .detect import Face, detect_faces, several_faces_notice
from .landmarks68 import face_landmarks68

CROPS = ("ffhq", "vox")


@dataclass
class PreparedFace:
    """A photo after the input policy, its face, and the aligned crop with its transform."""

    photo: Image.Image
    aligned: AlignedFace
    face: Face | None  # None when the photo was taken as already aligned
    notices: list[str] = field(default_factory=list)
    faces_found: int = 1
    landmarks68: np.ndarray | None = None  # [68, 2] photo pixels, for the VoxCeleb crop

    def face_notices(self, what: str) -> list[str]:
        """The notices of the face step alone, worded for ``what`` (callers that cache a face re-word them)."""
        if self.face is None:
            w, h = self.photo.size
            return [] if w == h else [f"The {what} is not square; its centre square was used as the aligned face."]
        return [several_faces_notice(self.faces_found, what)] if self.faces_found > 1 else []

    def overlay(self) -> Image.Image:
        """The photo with the face box, the 5 (and 68) landmarks and the crop outline drawn on it."""
        canvas = self.photo.copy()
        draw = ImageDraw.Draw(canvas)
        width = max(2, round(max(canvas.size) / 300))
        quad = [tuple(p) for p in self.aligned.quad] + [tuple(self.aligned.quad[0])]
        draw.line(quad, fill=(255, 200, 0), width=width)
        if self.face is not None:
            x, y, w, h = self.face.box
            draw.rectangle([x, y, x + w, y + h], outline=(0, 220, 90), width=width)
            r = width * 1.5
            for px, py in self.face.landmarks:
                draw.ellipse([px - r, py - r, px + r, py + r], fill=(255, 40, 40))
        if self.landmarks68 is not None:
            r = max(1.0, width * 0.75)
            for px, py in self.landmarks68:
                draw.ellipse([px - r, py - r, px + r, py + r], fill=(0, 200, 255))
        return canvas


def prepare_face(
    source: ImageSource,
    *,
    size: int = 1024,
    crop: str = "ffhq",
    already_aligned: bool = False,
    engine: str = "auto",
    what: str = "photo",
) -> PreparedFace:
    """Apply the input policy and align the largest face (or take the photo as an aligned crop)."""
    loaded = load_image(source, what=what)
    photo, notices = loaded.image, list(loaded.notices)
    rgb = np.asarray(photo)
    if already_aligned:
        # The whole photo is the crop: a centred square, resized to the working size.
        h, w = rgb.shape[:2]
        side = min(w, h)
        box = ((w - side) / 2.0, (h - side) / 2.0, float(side), float(side))
        prepared = PreparedFace(photo, warp_crop(rgb, square_quad(box, 1.0), size), None, notices, faces_found=0)
    else:
        faces = detect_faces(rgb, engine=engine, what=what)
        face = faces[0]
        if crop == "vox":
            points68 = face_landmarks68(rgb, face)
            prepared = PreparedFace(photo, align_vox(rgb, points68, size), face, notices, faces_found=len(faces),
                                    landmarks68=points68)
        else:
            prepared = PreparedFace(photo, align_ffhq(rgb, face.landmarks, size), face, notices,
                                    faces_found=len(faces))
    prepared.notices = notices + prepared.face_notices(what)
    return prepared
