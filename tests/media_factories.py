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
