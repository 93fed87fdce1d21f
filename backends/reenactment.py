"""Face reenactment: the source keeps its identity and takes the driving face's pose and expression.

The first engine is StyleMask (Bounareli et al., FG 2023). The pipeline, one
visible step at a time:

1. **Align** both faces with the FFHQ recipe (1024 crop) — :func:`backends.face.prepare_face`;
2. **Invert** each crop with e4e (resized to 256) into StyleGAN2 W+ codes [18, 512];
3. **Truncate** the codes toward a mean latent, t + ψ(w − t) with ψ = 0.7, as the
   official repositories do even for inverted codes ("faithful"); ψ = 1 skips it
   ("higher fidelity"). The mean latent is ``G.mean_latent(4096, seed=0)``: the
   official code draws fresh random z at every start, we seed it so results repeat;
4. **Mix** in style space with the mask network (:mod:`backends.networks.stylemask`)
   and decode at 1024 — layers ≥ 12 and every toRGB come from the source;
5. optionally **paste** the result back into the source photo.

Inversions are cached by image content and crop options, so changing the
truncation, paste-back or engine never re-inverts a photo. A driving video is
read with PyAV (capped), its face tracked frame by frame with the landmarks
smoothed over time, and every frame reenacted against the one inversion of
the source.

CLI: ``python -m backends.reenactment --source S --driving D --out O``
(``D`` an image or a video; ``O`` a ``.png`` or ``.mp4``).
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import catalog, inversion
from .device import gpu_task
from .errors import FaceLabError, InputError, NoFaceError
from .face import align_ffhq, get_detector
from .face import paste_back as paste_into_photo
from .face.track import fill_gaps, track_faces
from .inversion import FAITHFUL_PSI, Inversion, InversionModels, invert_photo, psi_for, reconstruction, tensor_to_pil
from .media import ImageSource, read_video, side_by_side, write_video
from .networks.stylemask import MaskNetwork, load_mask_network, stylemask_forward
from .results import results_dir, seal
from .standin import standin_enabled
from .weights import load_checkpoint

ENGINES = ("stylemask", "hyperreenact", "gan_directions")
VIDEO_RESULT_SIZE = 512  # frames are rendered at 1024 and written at this size to keep files small
VIDEO_PANEL_HEIGHT = 384  # height of the side-by-side comparison video
VIDEO_ALIGN_SIZE = 256  # driving frames are aligned straight to e4e's input size

ProgressFn = Callable[[float, str], None]


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ReenactmentModels:
    """The shared inversion models plus StyleMask's mask network."""

    inversion: InversionModels
    mask_net: MaskNetwork

    @property
    def standin(self) -> bool:
        return self.inversion.standin

    @property
    def device(self) -> torch.device:
        return self.inversion.device


@functools.lru_cache(maxsize=1)
def _cached_mask_net(
    standin: bool, device: str, sections: tuple[int, ...], dtype: torch.dtype = torch.float32
) -> tuple[MaskNetwork, bool]:
    m = load_checkpoint("stylemask_1024")
    return load_mask_network(m.obj, list(sections)).to(device=device, dtype=dtype).eval(), m.standin


def get_models() -> ReenactmentModels:
    """G-1024, e4e and the mask network, loaded on first use and kept, all in the inversion models' dtype."""
    inv = inversion.get_models()
    mask_net, mask_standin = _cached_mask_net(
        standin_enabled(), str(inv.device), tuple(inv.generator.style_sections), inv.dtype
    )
    if mask_standin and not inv.standin:  # pragma: no cover - stand-in mode is process-wide
        raise RuntimeError("mixed real and stand-in weights")
    return ReenactmentModels(inv, mask_net)


def clear_caches() -> None:
    """Forget cached inversions and reconstructions (tests, memory pressure)."""
    inversion.clear_caches()


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise InputError(f"Unknown reenactment engine '{engine}'. Choose one of: {', '.join(ENGINES)}.")
    catalog.require(engine)


