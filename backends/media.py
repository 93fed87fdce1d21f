"""The input policy for images and videos, in one place.

Every tab reads uploads through :func:`load_image` and :func:`read_video`, so the
same rules apply everywhere: EXIF orientation applied, every pixel mode turned
into 8-bit RGB, the long side capped with a notice, decompression bombs and
truncated files refused with a clear message. Videos are read with PyAV and
capped in duration and frame count; results are written as browser-playable
H.264 MP4.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, VideoError, scrub_paths
from .results import results_dir, results_root  # noqa: F401 - re-exported: tabs import them from here

MAX_SIDE = 1280  # long side of any image the pipeline works on
MAX_PIXELS = 40_000_000  # anything larger is refused before decoding (decompression-bomb guard)
MAX_FILE_BYTES = 25 * 1024 * 1024  # matches the UI's upload limit
MAX_VIDEO_BYTES = 100 * 1024 * 1024
MAX_VIDEO_SECONDS = 10.0
MAX_VIDEO_FRAMES = 250
VIDEO_MAX_SIDE = 720

ImageSource = str | Path | bytes | Image.Image | np.ndarray


@dataclass
class LoadedImage:
    """An upload after the input policy: 8-bit RGB, upright, at most MAX_SIDE on its long side."""

    image: Image.Image
    notices: list[str] = field(default_factory=list)

    @property
    def array(self) -> np.ndarray:
        return np.asarray(self.image)


def load_image(source: ImageSource, *, max_side: int = MAX_SIDE, what: str = "image") -> LoadedImage:
    """Apply the input policy to a path, bytes, PIL image or array; raises :class:`InputError`."""
    if source is None:
        raise InputError(f"Please upload a {what}.")
    if isinstance(source, np.ndarray):
        image = _from_array(source, what)
    elif isinstance(source, Image.Image):
        image = source
    else:
        image = _open(source, what)
    notices: list[str] = []
    image = ImageOps.exif_transpose(image) or image
    image = to_rgb(image)
    if max(image.size) > max_side:
        w, h = image.size
        scale = max_side / max(w, h)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        notices.append(f"The {what} was {w}×{h} px; it was scaled down to {image.width}×{image.height} px.")
    return LoadedImage(image=image, notices=notices)


def _open(source: str | Path | bytes, what: str) -> Image.Image:
    if isinstance(source, bytes):
        size, stream = len(source), io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"The {what} file could not be found.")
        size, stream = path.stat().st_size, path
    if size == 0:
        raise InputError(f"The {what} file is empty.")
    if size > MAX_FILE_BYTES:
        raise InputError(f"The {what} file is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB.")
    try:
        with warnings.catch_warnings():
            # PIL warns above ~89 Mpx and refuses above ~179 Mpx at open; our own, lower limit is
            # checked on the header right after, before any pixel is decoded, so the message can
            # give the size.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
            if image.width * image.height > MAX_PIXELS:
                raise InputError(
                    f"The {what} is {image.width}×{image.height} px, too large to process safely "
                    f"(limit {MAX_PIXELS // 1_000_000} megapixels)."
                )
            image.load()
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"This file is not an image Face Lab can read (try a JPEG or PNG {what}).") from None
    except Image.DecompressionBombError as exc:
        # Only PIL's hard limit (~179 Mpx) lands here; its message gives the pixel count, not the sides.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "far too many pixels"
        raise InputError(
            f"The {what} has {size}, too large to process safely (limit {MAX_PIXELS // 1_000_000} megapixels)."
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(
            f"The {what} file is damaged or truncated and cannot be read ({_reason(exc)})."
        ) from None
    return image


def _from_array(array: np.ndarray, what: str) -> Image.Image:
    if array.size == 0 or array.ndim not in (2, 3):
        raise InputError(f"The {what} is empty or not an image.")
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        raise InputError(f"The {what} has {array.shape[2]} channels; expected 1, 3 or 4.")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise InputError(
            f"The {what} is {array.shape[1]}×{array.shape[0]} px, too large to process safely "
            f"(limit {MAX_PIXELS // 1_000_000} megapixels)."
        )
    if array.dtype != np.uint8:
        array = _to_uint8(array.astype(np.float64))
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return Image.fromarray(array)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale any numeric range to 0..255 (16-bit and float images)."""
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    elif lo >= 0.0 and hi <= 255.0:
        lo, hi = 0.0, 255.0
    elif lo >= 0.0 and hi <= 65535.0:
        lo, hi = 0.0, 65535.0
    scaled = (np.nan_to_num(values, nan=lo) - lo) / max(hi - lo, 1e-12)
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode; transparency is composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image, dtype=np.float64))).convert("RGB")
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


