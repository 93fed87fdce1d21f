"""Tab 1 — face reenactment with three engines: StyleMask, HyperReenact and GAN directions."""

from __future__ import annotations

import gradio as gr

from backends.results import results_dir, seal
from backends.runcard import write_card

from .common import (
    GPU_EVENT,
    UploadImage,
    asset,
    lazy_examples,
    legend_plot,
    owner_details,
    progress_stages,
    review_panel,
    show_notices,
    user_errors,
    visitor_sentence,
    wire,
)

ABOUT = """
### Reenactment · StyleMask, HyperReenact, GAN directions
The **source** face keeps its identity and takes the head pose and expression of a **driving** photo, or of
every frame of a driving video. Both faces are aligned and inverted into StyleGAN2's latent space with e4e.
In the generator's *style space*, a small learned network then predicts a mask for every channel of the first
12 layers: where the mask is high the driving face's value is taken (pose, expression), where it is low the
source's is kept (identity, hair, background). The mixed styles are decoded at 1024 px.

**Faithful** applies the truncation (ψ = 0.7 toward the average face) that the paper's code applies even to
inverted faces; switching it off keeps more of both faces' detail but can look less clean.

*Limits:* the generator knows 1024 px FFHQ-like portraits; inversion loses fine detail (the inversions are
shown so you can judge); strong profiles, occlusions and large pose gaps degrade results. Videos are capped
at 10 s / 250 frames and take a few seconds per frame without a GPU.
"""

ENGINE_ABOUT = """
**Engines.** *StyleMask* mixes the two faces' StyleGAN2 styles with a learned mask (FFHQ, 1024 px).
*HyperReenact* keeps the source's codes and lets a hypernetwork, fed with the source's ArcFace features
and the driving face's DECA pose features, adjust the weights of a VoxCeleb StyleGAN2 (256 px).
*GAN directions* measures the head pose and expression difference with DECA and moves the source's
codes along learned directions (VoxCeleb, 256 px); its sliders below move one direction at a time
without any driving face. An engine whose weights are missing is listed as unavailable with the reason.
"""

ENGINE_NAMES = {"stylemask": "StyleMask", "hyperreenact": "HyperReenact", "gan_directions": "GAN directions"}
SLIDERS = [("Yaw (°)", 30.0), ("Pitch (°)", 20.0), ("Roll (°)", 20.0), ("Jaw opening (rad)", 0.3)] + [
    (f"Expression {k} (FLAME)", 3.0) for k in range(11)
]


def engine_state(key: str, available: bool, reason: str) -> str:
    """What the engine list says about one engine: ready only when its files are here (or stand-ins are on)."""
    from backends import reenactment, weights
    from backends.errors import MissingWeightsError
    from backends.standin import standin_enabled

    if not available:
        return visitor_sentence(MissingWeightsError(reason)) + owner_details(reason)
    if standin_enabled():
        return "ready (stand-in weights: outputs are not results)"
    missing = [weights.get_entry(k) for k in reenactment.get_engine(key).weights if weights.find_local(k) is None]
    if not missing:
        return "ready"
    sizes = [e.size_bytes for e in missing]
    size = f", {weights.human_size(sum(sizes))}" if all(sizes) else ""
    files = ", ".join(e.filename for e in missing)
    return f"not downloaded yet: the first run fetches {len(missing)} file(s){size} ({files})"


def engine_choices() -> tuple[list[tuple[str, str]], str]:
    """Dropdown entries (unavailable engines are marked, not hidden) and the status text with the reasons."""
    from backends import reenactment

    choices, lines = [], []
    for status in reenactment.engine_statuses():
        name = ENGINE_NAMES[status.key]
        choices.append((name if status.available else f"{name} (unavailable)", status.key))
        lines.append(f"- **{name}**: " + engine_state(status.key, status.available, status.reason))
    return choices, "\n".join(lines)


