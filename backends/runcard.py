"""Run cards: everything needed to re-run one result and check that it comes out the same.

A card is a JSON-ready dict: the method, engine and every setting; the seeds; each input's file name and
sha256; each checkpoint's registry key, file and sha256 (or ``"stand-in"``); package versions; device,
dtype and thread count; timings; and each output's size and the sha256 of its RGB pixels (so a PNG
encoder's choices do not matter; for a video, of every decoded frame). ``replay`` says which function
re-runs it: ``module:function`` with the inputs passed in order and the settings as keywords, and which
attribute of its result is the output (an image, or the path of a video).
``python -m backends.replay CARD [INPUTS...]`` does that (:mod:`backends.replay`).

The weight digests come from the registry or the lock file (what the weight manager already checked);
a local file with neither is hashed once per process.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .device import get_device, get_dtype
from .standin import standin_enabled

CARD_VERSION = 1
CARD_NAME = "run_card.json"
PACKAGES = ("torch", "numpy", "pillow", "gradio", "open_clip_torch", "opencv-python-headless", "safetensors",
            "scipy")


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (``"not installed"`` when absent), plus Python's."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    if "torch" in out:  # the build tag (+cu130, +cpu) matters for bit-identity
        out["torch"] = torch.__version__
        out["cuda"] = torch.version.cuda or "none"
    return out


def pixels_sha256(image: Image.Image | np.ndarray) -> str:
    """sha256 of an image's RGB pixels with its size (independent of the file format)."""
    arr = np.ascontiguousarray(np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image))
    digest = hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def video_frames(path: str | Path) -> list[np.ndarray]:
    """Every decoded RGB frame of a video Face Lab wrote (at its own size)."""
    from .media import read_video

    return list(read_video(path, max_side=1 << 14).frames)


def frames_sha256(frames: Sequence[np.ndarray]) -> str:
    """sha256 over the pixels of every frame, in order (what a video output's card records)."""
    digest = hashlib.sha256(f"{len(frames)} frames|".encode())
    for frame in frames:
        digest.update(pixels_sha256(frame).encode())
    return digest.hexdigest()


def output_record(value: Image.Image | str | Path) -> dict[str, Any]:
    """One output as the card records it: an image's size and pixel digest, or a video's frame count,
    frame size and the digest of its decoded frames (the same decoder reads it back on replay)."""
    if isinstance(value, Image.Image):
        return {"size": list(value.size), "pixels_sha256": pixels_sha256(value)}
    frames = video_frames(value)
    size = [int(frames[0].shape[1]), int(frames[0].shape[0])] if frames else [0, 0]
    return {"kind": "video", "frames": len(frames), "size": size, "pixels_sha256": frames_sha256(frames)}


def input_record(source: Any) -> dict[str, Any]:
    """What identifies one input: its file name and the sha256 of its bytes, or of its pixels."""
    if source is None:
        return {"kind": "none"}
    if isinstance(source, (str, Path)) and Path(source).is_file():
        path = Path(source)
        return {"kind": "file", "name": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if isinstance(source, bytes):
        return {"kind": "bytes", "sha256": hashlib.sha256(source).hexdigest()}
    if isinstance(source, (Image.Image, np.ndarray)):
        return {"kind": "pixels", "sha256": pixels_sha256(source)}
    return {"kind": type(source).__name__}


_HASHED: dict[tuple[str, int, float], str] = {}


def weight_record(key: str, standin: bool) -> dict[str, Any] | str:
    """A checkpoint as the card names it: ``"stand-in"``, or its file and sha256 (and where the digest is from)."""
    if standin:
        return "stand-in"
    from .weights import find_local, get_entry, known_sha256, sha256_of

    entry = get_entry(key)
    path = find_local(key)
    if path is None:
        return {"file": entry.filename, "sha256": None, "from": "not on disk"}
    sha, origin = known_sha256(key, path)
    if sha is None:
        stat = path.stat()
        memo = (str(path), stat.st_size, stat.st_mtime)
        if memo not in _HASHED:
            _HASHED[memo] = sha256_of(path)
        sha, origin = _HASHED[memo], "computed"
    return {"file": entry.filename, "sha256": sha, "from": origin}


DETECTORS = ("retinaface_resnet50", "yunet")  # face detectors always run on their real weights


def detector_key() -> str:
    """The registry key of the face detector this process uses (``auto``: RetinaFace when local, else YuNet)."""
    from .weights import find_local

    return "retinaface_resnet50" if find_local("retinaface_resnet50") is not None else "yunet"


def make_card(*, method: str, engine: str, replay: str, inputs: Mapping[str, Any], settings: Mapping[str, Any],
              seeds: Mapping[str, Any], weights: Sequence[str], standin: bool, timings: Mapping[str, float],
              outputs: Mapping[str, Image.Image | Path], output_attr: Mapping[str, str]) -> dict[str, Any]:
    """One result's run card (see the module docstring). ``inputs`` are in the replay function's order."""
    device = get_device()
    return {
        "card_version": CARD_VERSION,
        "method": method,
        "engine": engine,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "replay": {"function": replay, "inputs": list(inputs), "outputs": dict(output_attr)},
        "inputs": {name: input_record(src) for name, src in inputs.items()},
        "settings": dict(settings),
        "seeds": dict(seeds),
        "weights": {key: weight_record(key, standin and key not in DETECTORS)
                    for key in dict.fromkeys([*weights, detector_key()])},
        "standin": bool(standin or standin_enabled()),
        "packages": package_versions(),
        "platform": {"system": platform.platform(), "machine": platform.machine()},
        "device": str(device),
        "dtype": str(get_dtype(device)).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "timings": {k: round(float(v), 3) for k, v in timings.items()},
        "outputs": {name: output_record(value) for name, value in outputs.items()},
    }


def write_card(card: Mapping[str, Any], folder: Path, files: Mapping[str, str] | None = None) -> Path:
    """Write ``card`` as ``run_card.json`` in ``folder``; ``files`` names each output's file there."""
    data = json.loads(json.dumps(card))  # a copy, JSON-clean
    for name, filename in (files or {}).items():
        data["outputs"].setdefault(name, {})["file"] = filename
    path = Path(folder) / CARD_NAME
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def read_card(path: str | Path) -> dict[str, Any]:
    """A card written by :func:`write_card`; raises ``InputError`` when it is not one."""
    from .errors import InputError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"Not a readable run card: {exc}") from None
    if not isinstance(data, dict) or data.get("card_version") != CARD_VERSION or "replay" not in data:
        raise InputError("Not a Face Lab run card (no card_version 1 / replay entry).")
    return data
