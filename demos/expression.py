"""Tab 5 — dynamic facial expression recognition with DFER-CLIP."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from .common import (
    GPU_EVENT,
    UploadImage,
    asset,
    lazy_examples,
    legend_plot,
    progress_stages,
    show_notices,
    user_errors,
    wire,
)

ABOUT = """
### Expression recognition · DFER-CLIP
DFER-CLIP reads a short clip of a face: 16 frames go through CLIP's ViT-B/32 image encoder, a small
temporal transformer summarises them into one video feature, and that feature is compared with a text
feature for every expression. Each expression's text is a few **learned context tokens** followed by a
written description of how that expression looks, so the model matches what it sees with words.

Modes: **DFER-CLIP** (the trained model, when its checkpoint is installed), **zero-shot CLIP** (plain
CLIP with our own descriptions, no video training), and a **per-frame baseline** (the small
mini-XCEPTION FER2013 classifier, averaged over frames). The mode used is always shown.

*Limits:* seven (or eleven, for MAFW) basic categories; one face per video (the largest, tracked);
long videos are analysed in windows and capped at a few seconds of footage. Tick **Annotated video** to
get the video back with the tracked face box and the expression of each moment drawn on it.
"""

MODES = [
    ("Automatic", "auto"),
    ("DFER-CLIP", "dfer_clip"),
    ("Zero-shot CLIP", "zero_shot_clip"),
    ("Per-frame baseline (mini-XCEPTION)", "baseline_mini_xception"),
]
DATASETS = [("DFEW (7 classes)", "dfew"), ("FERV39k (7 classes)", "ferv39k"), ("MAFW (11 classes)", "mafw")]


def _mode_line(result) -> str:
    weights = "**stand-in weights — not a result**" if result.standin else "real weights"
    return f"**Mode:** {result.mode_label} · {weights}"


def _outputs(result, *, video: bool):
    show_notices(result.notices)
    rows = [
        {"time (s)": float(t), "expression": name, "probability": float(p)}
        for t, probs in result.timeline
        for name, p in probs.items()
    ]
    timeline = pd.DataFrame(rows, columns=["time (s)", "expression", "probability"])
    plot = gr.update(value=timeline, visible=video and len(result.timeline) > 1)
    # The annotated video is shown only when one was asked for and made (never for photos).
    made = result.annotated_video is not None
    annotated = gr.update(value=str(result.annotated_video) if made else None, visible=made)
    return _mode_line(result), result.probabilities, plot, result.face_crops, result.to_dict(), annotated


@user_errors
def analyze_video(
    video: str | None, mode: str, dataset: str, annotate: bool = False,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects the tracker (weight downloads)
):
    from backends import expression as dfer_clip

    result = dfer_clip.analyze_video(video, mode=mode, dataset=dataset, annotate=bool(annotate))
    return _outputs(result, video=True)


@user_errors
def analyze_photo(
    photo: str | None, mode: str, progress: gr.Progress = gr.Progress()  # noqa: B008 - weight downloads
):
    from backends import expression as dfer_clip

    return _outputs(dfer_clip.analyze_photo(photo, mode=mode, progress=progress_stages(progress)), video=False)


@user_errors
def _example_video(video: str):
    """The example clip at the tab's defaults, as plain values (the lazily cached example's form)."""
    from backends import expression as dfer_clip

    result = dfer_clip.analyze_video(video, mode="auto", dataset="dfew")
    show_notices(result.notices)
    return _mode_line(result), result.probabilities, result.face_crops, result.to_dict()


@user_errors
def _timeline_from_details(details: dict | list | None):
    """The timeline plot drawn from a result's details (``timeline``: time and probabilities per window)."""
    from backends.errors import InputError

    windows = details.get("timeline") if isinstance(details, dict) else None
    try:
        rows = [
            {"time (s)": float(w["t"]), "expression": str(name), "probability": float(p)}
            for w in windows or []
            for name, p in w["probabilities"].items()
        ]
    except (AttributeError, KeyError, TypeError, ValueError):
        raise InputError("The details sent back are not those of an expression result.") from None
    frame = pd.DataFrame(rows, columns=["time (s)", "expression", "probability"])
    return gr.update(value=frame, visible=len(windows) > 1)


@user_errors
def _example_photo(photo: str):
    """An example photo at the tab's defaults, as plain values (the lazily cached example's form)."""
    from backends import expression as dfer_clip

    result = dfer_clip.analyze_photo(photo, mode="auto")
    show_notices(result.notices)
    return _mode_line(result), result.probabilities, result.face_crops, result.to_dict()


def build() -> None:
    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column():
            # Above both input tabs: the mode applies to a video and to a photo alike.
            mode = gr.Dropdown(MODES, value="auto", label="Mode (for videos and photos)", elem_id="expr-mode")
            with gr.Tab("Video or webcam"):
                video = gr.Video(label="Face video (mp4, webm, mov)", sources=["upload", "webcam"])
                dataset = gr.Dropdown(DATASETS, value="dfew", label="Trained on")
                annotate = gr.Checkbox(
                    value=False, label="Annotated video",
                    info="Also return the video with the face box and expression drawn on each frame.",
                )
                run_video = gr.Button("Recognise expression", variant="primary")
            with gr.Tab("Photo"):
                photo = UploadImage(label="Face photo")
                run_photo = gr.Button("Recognise expression", variant="primary")
        with gr.Column():
            mode_used = gr.Markdown(elem_id="expr-mode-used")
            label = gr.Label(label="Expression", num_top_classes=4, elem_id="expr-label")
            timeline = legend_plot(gr.LinePlot, x="time (s)", y="probability", color="expression",
                                   label="Probabilities over time", height=340, visible=False,
                                   elem_id="expr-timeline")
            crops = gr.Gallery(
                label="Face crops used", columns=6, rows=1, height=150, object_fit="contain", allow_preview=False,
                fit_columns=False,
            )
            annotated = gr.Video(label="Annotated video", visible=False, interactive=False)
            details = gr.JSON(label="Details (mode, weights, notices)", max_height=260)
    outputs = [mode_used, label, timeline, crops, details, annotated]
    # Cached at the first click, at the default mode. gradio 6.31 cannot store a plot's value in its example
    # cache (the page waits for ever), so the video example stores the details and a quick event after it
    # draws the timeline from them; a photo example hides the previous video's timeline.
    hide_video = (annotated, gr.update(value=None, visible=False))
    with video.parent:  # the examples sit in their input tab, under its button
        video_examples = lazy_examples(
            [[asset("astronaut_pan.mp4")]], [video], _example_video, [mode_used, label, crops, details],
            on_click=[hide_video], elem_id="expr-video-examples",
            label="Example video (default settings; the first click analyses it, later clicks show it)")
        wire(video_examples.load_input_event.then, _timeline_from_details, details, timeline, queue=False,
             api_visibility="private")
    with photo.parent:
        lazy_examples([[asset("astronaut.png")], [asset("camera.png")]], [photo], _example_photo,
                      [mode_used, label, crops, details], elem_id="expr-photo-examples",
                      on_click=[(timeline, gr.update(visible=False)), hide_video],
                      label="Example photos (default settings; the first click analyses them, later clicks show them)")
    wire(run_video.click, analyze_video, [video, mode, dataset, annotate], outputs, api_name="expression_video",
         **GPU_EVENT)
    wire(run_photo.click, analyze_photo, [photo, mode], outputs, api_name="expression_photo", **GPU_EVENT)