@user_errors
def reenact_image(
    source: str | None, driving: str | None, engine: str, truncate: bool, paste_back: bool,
    already_aligned: bool = False,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects the tracker (weight downloads)
):
    from backends import reenactment

    res = reenactment.reenact_images(
        source, driving, truncate=truncate, paste_back=paste_back, engine=engine, already_aligned=already_aligned,
        progress=progress_stages(progress),
    )
    show_notices(res.notices)
    folder = results_dir("reenactment")  # made only now that there is a result to keep
    png = folder / "reenacted.png"
    res.final.save(png)
    card = write_card(res.run_card, folder, {"final": png.name})  # the reviewer's run card, beside the PNG
    seal(folder)
    before = res.source_aligned.resize(res.result.size)
    return res.final, (before, res.result), res.stages(), str(png), res.to_dict(), (res, str(card))


@user_errors
def _example_photo(source: str, driving: str):
    """An example pair with the default engine and settings, and its metrics, as plain values (the lazily
    cached example's form: no server-side state)."""
    final, pair, stages, png, details, last = reenact_image(source, driving, "stylemask", True, False, False)
    metrics, card = review_photo(last)
    return final, pair, stages, png, details, metrics, card


@user_errors
def review_photo(last: tuple | None):
    """The papers' metrics of the last photo result and its run card; runs after the result is shown."""
    from backends.reenactment.common import photo_metrics

    if not last:
        return {"note": "Reenact a photo first: the metrics of its result appear here."}, None
    res, card = last
    return photo_metrics(res), card


COMPARE_COLUMNS = ["engine", "status", "result (s)", "CSIM ↑", "pose error (°) ↓", "expression error ↓",
                   "jaw error (°) ↓"]


@user_errors
def compare_engines(
    source: str | None, driving: str | None, truncate: bool, already_aligned: bool = False,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects the tracker
):
    """Every engine on the same pair, side by side: results, the papers' metrics and times."""
    import pandas as pd

    from backends.reenactment.common import COMPARE_KEYS
    from backends.reenactment.common import compare_engines as run_every_engine

    runs = run_every_engine(source, driving, truncate=truncate, already_aligned=already_aligned,
                            progress=lambda f, d: progress(f, desc=d))
    gallery = [(r.result.final, f"{ENGINE_NAMES[r.engine]} · {r.seconds:.1f} s") for r in runs if r.result]
    rows = []
    for r in runs:
        if r.result is None:
            rows.append([ENGINE_NAMES[r.engine], "unavailable: " + r.reason, None, None, None, None, None])
            continue
        status = "stand-in weights: not meaningful" if r.result.standin else "ran"
        rows.append([ENGINE_NAMES[r.engine], status, round(r.seconds, 1), *(r.value(k) for k in COMPARE_KEYS)])
    return gallery, pd.DataFrame(rows, columns=COMPARE_COLUMNS), [r.to_dict() for r in runs]


@user_errors
def move_directions(source: str | None, truncate: bool, already_aligned: bool, *values: float):
    from backends.reenactment import gan_directions

    res = gan_directions.edit_directions(source, values, truncate=truncate, already_aligned=already_aligned)
    show_notices(res.notices)
    return res.result, res.to_dict()


@user_errors
def reenact_video(
    source: str | None,
    video: str | None,
    engine: str,
    truncate: bool,
    paste_back: bool,
    already_aligned: bool = False,
    first_frame_as_source: bool = False,
    progress: gr.Progress = gr.Progress(),
):  # noqa: B008 - gradio injects the tracker
    from backends import reenactment

    def report(fraction: float, desc: str) -> None:
        progress(fraction, desc=desc)

    res = reenactment.reenact_video(
        source,
        video,
        truncate=truncate,
        paste_back=paste_back,
        engine=engine,
        progress=report,
        already_aligned=already_aligned,
        first_frame_as_source=bool(first_frame_as_source),
    )
    show_notices(res.notices)
    folder = res.result_video.parent
    card = write_card(res.run_card, folder, {"result_video": res.result_video.name})
    seal(folder)
    stages = [
        (res.source_aligned, "Source, aligned"),
        (res.source_inversion, "Source inversion"),
        (res.first_result, "First result frame"),
    ]
    files = [str(res.comparison_video), str(res.result_video)]
    return str(res.comparison_video), str(res.result_video), files, stages, res.to_dict(), (res, str(card))