@gpu_task(duration=30)
def _reenact_codes(
    models: ReenactmentModels, w_source: torch.Tensor, w_driving: torch.Tensor, psi: float
) -> tuple[torch.Tensor, list[float]]:
    """StyleMask on two W+ codes: the decoded image [B, 3, 1024, 1024] (float32, CPU) and each layer's mean mask."""
    inv = models.inversion
    with torch.inference_mode():
        out = stylemask_forward(
            inv.generator,
            models.mask_net,
            w_source.to(device=inv.device, dtype=inv.dtype),
            w_driving.to(device=inv.device, dtype=inv.dtype),
            truncation=psi,
            truncation_latent=inv.mean_latent,
        )
        return out.image.float().cpu(), [float(m.float().mean()) for m in out.masks]


# --------------------------------------------------------------------------- image reenactment


@dataclass
class ReenactResult:
    """Everything a reenactment of one driving photo shows."""

    source_aligned: Image.Image
    driving_aligned: Image.Image
    source_inversion: Image.Image
    driving_inversion: Image.Image
    result: Image.Image  # 1024 RGB
    result_pasted: Image.Image | None
    notices: list[str]
    standin: bool
    engine: str = "stylemask"
    truncation: float = FAITHFUL_PSI
    mask_means: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> Image.Image:
        """The image to download: pasted into the photo when asked, else the aligned result."""
        return self.result_pasted if self.result_pasted is not None else self.result

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": "image",
            "engine": self.engine,
            "truncation_psi": self.truncation,
            "truncation": "faithful (psi 0.7)" if self.truncation < 1 else "none (higher fidelity)",
            "paste_back": self.result_pasted is not None,
            "result_size": list(self.result.size),
            "mask_mean_per_layer": [round(m, 4) for m in self.mask_means],
            "seconds": round(self.seconds, 2),
            "standin": self.standin,
            "notices": list(self.notices),
        }


def reenact_images(
    source: ImageSource,
    driving: ImageSource,
    *,
    truncate: bool = True,
    paste_back: bool = False,
    engine: str = "stylemask",
    already_aligned: bool = False,
) -> ReenactResult:
    """Reenact the source photo with the pose and expression of the driving photo.

    ``truncate``: ψ = 0.7 toward the seeded mean latent ("faithful", the
    paper's code) or no truncation ("higher fidelity"). ``paste_back`` also
    returns the result blended back into the source photo. ``already_aligned``
    takes both photos as FFHQ-aligned crops and skips face detection.
    """
    _check_engine(engine)
    if source is None:
        raise InputError("Please upload a source photo (the identity to keep).")
    if driving is None:
        raise InputError("Please upload a driving photo or video (the pose and expression to copy).")
    start = time.perf_counter()
    models = get_models()
    src = invert_photo(source, what="source photo", already_aligned=already_aligned)
    drv = invert_photo(driving, what="driving photo", already_aligned=already_aligned)
    psi = psi_for(truncate)
    image, mask_means = _reenact_codes(models, src.wplus, drv.wplus, psi)
    result = tensor_to_pil(image)
    pasted = Image.fromarray(paste_into_photo(np.asarray(src.photo), result, src.aligned)) if paste_back else None
    notices = [f"Source: {n}" for n in src.notices] + [f"Driving: {n}" for n in drv.notices]
    if models.standin:
        notices.append("Stand-in weights are in use: the images are not results of StyleMask.")
    return ReenactResult(
        source_aligned=src.aligned.image,
        driving_aligned=drv.aligned.image,
        source_inversion=reconstruction(src, truncate),
        driving_inversion=reconstruction(drv, truncate),
        result=result,
        result_pasted=pasted,
        notices=notices,
        standin=models.standin,
        engine=engine,
        truncation=psi,
        mask_means=mask_means,
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------- video reenactment


@dataclass
class VideoReenactResult:
    """A driving video reenacted frame by frame."""

    comparison_video: Path  # source | driving | result, side by side
    result_video: Path  # the result alone
    source_aligned: Image.Image
    source_inversion: Image.Image
    first_result: Image.Image
    frames: int
    frames_without_face: int
    fps: float
    notices: list[str]
    standin: bool
    engine: str = "stylemask"
    truncation: float = FAITHFUL_PSI
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": "video",
            "engine": self.engine,
            "truncation_psi": self.truncation,
            "frames": self.frames,
            "frames_without_face": self.frames_without_face,
            "fps": round(self.fps, 3),
            "seconds": round(self.seconds, 2),
            "seconds_per_frame": round(self.seconds / max(1, self.frames), 2),
            "standin": self.standin,
            "notices": list(self.notices),
        }


