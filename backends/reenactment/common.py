"""The photo and video flows every reenactment engine shares: inputs, paste-back, the video loop, the CLI.

An engine (:mod:`.stylemask`, :mod:`.hyperreenact`, :mod:`.gan_directions`) prepares faces and renders
one source/driving pair; everything around that is written once here. An engine whose checkpoints
are not at hand is refused with the reason (:func:`engine_statuses`), never swapped for another.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import inversion
from ..allocator import release_free_memory
from ..errors import FaceLabError, InputError, NoFaceError
from ..face import get_detector
from ..face import paste_back as paste_into_photo
from ..face.track import fill_gaps, track_faces
from ..inversion import FAITHFUL_PSI, psi_for
from ..media import ImageSource, read_video, side_by_side, write_video
from ..results import results_dir, seal
from .engine import (  # noqa: F401 - the engine registry is part of this module's API
    ENGINES,
    Engine,
    EngineStatus,
    Side,
    engine_status,
    engine_statuses,
    get_engine,
    require_engine,
    weights_status,
)

VIDEO_RESULT_SIZE = 512  # frames are written at this size to keep files small
VIDEO_PANEL_HEIGHT = 384  # height of the side-by-side comparison video
# Driving frames reenacted together by an engine with a batched path (StyleMask): e4e and the generator
# then run one batched pass. On a GPU that fills the device; on CPU it saves little (e4e 0.93x per crop,
# the generator the same per image: bench/). Four 1024 renders keep the extra memory near 1 GB.
FRAME_BATCH = 4

ProgressFn = Callable[[float, str], None]


# --------------------------------------------------------------------------- engines










def clear_caches() -> None:
    """Forget cached inversions and reconstructions (tests, memory pressure)."""
    inversion.clear_caches()
    from . import vox

    vox.clear_caches()


def release_vox_models() -> None:
    """Drop the VoxCeleb engines' cached networks (about 2.5 GB with the hypernetwork) and their caches."""
    from ..face import landmarks68
    from . import gan_directions, hyperreenact, vox

    for cached in (vox._cached_vox, vox._cached_deca, hyperreenact._cached_networks, gan_directions._cached_model,
                   landmarks68._cached_fan):
        cached.cache_clear()
    vox.clear_caches()
    gc.collect()
    release_free_memory()


def _standin_notice(engine: Engine, what: str) -> str:
    return f"Stand-in weights are in use: the {what} are not results of {engine.name}."


# --------------------------------------------------------------------------- image reenactment


@dataclass
class ReenactResult:
    """Everything a reenactment of one driving photo shows."""

    source_aligned: Image.Image
    driving_aligned: Image.Image
    source_inversion: Image.Image
    driving_inversion: Image.Image  # what the engine reads of the driving face
    result: Image.Image  # the reenacted crop (1024 for StyleMask, 256 for the VoxCeleb engines)
    result_pasted: Image.Image | None
    notices: list[str]
    standin: bool
    engine: str = "stylemask"
    truncation: float = FAITHFUL_PSI
    extras: dict[str, Any] = field(default_factory=dict)
    driving_caption: str = "Driving inversion"
    seconds: float = 0.0
    run_card: dict[str, Any] = field(default_factory=dict)  # backends.runcard: what re-runs this result

    @property
    def final(self) -> Image.Image:
        """The image to download: pasted into the photo when asked, else the aligned result."""
        return self.result_pasted if self.result_pasted is not None else self.result

    @property
    def mask_means(self) -> list[float]:
        return list(self.extras.get("mask_mean_per_layer", []))

    def stages(self) -> list[tuple[Image.Image, str]]:
        """The intermediate pictures, in order, with captions."""
        return [
            (self.source_aligned, "Source, aligned"),
            (self.source_inversion, "Source inversion"),
            (self.driving_aligned, "Driving, aligned"),
            (self.driving_inversion, self.driving_caption),
            (self.result, "Result"),
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": "image",
            "engine": self.engine,
            "truncation_psi": self.truncation,
            "truncation": "faithful (psi 0.7)" if self.truncation < 1 else "none (higher fidelity)",
            "paste_back": self.result_pasted is not None,
            "result_size": list(self.result.size),
            "mask_mean_per_layer": self.mask_means,
            **{k: v for k, v in self.extras.items() if k != "mask_mean_per_layer"},
            "seconds": round(self.seconds, 2),
            "standin": self.standin,
            "notices": list(self.notices),
            "run_card": self.run_card,
        }


