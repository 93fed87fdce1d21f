"""Bad and odd media files for tests, made with PyAV so no sample file needs to be shipped."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def audio_only(path: Path) -> Path:
    """An MP4-family container (.m4a or .mp4) holding a single AAC track and no video."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def zero_frame_video(path: Path) -> Path:
    """An MP4 with an H.264 stream whose header is written but that holds no frame."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return path


def corrupt_video(path: Path) -> Path:
    """A file that starts like an MP4 and then holds nothing decodable."""
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    return path


def pixel_bomb(path: Path, width: int, height: int) -> Path:
    """A 1-bit PNG of huge pixel size but a tiny file: decoding it would take width×height bytes or more."""
    from PIL import Image

    Image.new("1", (width, height)).save(path)
    return path


def truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in half: its header opens, its pixels do not decode."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def upload_path(root: Path, name: str) -> Path:
    """Where gradio would keep an upload: a long hashed folder under the server's upload cache."""
    folder = root / "gradio" / "3f9c1e0b7a6d5c4b3a29180f7e6d5c4b3a291807"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def still_image(path: Path) -> Path:
    """A picture in the format its suffix names (.jpg, .png, .webp, .gif): FFmpeg opens it as one frame."""
    from PIL import Image

    fmt = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "GIF"}[path.suffix]
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(path, fmt)
    return path