def reenact_video(
    source: ImageSource,
    video_path: str | Path,
    *,
    truncate: bool = True,
    paste_back: bool = False,
    engine: str = "stylemask",
    progress: ProgressFn | None = None,
    out_dir: str | Path | None = None,
    already_aligned: bool = False,
) -> VideoReenactResult:
    """Reenact the source photo with every frame of a driving video (capped at 10 s / 250 frames).

    Writes two MP4s into ``out_dir`` (a new temporary folder by default): the
    comparison (source | driving | result) and the result alone. Frames where
    no face is found reuse the last good result and are counted in a notice;
    a video without any face raises :class:`NoFaceError`.
    """
    _check_engine(engine)
    if source is None:
        raise InputError("Please upload a source photo (the identity to keep).")
    start = time.perf_counter()
    report = progress or (lambda _f, _d: None)
    video = read_video(video_path)  # VideoError for corrupt, empty or audio-only files
    models = get_models()
    report(0.0, "Inverting the source")
    src = invert_photo(source, what="source photo", already_aligned=already_aligned)
    psi = psi_for(truncate)
    report(0.02, "Tracking the face")
    track = track_faces(video.frames, get_detector("auto"))
    if not track.found:
        raise NoFaceError(
            "No face was found in any frame of the driving video. Use a video where one face is clearly "
            "visible, facing the camera, and well lit."
        )
    landmarks = track.smoothed_landmarks()

    source_panel = np.asarray(src.aligned.image.resize((VIDEO_RESULT_SIZE, VIDEO_RESULT_SIZE), Image.LANCZOS))
    paste_into = np.asarray(src.photo) if paste_back else None
    # Frames without a face are reenacted with the nearest earlier good frame's landmarks and pixels
    # (the first good one for leading frames): reenacting a frame with no face in it means nothing.
    driver = fill_gaps([None if p is None else (i, p) for i, p in enumerate(landmarks)])
    results: list[np.ndarray] = []
    comparisons: list[np.ndarray] = []
    cache: dict[int, np.ndarray] = {}
    n = len(video.frames)
    for i, frame in enumerate(video.frames):
        report(0.05 + 0.9 * i / n, f"Reenacting frame {i + 1} of {n}")
        j, points = driver[i]
        if j not in cache:
            cache.clear()  # keep only the last good result in memory
            cache[j] = _reenact_frame(models, src, video.frames[j], points, psi, paste_into)
        shown = cache[j]
        small = np.asarray(Image.fromarray(shown).resize(_fit(shown.shape, VIDEO_RESULT_SIZE), Image.LANCZOS))
        results.append(small)
        comparisons.append(side_by_side([source_panel, frame, small], height=VIDEO_PANEL_HEIGHT))
        if i == 0:
            first_result = Image.fromarray(shown)
    missing = track.missing
    report(0.96, "Writing the videos")
    # The folder is made only now that there are results: a refused request leaves nothing on disk.
    folder = Path(out_dir) if out_dir is not None else results_dir("reenactment")
    folder.mkdir(parents=True, exist_ok=True)
    comparison_path = write_video(comparisons, folder / "reenactment_side_by_side.mp4", fps=video.fps)
    result_path = write_video(results, folder / "reenactment_result.mp4", fps=video.fps)
    if out_dir is None:
        seal(folder)
    notices = [f"Source: {x}" for x in src.notices] + list(video.notices)
    if missing:
        notices.append(f"No face was found in {missing} of {n} frames; those frames reuse the last good result.")
    if models.standin:
        notices.append("Stand-in weights are in use: the videos are not results of StyleMask.")
    report(1.0, "Done")
    return VideoReenactResult(
        comparison_video=comparison_path,
        result_video=result_path,
        source_aligned=src.aligned.image,
        source_inversion=reconstruction(src, truncate),
        first_result=first_result,
        frames=n,
        frames_without_face=missing,
        fps=video.fps,
        notices=notices,
        standin=models.standin,
        engine=engine,
        truncation=psi,
        seconds=time.perf_counter() - start,
    )