VIDEO_PLOT_NAMES = {"identity_cosine": "CSIM ↑", "pose_error": "pose error (°) ↓", "expression_error":
                    "expression error ↓", "jaw_error": "jaw error (°) ↓", "psnr": "PSNR (dB) ↑", "lpips": "LPIPS ↓"}


def video_plot_rows(review: dict) -> list[dict]:
    """One row per sampled frame and metric (the result's, then the driving↔source baseline) for the line plot."""
    rows = []
    for group, prefix in (("per_frame", ""), ("baseline_per_frame", "baseline: ")):
        for key, values in review.get(group, {}).items():
            rows += [{"time (s)": t, "value": v, "metric": prefix + VIDEO_PLOT_NAMES.get(key, key)}
                     for t, v in zip(review["times"], values, strict=True) if v is not None]
    return rows


@user_errors
def review_video(last: tuple | None, progress: gr.Progress = gr.Progress()):  # noqa: B008
    """The photo metrics per sampled frame of the last video, plotted over time, and its run card."""
    import pandas as pd

    from backends.reenactment.common import video_metrics

    if not last:
        return gr.skip(), {"note": "Reenact a video first: its metrics per frame appear here."}, None
    res, card = last
    review = video_metrics(res, progress=progress_stages(progress))
    plot = pd.DataFrame(video_plot_rows(review), columns=["time (s)", "value", "metric"])
    return plot, review, card