def reenact_images(
    source: ImageSource,
    driving: ImageSource,
    *,
    truncate: bool = True,
    paste_back: bool = False,
    engine: str = "stylemask",
    already_aligned: bool = False,
    progress: ProgressFn | None = None,
) -> ReenactResult:
    """Reenact the source photo with the pose and expression of the driving photo.

    ``truncate``: ψ = 0.7 toward the seeded mean latent ("faithful", the papers' code) or no
    truncation ("higher fidelity"). ``paste_back`` also returns the result blended back into the
    source photo. ``already_aligned`` takes both photos as aligned crops and skips face detection.
    ``progress(fraction, stage)`` hears each stage as it starts.
    """
    report = progress or (lambda _f, _d: None)
    eng = require_engine(engine)
    if source is None:
        raise InputError("Please upload a source photo (the identity to keep).")
    if driving is None:
        raise InputError("Please upload a driving photo or video (the pose and expression to copy).")
    start = time.perf_counter()
    report(0.0, f"Loading {eng.name}")
    standin = eng.load()
    report(0.2, "Aligning and inverting the source face")
    src = eng.prepare_source(source, already_aligned=already_aligned)
    report(0.5, "Aligning and inverting the driving face")
    drv = eng.prepare_driving(driving, already_aligned=already_aligned)
    psi = psi_for(truncate)
    report(0.8, "Rendering the reenacted face")
    rendered = eng.render(src, drv, psi)
    pasted = None
    if paste_back:
        report(0.95, "Pasting the result back into the photo")
        pasted = Image.fromarray(paste_into_photo(np.asarray(src.photo), rendered.image, src.aligned))
    notices = [f"Source: {n}" for n in src.notices] + [f"Driving: {n}" for n in drv.notices]
    if standin:
        notices.append(_standin_notice(eng, "images"))
    driving_preview, caption = eng.driving_preview(drv, truncate)
    result = ReenactResult(
        source_aligned=src.aligned.image,
        driving_aligned=drv.aligned.image,
        source_inversion=eng.source_preview(src, truncate),
        driving_inversion=driving_preview,
        result=rendered.image,
        result_pasted=pasted,
        notices=notices,
        standin=standin,
        engine=engine,
        truncation=psi,
        extras=rendered.extras,
        driving_caption=caption,
        seconds=time.perf_counter() - start,
    )
    result.run_card = photo_run_card(result, source, driving, truncate=truncate, paste_back=paste_back,
                                     already_aligned=already_aligned, weights=eng.weights)
    return result


# --------------------------------------------------------------------------- reviewer view: card and metrics


def photo_run_card(res: ReenactResult, source: ImageSource, driving: ImageSource, *, truncate: bool,
                   paste_back: bool, already_aligned: bool, weights: Sequence[str]) -> dict[str, Any]:
    """The run card of a photo reenactment (:mod:`backends.runcard`); ``python -m backends.replay`` re-runs it."""
    from .. import runcard

    return runcard.make_card(
        method="reenactment", engine=res.engine, replay="backends.reenactment.common:reenact_images",
        inputs={"source": source, "driving": driving},
        settings={"engine": res.engine, "truncate": bool(truncate), "paste_back": bool(paste_back),
                  "already_aligned": bool(already_aligned)},
        seeds={"mean_latent_seed": 0, "note": "no random draws per request: the result depends on the inputs only"},
        weights=weights, standin=res.standin, timings={"seconds": res.seconds},
        outputs={"final": res.final}, output_attr={"final": "final"},
    )