def _fit(shape: Sequence[int], long_side: int) -> tuple[int, int]:
    """(width, height) with the long side ``long_side``, both even."""
    h, w = shape[:2]
    scale = long_side / max(h, w)
    return max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)


def _reenact_frame(
    models: ReenactmentModels,
    src: Inversion,
    frame: np.ndarray,
    landmarks: np.ndarray,
    psi: float,
    paste_into: np.ndarray | None,
) -> np.ndarray:
    """One driving frame: align (smoothed landmarks) → e4e → StyleMask → 1024 RGB (or pasted photo)."""
    # Aligning straight to 256 (with the crop's anti-aliasing) skips a 1024 warp that e4e would shrink anyway.
    crop = align_ffhq(frame, landmarks, VIDEO_ALIGN_SIZE).image
    w_driving = inversion.encode_crop(models.inversion, crop)
    image, _ = _reenact_codes(models, src.wplus, w_driving, psi)
    result = tensor_to_pil(image)
    if paste_into is not None:
        return paste_into_photo(paste_into, result, src.aligned)
    return np.asarray(result)


# --------------------------------------------------------------------------- CLI

VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backends.reenactment",
        description="Reenact a source face with the pose and expression of a driving photo or video (StyleMask).",
    )
    parser.add_argument("--source", required=True, help="photo whose identity is kept")
    parser.add_argument("--driving", required=True, help="driving photo or video (mp4/webm/mov)")
    parser.add_argument("--out", required=True, help="output .png (photo) or .mp4 (video)")
    parser.add_argument("--no-truncation", action="store_true", help="skip the psi 0.7 truncation (higher fidelity)")
    parser.add_argument("--paste-back", action="store_true", help="blend the result back into the source photo")
    parser.add_argument(
        "--stand-in-weights",
        action="store_true",
        help="deterministic random weights instead of checkpoints (outputs are not results)",
    )
    parser.add_argument("--engine", default="stylemask", choices=ENGINES)
    args = parser.parse_args(argv)
    if args.stand_in_weights:
        from .standin import enable_standin

        enable_standin(True)
    out = Path(args.out)
    opts = dict(truncate=not args.no_truncation, paste_back=args.paste_back, engine=args.engine)
    try:
        if Path(args.driving).suffix.lower() in VIDEO_SUFFIXES:

            def progress(fraction: float, desc: str) -> None:
                print(f"\r{fraction * 100:5.1f}%  {desc:<40}", end="", file=sys.stderr)

            with tempfile.TemporaryDirectory() as tmp:
                res = reenact_video(args.source, args.driving, progress=progress, out_dir=tmp, **opts)
                print(file=sys.stderr)
                out.parent.mkdir(parents=True, exist_ok=True)
                target = out if out.suffix.lower() == ".mp4" else out.with_suffix(".mp4")
                target.write_bytes(res.result_video.read_bytes())
                side = target.with_name(target.stem + "_side_by_side.mp4")
                side.write_bytes(res.comparison_video.read_bytes())
            print(f"wrote {target} and {side} ({res.frames} frames)")
            notices = res.notices
        else:
            res = reenact_images(args.source, args.driving, **opts)
            out.parent.mkdir(parents=True, exist_ok=True)
            target = out if out.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"} else out.with_suffix(".png")
            res.final.save(target)
            print(f"wrote {target}")
            notices = res.notices
    except FaceLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for notice in notices:
        print(f"note: {notice}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "ENGINES",
    "FAITHFUL_PSI",
    "Inversion",
    "ReenactResult",
    "ReenactmentModels",
    "VideoReenactResult",
    "clear_caches",
    "get_models",
    "invert_photo",
    "reconstruction",
    "reenact_images",
    "reenact_video",
]