def build() -> None:
    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column():
            source = UploadImage(label="Source face (identity)", elem_id="reenact-source")
            with gr.Tab("Driving photo"):
                driving = UploadImage(label="Driving face (pose and expression)", elem_id="reenact-driving")
                run_image = gr.Button("Reenact photo", variant="primary", elem_id="reenact-run")
                run_compare = gr.Button("Compare every engine on this pair", elem_id="reenact-compare")
            with gr.Tab("Driving video"):
                video = gr.Video(label="Driving video (mp4, webm, mov; first 10 s)", sources=["upload", "webcam"])
                self_video = gr.Checkbox(
                    value=False, elem_id="reenact-self-video",
                    label="The driving video is of the source person: use its first frame as the source "
                          "(self-reenactment; adds PSNR and LPIPS to the driving frames)")
                run_video = gr.Button("Reenact video", variant="primary")
            choices, status_text = engine_choices()
            engine = gr.Dropdown(choices, value="stylemask", label="Engine", elem_id="reenact-engine")
            with gr.Accordion("Engines and their weights", open=False):
                gr.Markdown(ENGINE_ABOUT)
                gr.Markdown(status_text, elem_id="reenact-engine-status")
            truncate = gr.Checkbox(value=True, label="Faithful (ψ = 0.7 truncation, as the paper's code)")
            paste_back = gr.Checkbox(value=False, label="Paste the result back into the source photo")
            aligned = gr.Checkbox(
                value=False,
                label="Already aligned (face crops: FFHQ-aligned for StyleMask, VoxCeleb crops for the others)",
            )
            examples_box = gr.Column()
            gr.Examples([[asset("astronaut_pan.mp4")]], [video], label="Example driving video", cache_examples=False)
        with gr.Column():
            with gr.Tabs() as result_tabs:
                with gr.Tab("Photo result", id="photo"):
                    # A compact WebP preview; the PNG download below keeps every pixel.
                    result = gr.Image(
                        label="Reenacted face", interactive=False, format="webp", elem_id="reenact-result"
                    )
                    slider = gr.ImageSlider(label="Before / after (source crop vs result)", interactive=False)
                    png = gr.File(label="Download PNG", interactive=False)
                    review, card_file, last_photo = review_panel("reenact")
                with gr.Tab("Engines side by side", id="compare"):
                    compare_gallery = gr.Gallery(label="One result per available engine", columns=3, height=260)
                    compare_table = gr.Dataframe(headers=COMPARE_COLUMNS, interactive=False,
                                                 label="The papers' metrics per engine (↑/↓: which way is better)",
                                                 elem_id="reenact-compare-table")
                    compare_json = gr.JSON(label="Every engine: metrics, run card, or why it is unavailable",
                                           max_height=300)
                with gr.Tab("Video result", id="video"):
                    comparison = gr.Video(label="Source | driving | result", interactive=False)
                    result_video = gr.Video(label="Result", interactive=False)
                    video_files = gr.File(label="Download MP4s", file_count="multiple", interactive=False)
                    video_plot = legend_plot(gr.LinePlot, label="The papers' metrics over time (sampled frames)",
                                             x="time (s)", y="value", color="metric", elem_id="reenact-video-plot")
                    gr.Markdown("At most 16 frames are measured, evenly spread over the frames with a face (the "
                                "metrics JSON says how many); the averages are listed there.")
                    video_review, video_card, last_video = review_panel("reenact-video")
            stages = gr.Gallery(label="Aligned crops and inversions", columns=5, height=180)
            details = gr.JSON(label="Details (mode, weights, notices)", max_height=300)
            with gr.Accordion("GAN directions: move one direction at a time (no driving face)", open=False):
                sliders = [
                    gr.Slider(-limit, limit, value=0.0, step=limit / 30, label=label) for label, limit in SLIDERS
                ]
                run_dirs = gr.Button("Move the source", elem_id="directions-run")
                moved = gr.Image(label="Source moved along the directions", interactive=False, format="png",
                                 elem_id="directions-result")
    with examples_box:  # made here, once the outputs exist; shown above the driving-video example
        lazy_examples(
            [[asset("astronaut.png"), asset("camera.png")], [asset("camera.png"), asset("astronaut.png")]],
            [source, driving], _example_photo, [result, slider, stages, png, details, review, card_file],
            on_click=[(result_tabs, gr.update(selected="photo"))], elem_id="reenact-examples",
            label="Example photos (public domain / CC0; StyleMask at the default settings: the first click "
                  "runs it, later clicks show it)",
        )
    options = [engine, truncate, paste_back, aligned]
    # Show the matching result tab first (UI only: not part of the API).
    run_image.click(lambda: gr.Tabs(selected="photo"), None, result_tabs, api_visibility="private", queue=False)
    run_video.click(lambda: gr.Tabs(selected="video"), None, result_tabs, api_visibility="private", queue=False)
    photo_event = wire(
        run_image.click,
        reenact_image,
        [source, driving, *options],
        [result, slider, stages, png, details, last_photo],
        api_name="reenact_image",
        **GPU_EVENT,
    )
    wire(photo_event.success, review_photo, [last_photo], [review, card_file], api_name="reenact_image_metrics",
         **GPU_EVENT)
    run_compare.click(lambda: gr.Tabs(selected="compare"), None, result_tabs, api_visibility="private", queue=False)
    wire(run_compare.click, compare_engines, [source, driving, truncate, aligned],
         [compare_gallery, compare_table, compare_json], api_name="compare_engines", **GPU_EVENT)
    video_event = wire(
        run_video.click,
        reenact_video,
        [source, video, *options, self_video],
        [comparison, result_video, video_files, stages, details, last_video],
        api_name="reenact_video",
        **GPU_EVENT,
    )
    wire(video_event.success, review_video, [last_video], [video_plot, video_review, video_card],
         api_name="reenact_video_metrics", **GPU_EVENT)
    direction_inputs = [source, truncate, aligned, *sliders]
    wire(run_dirs.click, move_directions, direction_inputs, [moved, details], api_name="move_directions", **GPU_EVENT)
    for slider in sliders:  # live: re-rendered on release, the inversion is cached
        wire(slider.release, move_directions, direction_inputs, [moved, details], api_visibility="private",
             **GPU_EVENT)