def photo_metrics(res: ReenactResult) -> dict[str, Any]:
    """The papers' metrics of a photo reenactment (:mod:`backends.metrics`), computed after the result.

    Identity (CSIM) source↔result; head-pose, expression and jaw errors driving↔result, with driving↔source
    as the baseline (how far the engine had to move the face); PSNR result↔driving only for a
    self-reenactment (the same photo as source and driving). A metric whose network is missing is listed
    under ``unavailable`` with the reason.
    """
    from .. import metrics
    from ..errors import MissingWeightsError
    from ..inversion import content_hash

    start = time.perf_counter()
    values: dict[str, Any] = {}
    baseline: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    how: dict[str, str] = {}
    standin = res.standin
    try:
        net, net_standin = metrics.arcface()
        standin = standin or net_standin
        values["identity_cosine"], how["identity"] = metrics.identity_pair(res.source_aligned, res.result, net=net)
    except MissingWeightsError as exc:
        unavailable["identity_cosine"] = str(exc)
    try:
        from .vox import get_deca  # the DECA the VoxCeleb engines already hold

        deca = get_deca()
        poses = {name: metrics.face_pose(image, net=deca) for name, image in
                 (("source", res.source_aligned), ("driving", res.driving_aligned), ("result", res.result))}
        values.update(metrics.pose_errors(poses["driving"], poses["result"]))
        baseline = metrics.pose_errors(poses["driving"], poses["source"])
        how.update({f"pose_{k}": p.how for k, p in poses.items()})
    except MissingWeightsError as exc:
        unavailable["pose_error"] = str(exc)
    if content_hash(np.asarray(res.source_aligned)) == content_hash(np.asarray(res.driving_aligned)):
        target = res.driving_aligned.resize(res.result.size, Image.Resampling.LANCZOS)
        pixel_values, pixel_missing, pixel_standin = pixel_metrics(res.result, target)
        values.update(pixel_values)
        unavailable.update(pixel_missing)
        standin = standin or pixel_standin
    else:
        only = "only for a self-reenactment (the same photo as source and driving)"
        unavailable["psnr"] = unavailable["lpips"] = only
    return {
        "result": metrics.present(values, standin=standin),
        "baseline_driving_vs_source": metrics.present(baseline, standin=standin),
        "faces": how,
        "about": metrics.about([*values, *baseline]),
        "unavailable": unavailable,
        "seconds": round(time.perf_counter() - start, 2),
    }


def pixel_metrics(result: Image.Image, target: Image.Image) -> tuple[dict[str, float], dict[str, str], bool]:
    """PSNR and LPIPS of a result to its target (a self-reenactment's driving face), of one size.

    Returns the values, the metrics left out with the reason (LPIPS without its weights), and whether a
    stand-in network computed any of them.
    """
    from .. import metrics
    from ..errors import MissingWeightsError

    values = {"psnr": metrics.psnr(result, target)}
    try:
        net, standin = metrics.lpips_net()
        values["lpips"] = metrics.lpips(result, target, net=net)
    except MissingWeightsError as exc:
        return values, {"lpips": str(exc)}, False
    return values, {}, standin


# --------------------------------------------------------------------------- every engine on one pair


@dataclass
class EngineRun:
    """One engine on one source/driving pair: its result and metrics, or why it did not run."""

    engine: str
    available: bool
    reason: str = ""  # why it is unavailable or failed
    result: ReenactResult | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # the result alone (what a user waits for)
    metrics_seconds: float = 0.0

    def value(self, key: str) -> float | None:
        entry = self.metrics.get("result", {}).get(key)
        return entry.get("value") if isinstance(entry, dict) else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"engine": self.engine, "available": self.available and self.result is not None}
        if self.reason:
            out["reason"] = self.reason
        if self.result is not None:
            out.update(seconds=round(self.seconds, 2), metrics_seconds=round(self.metrics_seconds, 2),
                       standin=self.result.standin, result_size=list(self.result.result.size),
                       metrics=self.metrics, run_card=self.result.run_card)
        return out


COMPARE_KEYS = ("identity_cosine", "pose_error", "expression_error", "jaw_error")


def compare_engines(source: ImageSource, driving: ImageSource, *, truncate: bool = True,
                    already_aligned: bool = False, engines: Sequence[str] = ENGINES,
                    progress: ProgressFn | None = None) -> list[EngineRun]:
    """One source and one driving photo through every engine: result, metrics and time per engine.

    An engine whose weights are missing is listed with the reason and skipped, never replaced. An input
    problem (no face, unreadable photo) is the same for every engine and is raised.
    """
    from ..errors import MissingWeightsError

    report = progress or (lambda _f, _d: None)
    runs: list[EngineRun] = []
    for i, key in enumerate(engines):
        status = engine_status(key)
        if not status.available:
            runs.append(EngineRun(key, False, status.reason))
            continue
        report(i / len(engines), f"{key}: reenacting")
        try:
            res = reenact_images(source, driving, truncate=truncate, engine=key, already_aligned=already_aligned)
        except MissingWeightsError as exc:
            runs.append(EngineRun(key, False, str(exc)))
            continue
        report((i + 0.7) / len(engines), f"{key}: metrics")
        start = time.perf_counter()
        shown = photo_metrics(res)
        runs.append(EngineRun(key, True, "", res, shown, res.seconds, time.perf_counter() - start))
    report(1.0, "done")
    return runs


