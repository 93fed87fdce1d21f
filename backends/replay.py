"""Re-run a result from its run card and say whether the output is the same.

    python -m backends.replay run_card.json SOURCE [DRIVING]   [--json report.json]

The inputs are given in the order the card lists them (``replay.inputs``); each is checked against the
card's sha256. Stand-in weights are switched on when the card was made with them. The card's function is
called with its settings, and each output is compared with the card: bit-identical (same pixel sha256),
or else the largest pixel difference (0-255) and the PSNR against the output file beside the card when it
is still there. On another device, dtype or thread count the report says so, since bit-identity is only
promised on the same ones. Exit status: 0 identical, 1 different, 2 could not run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import runcard
from .errors import FaceLabError, InputError


@dataclass
class OutputCheck:
    name: str
    identical: bool
    max_pixel_diff: int | None = None  # None: the card's output file is gone, only the digest was compared
    psnr: float | None = None
    size_matches: bool = True

    def text(self) -> str:
        if self.identical:
            return f"{self.name}: bit-identical"
        if not self.size_matches:
            return f"{self.name}: different size"
        if self.max_pixel_diff is None:
            return f"{self.name}: different (pixel sha256 differs; the card's output file is not beside it)"
        return f"{self.name}: different, largest pixel difference {self.max_pixel_diff} of 255, PSNR {self.psnr:.2f} dB"


@dataclass
class ReplayReport:
    outputs: list[OutputCheck]
    input_mismatches: list[str] = field(default_factory=list)
    environment_changes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def identical(self) -> bool:
        return all(o.identical for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"identical": self.identical, "outputs": [o.__dict__ | {"text": o.text()} for o in self.outputs],
                "input_mismatches": self.input_mismatches, "environment_changes": self.environment_changes,
                "seconds": round(self.seconds, 2)}

    def text(self) -> str:
        lines = [o.text() for o in self.outputs]
        lines += [f"input differs from the card: {m}" for m in self.input_mismatches]
        lines += [f"environment differs: {c}" for c in self.environment_changes]
        lines.append(f"replayed in {self.seconds:.1f} s: {'IDENTICAL' if self.identical else 'DIFFERENT'}")
        return "\n".join(lines)


def _function(spec: str):
    module, _, name = spec.partition(":")
    if not module.startswith("backends.") or not name:
        raise InputError(f"The card names an unknown replay function {spec!r}.")
    return getattr(importlib.import_module(module), name)


def _environment_changes(card: dict[str, Any]) -> list[str]:
    import torch

    from .device import get_device, get_dtype

    now = {"device": str(get_device()), "dtype": str(get_dtype()).replace("torch.", ""),
           "threads": torch.get_num_threads()}
    changes = [f"{k}: card {card.get(k)!r}, now {v!r}" for k, v in now.items() if card.get(k) != v]
    versions = runcard.package_versions(tuple(k for k in card.get("packages", {}) if k not in ("python", "cuda")))
    changes += [f"{k} {card['packages'][k]} -> {v}" for k, v in versions.items()
                if k in card.get("packages", {}) and card["packages"][k] != v]
    return changes


def compare(name: str, produced: Image.Image | str | Path, entry: dict[str, Any], folder: Path) -> OutputCheck:
    """One output (an image, or a video file) against the card's record (and its file beside the card)."""
    if not isinstance(produced, Image.Image):
        return compare_video(name, Path(produced), entry, folder)
    identical = runcard.pixels_sha256(produced) == entry.get("pixels_sha256")
    if identical:
        return OutputCheck(name, True, 0, math.inf)
    stored = folder / entry["file"] if entry.get("file") else None
    if stored is None or not stored.is_file():
        return OutputCheck(name, False, size_matches=list(produced.size) == entry.get("size"))
    a = np.asarray(produced.convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(stored).convert("RGB"), dtype=np.int16)
    if a.shape != b.shape:
        return OutputCheck(name, False, size_matches=False)
    diff = np.abs(a - b)
    mse = float((diff.astype(np.float64) ** 2).mean())
    return OutputCheck(name, int(diff.max()) == 0, int(diff.max()),
                       math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse))


def compare_video(name: str, produced: Path, entry: dict[str, Any], folder: Path) -> OutputCheck:
    """A video output: the digest of its decoded frames, else the largest difference to the card's video."""
    frames = runcard.video_frames(produced)
    if runcard.frames_sha256(frames) == entry.get("pixels_sha256"):
        return OutputCheck(name, True, 0, math.inf)
    stored = folder / entry["file"] if entry.get("file") else None
    if stored is None or not stored.is_file():
        size = [int(frames[0].shape[1]), int(frames[0].shape[0])] if frames else [0, 0]
        return OutputCheck(name, False, size_matches=size == entry.get("size") and len(frames) == entry.get("frames"))
    before = runcard.video_frames(stored)
    if len(before) != len(frames) or any(a.shape != b.shape for a, b in zip(frames, before, strict=True)):
        return OutputCheck(name, False, size_matches=False)
    largest, squares, count = 0, 0.0, 0
    for a, b in zip(frames, before, strict=True):
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        largest = max(largest, int(diff.max()))
        squares += float((diff.astype(np.float64) ** 2).sum())
        count += diff.size
    mse = squares / max(1, count)
    return OutputCheck(name, largest == 0, largest, math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse))


def replay(card_path: str | Path, inputs: Sequence[str | Path]) -> ReplayReport:
    """Re-run the card's result with ``inputs`` and compare every output."""
    from .standin import enable_standin

    card = runcard.read_card(card_path)
    names = card["replay"]["inputs"]
    if len(inputs) != len(names):
        raise InputError(f"This card needs {len(names)} input(s) ({', '.join(names)}), got {len(inputs)}.")
    mismatches = []
    for name, path in zip(names, inputs, strict=True):
        want = card["inputs"].get(name, {}).get("sha256")
        got = runcard.input_record(str(path)).get("sha256")
        if want and got != want:
            mismatches.append(f"{name} ({Path(path).name}: sha256 {str(got)[:12]}..., card {want[:12]}...)")
    if card.get("standin"):
        enable_standin(True)
    changes = _environment_changes(card)
    start = time.perf_counter()
    result = _function(card["replay"]["function"])(*[str(p) for p in inputs], **card["settings"])
    seconds = time.perf_counter() - start
    folder = Path(card_path).resolve().parent
    checks = [compare(name, getattr(result, attr), card["outputs"][name], folder)
              for name, attr in card["replay"]["outputs"].items()]
    return ReplayReport(checks, mismatches, changes, seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("card", help="run_card.json written beside a result")
    parser.add_argument("inputs", nargs="*", help="the input files, in the card's order")
    parser.add_argument("--json", dest="json_out", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    try:
        report = replay(args.card, args.inputs)
    except FaceLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return 0 if report.identical else 1


if __name__ == "__main__":
    sys.exit(main())