@dataclass
class VideoFrames:
    """Decoded frames (RGB uint8) of an upload, after the video policy."""

    frames: list[np.ndarray]
    fps: float
    notices: list[str] = field(default_factory=list)
    duration: float = 0.0

    def __len__(self) -> int:
        return len(self.frames)


def read_video(
    path: str | Path | None,
    *,
    max_seconds: float = MAX_VIDEO_SECONDS,
    max_frames: int = MAX_VIDEO_FRAMES,
    max_side: int = VIDEO_MAX_SIDE,
) -> VideoFrames:
    """Decode a video upload (mp4/webm/mov/...), capped in length and size; raises :class:`VideoError`."""
    import av

    if path is None:
        raise VideoError("Please upload a video.")
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise VideoError("The video file is empty or missing.")
    if path.stat().st_size > MAX_VIDEO_BYTES:
        raise VideoError(f"The video is larger than {MAX_VIDEO_BYTES // 2**20} MB; please trim it.")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"This file is not a video Face Lab can read ({_reason(exc)}).") from None
    notices: list[str] = []
    frames: list[np.ndarray] = []
    with container:
        if _is_still_image(container):
            raise VideoError(STILL_IMAGE_MESSAGE)
        if not container.streams.video:
            if container.streams.audio:
                raise VideoError("This file is an audio-only file: it has no video track.")
            raise VideoError("The video has no frames.")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        limit = min(max_frames, max(1, int(round(max_seconds * fps))))
        truncated = False
        try:
            for frame in container.decode(stream):
                if len(frames) >= limit:
                    truncated = True
                    break
                frames.append(_frame_rgb(frame, max_side))
        except av.error.FFmpegError as exc:
            if not frames:
                raise VideoError(f"The video is damaged and no frame could be decoded ({_reason(exc)}).") from None
            notices.append(f"The video is damaged after frame {len(frames)}; the frames before it were used.")
    if not frames:
        raise VideoError("The video has no frames.")
    if truncated:
        notices.append(
            f"Only the first {len(frames)} frames ({len(frames) / fps:.1f} s) were used; "
            f"the limit is {max_seconds:g} s or {max_frames} frames."
        )
    return VideoFrames(frames=frames, fps=fps, notices=notices, duration=len(frames) / fps)


STILL_IMAGE_MESSAGE = (
    "This file is a still image, not a video. Upload a video (mp4, webm or mov), "
    "or use the photo input for a single picture."
)


def _is_still_image(container) -> bool:
    """FFmpeg opens pictures as one-frame "videos" (image2, png_pipe, webp_pipe...): tell them apart."""
    name = container.format.name
    if name == "image2" or name.endswith("_pipe"):
        return True
    if name == "gif" and container.streams.video:
        return container.streams.video[0].frames <= 1  # an animated GIF is a video
    return False


def _frame_rgb(frame, max_side: int) -> np.ndarray:
    w, h = frame.width, frame.height
    if max(w, h) > max_side:
        scale = max_side / max(w, h)
        # Even sizes keep every later encoder happy.
        w, h = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
        return frame.to_ndarray(format="rgb24", width=w, height=h)
    return frame.to_ndarray(format="rgb24")


def _reason(exc: BaseException) -> str:
    """A decoder's own words for a failure, without the file's server-side path.

    PyAV's errors carry the path as ``filename`` and in ``str(exc)``; ``strerror`` is the reason alone.
    """
    text = getattr(exc, "strerror", None) or str(exc)
    lines = scrub_paths(text).strip().splitlines()
    return lines[0].rstrip(" :") if lines else type(exc).__name__


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = 25.0) -> Path:
    """Write RGB uint8 frames as an H.264 MP4 that browsers play (yuv420p, even sizes)."""
    import av

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = None
        for frame in frames:
            frame = _even(np.ascontiguousarray(frame, dtype=np.uint8))
            if stream is None:
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height = frame.shape[1], frame.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "20", "preset": "veryfast"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise VideoError("There are no frames to write.")
        for packet in stream.encode():
            container.mux(packet)
    return path


def _even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]


def side_by_side(images: Sequence[np.ndarray], height: int = 256) -> np.ndarray:
    """Concatenate RGB frames horizontally at a common height (for comparison videos)."""
    resized = []
    for img in images:
        pil = Image.fromarray(img)
        w = max(2, round(pil.width * height / pil.height))
        resized.append(np.asarray(pil.resize((w, height), Image.Resampling.BILINEAR)))
    return np.concatenate(resized, axis=1)