def compare_main(argv: Sequence[str]) -> int:
    """``python -m backends.reenactment compare SOURCE DRIVING [--json out.json] [--out-dir DIR]`` (the list
    form, ``compare --pairs LIST.csv --csv OUT.csv``, is :func:`backends.reenactment.pairs.compare_main`)."""
    import json

    parser = argparse.ArgumentParser(prog="python -m backends.reenactment compare",
                                     description="Every engine on one source/driving pair: result, metrics, time "
                                                 "(or `compare --pairs LIST.csv --csv OUT.csv` for a list).")
    parser.add_argument("source")
    parser.add_argument("driving")
    parser.add_argument("--json", dest="json_out", help="write every row (metrics, run cards) here")
    parser.add_argument("--out-dir", help="also save each engine's result as ENGINE.png here")
    parser.add_argument("--no-truncation", action="store_true")
    parser.add_argument("--stand-in-weights", action="store_true",
                        help="deterministic random weights instead of checkpoints (outputs are not results)")
    args = parser.parse_args(argv)
    if args.stand_in_weights:
        from ..standin import enable_standin

        enable_standin(True)
    try:
        runs = compare_engines(args.source, args.driving, truncate=not args.no_truncation)
    except FaceLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("| engine | result s | CSIM | pose error ° | expression error | jaw error ° |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        if run.result is None:
            print(f"| {run.engine} | unavailable: {run.reason.splitlines()[0][:80]} | | | | |")
            continue
        cells = " | ".join("" if run.value(k) is None else f"{run.value(k):.3f}" for k in COMPARE_KEYS)
        print(f"| {run.engine} | {run.seconds:.1f} | {cells} |")
        if args.out_dir:
            Path(args.out_dir).mkdir(parents=True, exist_ok=True)
            run.result.final.save(Path(args.out_dir) / f"{run.engine}.png")
    if any(r.result is not None and r.result.standin for r in runs):
        print("note: stand-in weights: the numbers are not meaningful", file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([r.to_dict() for r in runs], indent=2) + "\n")
    return 0


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
    self_reenactment: bool = False  # the source is the driving video's first frame
    samples: list[VideoSample] = field(default_factory=list)  # the frames the metrics read
    run_card: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": "video",
            "self_reenactment": self.self_reenactment,
            "metric_frames": [s.index for s in self.samples],
            "engine": self.engine,
            "truncation_psi": self.truncation,
            "frames": self.frames,
            "frames_without_face": self.frames_without_face,
            "fps": round(self.fps, 3),
            "seconds": round(self.seconds, 2),
            "seconds_per_frame": round(self.seconds / max(1, self.frames), 2),
            "standin": self.standin,
            "notices": list(self.notices),
            "run_card": self.run_card,
        }


VIDEO_METRIC_FRAMES = 16  # frames the video metrics read at most (evenly spread over those with a face)
SAMPLE_LONG_SIDE = 1024  # driving frames kept for the metrics are shrunk to this long side at most


@dataclass
class VideoSample:
    """One frame the video metrics read: its index, the driving frame, and the result shown for it."""

    index: int
    driving: np.ndarray
    result: Image.Image


def metric_frame_indices(with_face: Sequence[int], limit: int = VIDEO_METRIC_FRAMES) -> list[int]:
    """Up to ``limit`` frame indices evenly spread over ``with_face`` (all of them when there are few)."""
    if len(with_face) <= limit:
        return list(with_face)
    picks = np.linspace(0, len(with_face) - 1, limit).round().astype(int).tolist()
    return [with_face[i] for i in dict.fromkeys(picks)]


def _shrunk(frame: np.ndarray, long_side: int = SAMPLE_LONG_SIDE) -> np.ndarray:
    if max(frame.shape[:2]) <= long_side:
        return frame.copy()
    return np.asarray(Image.fromarray(frame).resize(_fit(frame.shape, long_side), Image.Resampling.LANCZOS))


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
    first_frame_as_source: bool = False,
    metric_frames: int = VIDEO_METRIC_FRAMES,
) -> VideoReenactResult:
    """Reenact the source photo with every frame of a driving video (capped at 10 s / 250 frames).

    Writes two MP4s into ``out_dir`` (a new temporary folder by default): the comparison
    (source | driving | result) and the result alone. Frames where no face is found reuse the last
    good result and are counted in a notice; a video without any face raises :class:`NoFaceError`.
    ``first_frame_as_source``: a self-reenactment, the video's first frame is the source (``source`` is
    ignored). Up to ``metric_frames`` frames with a face are kept for :func:`video_metrics`.
    """
    eng = require_engine(engine)
    if source is None and not first_frame_as_source:
        raise InputError("Please upload a source photo (the identity to keep).")
    start = time.perf_counter()
    report = progress or (lambda _f, _d: None)
    video = read_video(video_path)  # VideoError for corrupt, empty or audio-only files
    if first_frame_as_source:
        source, already_aligned = video.frames[0], False
    standin = eng.load()
    report(0.0, "Inverting the source")
    src = eng.prepare_source(source, already_aligned=already_aligned)
    psi = psi_for(truncate)
    report(0.02, "Tracking the face")
    track = track_faces(video.frames, get_detector("auto"))
    if not track.found:
        raise NoFaceError(
            "No face was found in any frame of the driving video. Use a video where one face is clearly "
            "visible, facing the camera, and well lit."
        )
    landmarks, boxes = track.smoothed_landmarks(), track.smoothed_boxes()

    source_panel = np.asarray(src.aligned.image.resize((VIDEO_RESULT_SIZE, VIDEO_RESULT_SIZE), Image.LANCZOS))
    paste_into = np.asarray(src.photo) if paste_back else None
    # Frames without a face are reenacted with the nearest earlier good frame's landmarks and pixels
    # (the first good one for leading frames): reenacting a frame with no face in it means nothing.
    driver = fill_gaps([None if p is None else (i, p, boxes[i]) for i, p in enumerate(landmarks)])
    sample_at = set(metric_frame_indices([i for i, p in enumerate(landmarks) if p is not None], metric_frames))
    samples: list[VideoSample] = []
    results: list[np.ndarray] = []
    comparisons: list[np.ndarray] = []
    cache: dict[int, np.ndarray] = {}
    n = len(video.frames)
    for i, frame in enumerate(video.frames):
        j = driver[i][0]
        if j not in cache:
            cache.clear()  # keep only the current batch's results in memory
            todo = _next_drivers(driver, i, FRAME_BATCH if hasattr(eng, "render_frames") else 1)
            last = i + sum(1 for entry in driver[i:] if entry[0] <= todo[-1][0])  # frames this batch serves
            report(0.05 + 0.9 * i / n, f"Reenacting frame {i + 1} of {n}" if last == i + 1
                   else f"Reenacting frames {i + 1}-{last} of {n}")
            cache.update(_reenact_frames(eng, src, video.frames, todo, psi, paste_into))
        shown = cache[j]
        small = np.asarray(Image.fromarray(shown).resize(_fit(shown.shape, VIDEO_RESULT_SIZE), Image.LANCZOS))
        results.append(small)
        if i in sample_at:
            samples.append(VideoSample(i, _shrunk(frame), Image.fromarray(shown)))
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
    if standin:
        notices.append(_standin_notice(eng, "videos"))
    report(1.0, "Done")
    result = VideoReenactResult(
        comparison_video=comparison_path,
        result_video=result_path,
        source_aligned=src.aligned.image,
        source_inversion=eng.source_preview(src, truncate),
        first_result=first_result,
        frames=n,
        frames_without_face=missing,
        fps=video.fps,
        notices=notices,
        standin=standin,
        engine=engine,
        truncation=psi,
        seconds=time.perf_counter() - start,
        self_reenactment=first_frame_as_source,
        samples=samples,
    )
    result.run_card = video_run_card(result, source, video_path, truncate=truncate, paste_back=paste_back,
                                     already_aligned=already_aligned, weights=eng.weights)
    return result


# --------------------------------------------------------------------------- reviewer view of a video


def video_run_card(res: VideoReenactResult, source: ImageSource, video_path: str | Path, *, truncate: bool,
                   paste_back: bool, already_aligned: bool, weights: Sequence[str]) -> dict[str, Any]:
    """The run card of a video reenactment; :func:`replay_video` re-runs it from the card's inputs."""
    from .. import runcard

    inputs: dict[str, Any] = {"driving_video": video_path}
    if not res.self_reenactment:
        inputs = {"source": source, **inputs}
    return runcard.make_card(
        method="reenactment_video", engine=res.engine, replay="backends.reenactment.common:replay_video",
        inputs=inputs,
        settings={"engine": res.engine, "truncate": bool(truncate), "paste_back": bool(paste_back),
                  "already_aligned": bool(already_aligned), "first_frame_as_source": res.self_reenactment},
        seeds={"mean_latent_seed": 0, "note": "no random draws per request: the result depends on the inputs only"},
        weights=weights, standin=res.standin,
        timings={"seconds": res.seconds, "seconds_per_frame": res.seconds / max(1, res.frames)},
        outputs={"result_video": res.result_video}, output_attr={"result_video": "result_video"},
    )


def replay_video(*inputs: str, **settings: Any) -> VideoReenactResult:
    """A video card's replay: ``(source, driving_video)``, or ``(driving_video,)`` for a self-reenactment."""
    if settings.get("first_frame_as_source"):
        return reenact_video(None, *inputs, **settings)
    return reenact_video(*inputs, **settings)


VIDEO_KEYS = ("identity_cosine", "pose_error", "expression_error", "jaw_error")
SELF_KEYS = ("psnr", "lpips")


def _aligned_face(image: Image.Image | np.ndarray, size: int = 256) -> np.ndarray | None:
    """The largest face of ``image`` FFHQ-aligned at ``size``, or None when no face is found."""
    from ..face import align_ffhq
    from ..face.detect import detect_faces

    rgb = np.ascontiguousarray(np.asarray(image))
    try:
        face = detect_faces(rgb, what="image")[0]
    except NoFaceError:
        return None
    return np.asarray(align_ffhq(rgb, face.landmarks, size).image)


def self_reenactment_pair(result: Image.Image, driving: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The result's face and the driving frame's face, both FFHQ-aligned at 256 by the same detector
    (the result taken as given when no face is found in it); None without a face in the driving frame."""
    target = _aligned_face(driving)
    if target is None:
        return None
    face = _aligned_face(result)
    if face is None:
        face = np.asarray(result.convert("RGB").resize(target.shape[1::-1], Image.Resampling.LANCZOS))
    return face, target


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def video_metrics(res: VideoReenactResult, progress: ProgressFn | None = None) -> dict[str, Any]:
    """The photo metrics per sampled frame of a video reenactment, and their averages.

    Per frame: identity (CSIM) source↔result, pose/expression/jaw errors driving frame↔result and the
    driving↔source baseline; for a self-reenactment also PSNR and LPIPS of the result's face to the
    driving frame's face (both aligned by the same detector). Frames are those the run kept
    (``res.samples``: at most :data:`VIDEO_METRIC_FRAMES`, evenly spread over the frames with a face).
    """
    from .. import metrics
    from ..errors import MissingWeightsError

    report = progress or (lambda _f, _d: None)
    start = time.perf_counter()
    keys = VIDEO_KEYS + (SELF_KEYS if res.self_reenactment else ())
    per_frame: dict[str, list[float | None]] = {k: [] for k in keys}
    baseline: dict[str, list[float | None]] = {k: [] for k in VIDEO_KEYS[1:]}
    unavailable: dict[str, str] = {}
    standin = res.standin
    arc = deca = lpips_net = None
    try:
        arc, arc_standin = metrics.arcface()
        standin = standin or arc_standin
    except MissingWeightsError as exc:
        unavailable["identity_cosine"] = str(exc)
    try:
        from .vox import get_deca

        deca = get_deca()
        source_pose = metrics.face_pose(res.source_aligned, net=deca)
    except MissingWeightsError as exc:
        unavailable["pose_error"] = str(exc)
    if res.self_reenactment:
        try:
            lpips_net, lpips_standin = metrics.lpips_net()
            standin = standin or lpips_standin
        except MissingWeightsError as exc:
            unavailable["lpips"] = str(exc)
    else:
        unavailable["psnr"] = unavailable["lpips"] = ("only for a self-reenactment (tick 'driving video is of the "
                                                      "source person')")
    for n, sample in enumerate(res.samples):
        report(n / max(1, len(res.samples)), f"Metrics of frame {sample.index + 1}")
        frame_values = _frame_metrics(sample, res, arc, deca, lpips_net, source_pose if deca is not None else None)
        for key in keys:
            per_frame[key].append(frame_values.get(key))
        for key in baseline:
            baseline[key].append(frame_values.get(f"baseline_{key}"))
    averages = {k: _mean(v) for k, v in per_frame.items() if k not in unavailable and _mean(v) is not None}
    baseline_avg = {k: _mean(v) for k, v in baseline.items() if _mean(v) is not None}
    seconds = time.perf_counter() - start
    return {
        "frames": [s.index for s in res.samples],
        "times": [round(s.index / res.fps, 3) if res.fps else s.index for s in res.samples],
        "sampled": (f"metrics on {len(res.samples)} of {res.frames} frames, evenly spread over the frames with a "
                    "face" + (" (every frame)" if len(res.samples) == res.frames else "")),
        "average": metrics.present(averages, standin=standin),
        "baseline_driving_vs_source_average": metrics.present(baseline_avg, standin=standin),
        "per_frame": {k: [None if v is None else round(v, 4) for v in vals] for k, vals in per_frame.items()
                      if k not in unavailable},
        "baseline_per_frame": {k: [None if v is None else round(v, 4) for v in vals] for k, vals in baseline.items()},
        "about": metrics.about([*averages, *baseline_avg]),
        "unavailable": unavailable,
        "meaningful": not standin,
        "seconds": round(seconds, 2),
        "seconds_per_frame": round(seconds / max(1, len(res.samples)), 3),
    }


def _frame_metrics(sample: VideoSample, res: VideoReenactResult, arc: Any, deca: Any, lpips_net: Any,
                   source_pose: Any) -> dict[str, float]:
    """One sampled frame's metrics (and the ``baseline_*`` pose errors driving↔source)."""
    from .. import metrics

    out: dict[str, float] = {}
    if arc is not None:
        out["identity_cosine"] = metrics.identity_pair(res.source_aligned, sample.result, net=arc)[0]
    if deca is not None:
        driving = metrics.face_pose(sample.driving, net=deca)
        out.update(metrics.pose_errors(driving, metrics.face_pose(sample.result, net=deca)))
        out.update({f"baseline_{k}": v for k, v in metrics.pose_errors(driving, source_pose).items()})
    if res.self_reenactment:
        pair = self_reenactment_pair(sample.result, sample.driving)
        if pair is not None:
            out["psnr"] = metrics.psnr(*pair)
            if lpips_net is not None:
                out["lpips"] = metrics.lpips(*pair, net=lpips_net)
    return out


def _fit(shape: Sequence[int], long_side: int) -> tuple[int, int]:
    """(width, height) with the long side ``long_side``, both even."""
    h, w = shape[:2]
    scale = long_side / max(h, w)
    return max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)


def _next_drivers(driver: Sequence[tuple[int, Any, Any]], start: int, count: int) -> list[tuple[int, Any, Any]]:
    """The next ``count`` distinct driving frames from frame ``start`` on, as (frame index, landmarks, box).

    ``driver`` maps each frame to the good frame it is reenacted with; that index never decreases.
    """
    todo: list[tuple[int, Any, Any]] = []
    for entry in driver[start:]:
        if not todo or entry[0] != todo[-1][0]:
            if len(todo) == count:
                break
            todo.append(entry)
    return todo


def _reenact_frames(
    engine: Engine,
    src: Side,
    frames: Sequence[np.ndarray],
    todo: Sequence[tuple[int, np.ndarray, np.ndarray]],
    psi: float,
    paste_into: np.ndarray | None,
) -> dict[int, np.ndarray]:
    """Driving frames ``todo`` (index, smoothed landmarks, box): the engine's crops -> render -> RGB
    (or pasted into the source photo), by frame index. One batched pass when the engine has one."""
    if hasattr(engine, "render_frames"):
        images = engine.render_frames(src, [(frames[j], points, box) for j, points, box in todo], psi)
    else:
        images = [engine.render(src, engine.prepare_frame(frames[j], points, box), psi).image
                  for j, points, box in todo]
    out = {}
    for (j, _points, _box), image in zip(todo, images, strict=True):
        out[j] = paste_into_photo(paste_into, image, src.aligned) if paste_into is not None else np.asarray(image)
    return out


# --------------------------------------------------------------------------- CLI

VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        return compare_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m backends.reenactment",
        description="Reenact a source face with the pose and expression of a driving photo or video "
                    "(or `compare SOURCE DRIVING [--json OUT]`: every engine side by side with the metrics).",
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
        from ..standin import enable_standin

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



