"""Tab 2 — latent-path editing with ContraCLIP (UI only; the method lives in backends/latent_paths/)."""

from __future__ import annotations

import random

import gradio as gr

from backends.results import seal
from backends.runcard import write_card

from .common import (
    GPU_EVENT,
    UploadImage,
    asset,
    lazy_examples,
    progress_stages,
    session_state,
    show_notices,
    user_errors,
    wire,
)

ABOUT = """
### Latent-path editing · ContraCLIP
Each path is learned from a **semantic dipole**, two contrasting sentences such as *"a picture of an old
person."* and *"a picture of a young person."*. In StyleGAN2's W+ space (the first 12 of its 18 layers) a set
of radial basis functions defines a direction at every point, so a walk along a path **curves**: the
direction is recomputed after every step. The paths were trained so that each step moves the image's CLIP
embedding the way the sentence pair's text embeddings differ, with a contrastive loss.

Start from a **photo** (aligned and inverted with e4e, without truncation) or from a **seed** (a sampled face,
ψ = 0.7). Positive strength walks toward sentence A, negative toward sentence B; strength = steps × step size.
The strip shows frames from −max to +max, with a plot of the CLIP margin cos(image, A) − cos(image, B).

*Rendering:* the stored codes of the walk are rendered (default). The official script instead renders each
frame with its last step added a second time; pick *official* to see that.
*Limits:* paths are learned on FFHQ faces; real photos lose detail in inversion, long walks drift in identity.
"""

RENDER_CHOICES = [("Stored codes (default)", "stored"), ("Official script (last step added twice)", "official")]
START_CHOICES = [("Photo", "photo"), ("Seed", "seed")]


def _corpus_choices() -> list[tuple[str, str]]:
    from backends import latent_paths as contraclip

    titles = {k: v[0] for k, v in contraclip.CORPORA.items()}
    return [(titles.get(c, c), c) for c in contraclip.corpus_names()]


def _path_labels(corpus: str) -> list[str]:
    from backends import latent_paths as contraclip

    return [p.label for p in contraclip.presets(corpus)]


@user_errors
def corpus_changed(corpus: str):
    labels = _path_labels(corpus)
    return gr.Dropdown(choices=labels, value=labels[0]), sentences(corpus, labels[0])


@user_errors
def sentences(corpus: str, path: str) -> str:
    from backends import latent_paths as contraclip

    model_paths = contraclip.presets(corpus)
    for p in model_paths:
        if p.label == path:
            return f"**A** (positive strength): *{p.positive}*  \n**B** (negative strength): *{p.negative}*"
    return ""


def _start(start: str, photo: str | None, seed: float | None) -> tuple[str | None, int | None]:
    if start == "photo":
        if photo is None:
            from backends.errors import InputError

            raise InputError("Please upload a photo, or choose Seed to start from a sampled face.")
        return photo, None
    return None, (int(seed) if seed is not None else None)


@user_errors
def edit_path(start: str, photo: str | None, seed: float | None, corpus: str, path: str, strength: float,
              eps: float, render_mode: str, paste_back: bool,
              progress: gr.Progress = gr.Progress()):  # noqa: B008 - gradio injects the tracker
    from backends import latent_paths as contraclip
    from backends.results import results_dir

    photo, seed = _start(start, photo, seed)
    res = contraclip.edit(photo, seed=seed, corpus=corpus, path=path, strength=float(strength), eps=float(eps),
                          render_mode=render_mode, paste_back=bool(paste_back), with_origin=True,
                          progress=progress_stages(progress))
    show_notices(res.notices)
    folder = results_dir("latent_paths")
    png = folder / "latent_path_edit.png"
    res.final.save(png)
    card = write_card(res.run_card, folder, {"final": png.name})  # the run card, beside the PNG (and in the details)
    seal(folder)
    stages = [(res.origin, "Start (inversion)" if res.start.kind == "photo" else f"Start (seed {res.start.seed})")]
    if res.start.inversion is not None:
        stages.insert(0, (res.start.inversion.aligned.image, "Aligned photo"))
    stages.append((res.image, f"Strength {res.strength:+.2f}"))
    return res.final, (res.origin, res.image), stages, str(png), res.to_dict(), str(card)


def _example_edit(photo: str):
    """An example photo along the first attributes path at the tab's defaults (the cached example's form)."""
    from backends import latent_paths as contraclip

    first = _path_labels("attributes")[0]
    return edit_path("photo", photo, 0, "attributes", first, 3.0, contraclip.DEFAULT_EPS, "stored", False)


@user_errors
def path_strip(start: str, photo: str | None, seed: float | None, corpus: str, path: str, max_strength: float,
               frames: float, eps: float, render_mode: str, paste_back: bool, margin: bool,
               progress: gr.Progress = gr.Progress()):  # noqa: B008 - gradio injects the tracker
    from backends import latent_paths as contraclip

    photo, seed = _start(start, photo, seed)

    res = contraclip.strip(photo, seed=seed, corpus=corpus, path=path, max_strength=float(max_strength),
                           frames=int(frames), eps=float(eps), render_mode=render_mode, paste_back=bool(paste_back),
                           margin=bool(margin), progress=progress_stages(progress))
    show_notices(res.edit.notices)
    folder = res.gif.parent
    res.strip.save(folder / "latent_path_strip.png")
    card = write_card(res.run_card, folder, {"strip": "latent_path_strip.png", "animation": res.mp4.name})
    seal(folder)
    return res.strip, str(res.gif), [str(res.gif), str(res.mp4)], res.plot, res.to_dict(), (res, str(card))


@user_errors
def review_strip(last):
    """Identity cosine to the start along the last strip, plotted with the CLIP margin; runs after the strip."""
    from backends.latent_paths.traversal import strip_metrics

    if not last:
        return gr.skip(), {"note": "Make a strip first: its identity curve appears here."}, None
    res, card = last
    shown, plot = strip_metrics(res)
    return plot, shown, card


def build() -> None:
    from backends import latent_paths as contraclip
    from backends.validation import MAX_SEED

    gr.Markdown(ABOUT)
    first_labels = _path_labels("attributes")
    with gr.Row():
        with gr.Column():
            start = gr.Radio(START_CHOICES, value="photo", label="Start from")
            photo = UploadImage(label="Face photo")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed (sampled face, ψ 0.7)")
                reseed = gr.Button("Random seed", size="sm")
            corpus = gr.Dropdown(_corpus_choices(), value="attributes", label="Corpus")
            path = gr.Dropdown(first_labels, value=first_labels[0], label="Path", allow_custom_value=True)
            dipole = gr.Markdown(sentences("attributes", first_labels[0]))
            strength = gr.Slider(-contraclip.MAX_STRENGTH, contraclip.MAX_STRENGTH, value=3.0, step=0.15,
                                 label="Strength along the path (+ toward A, − toward B)", elem_id="cc-strength")
            eps = gr.Number(value=contraclip.DEFAULT_EPS, minimum=0.01, maximum=1.0, label="Step size")
            render_mode = gr.Radio(RENDER_CHOICES, value="stored", label="Rendering")
            paste_back = gr.Checkbox(value=False, label="Paste the result back into the photo")
            run = gr.Button("Edit", variant="primary", elem_id="cc-run")
            with gr.Accordion("Strip across the path", open=True):
                max_strength = gr.Slider(0.15, contraclip.MAX_STRENGTH, value=6.0, step=0.15, label="Largest strength")
                frames = gr.Slider(2, 15, value=contraclip.DEFAULT_FRAMES, step=1, label="Frames")
                margin = gr.Checkbox(value=True, label="Plot the CLIP margin (loads CLIP ViT-B/32)")
                run_strip = gr.Button("Make strip", variant="secondary", elem_id="cc-strip")
            examples_box = gr.Column()
        with gr.Column():
            with gr.Tabs() as result_tabs:
                with gr.Tab("Edit", id="edit"):
                    result = gr.Image(label="Edited face", interactive=False, format="png", elem_id="cc-result")
                    before_after = gr.ImageSlider(label="Before / after (start vs edit)", interactive=False)
                    stages = gr.Gallery(label="Aligned photo, start and edit", columns=3, height=180)
                    png = gr.File(label="Download PNG", interactive=False)
                    edit_card = gr.File(label="Run card (JSON): python -m backends.replay run_card.json [PHOTO]",
                                        interactive=False, elem_id="cc-card")
                with gr.Tab("Strip", id="strip"):
                    strip_image = gr.Image(label="Strip: −max … +max", interactive=False, elem_id="cc-strip-image")
                    plot = gr.Image(label="CLIP margin along the path", interactive=False)
                    gif = gr.Image(label="Animation", interactive=False, type="filepath")
                    files = gr.File(label="Download GIF and MP4", file_count="multiple", interactive=False)
                    strip_review = gr.JSON(label="Metrics: ArcFace identity cosine to the start along the strip "
                                                 "(filled in after the strip; the plot then shows both curves)",
                                           max_height=240)
                    strip_card = gr.File(label="Run card (JSON): `python -m backends.replay run_card.json "
                                               "[PHOTO]` re-runs the strip", interactive=False, elem_id="cc-strip-card")
                    last_strip = session_state("The last strip")
            details = gr.JSON(label="Details (path, sentences, steps, seed, weights)", max_height=300)

    # Show the matching result tab first (UI only: not part of the API).
    run.click(lambda: gr.Tabs(selected="edit"), None, result_tabs, api_visibility="private", queue=False)
    run_strip.click(lambda: gr.Tabs(selected="strip"), None, result_tabs, api_visibility="private", queue=False)
    photo.upload(lambda: "photo", None, start, api_visibility="private", queue=False)
    reseed.click(lambda: (random.randrange(2**32), "seed"), None, [seed, start], api_visibility="private", queue=False)
    wire(corpus.change, corpus_changed, corpus, [path, dipole], api_visibility="private", queue=False)
    wire(path.change, sentences, [corpus, path], dipole, api_visibility="private", queue=False)
    inputs = [start, photo, seed, corpus, path]
    options = [eps, render_mode, paste_back]
    edit_outputs = [result, before_after, stages, png, details, edit_card]
    with examples_box:  # made once the outputs exist
        lazy_examples([[asset("astronaut.png")], [asset("camera.png")]], [photo], _example_edit, edit_outputs,
                      on_click=[(start, "photo"), (result_tabs, gr.update(selected="edit"))], elem_id="cc-examples",
                      label="Example photos (public domain / CC0; the first path at strength +3: the first click "
                            "runs it, later clicks show it)")
    wire(run.click, edit_path, [*inputs, strength, *options], edit_outputs, api_name="edit_latent_path", **GPU_EVENT)
    # Moving the slider re-uses the cached inversion and walk: only the new point is rendered.
    wire(strength.release, edit_path, [*inputs, strength, *options], edit_outputs, api_visibility="private",
         **GPU_EVENT)
    strip_event = wire(run_strip.click, path_strip, [*inputs, max_strength, frames, *options, margin],
                       [strip_image, gif, files, plot, details, last_strip], api_name="latent_path_strip",
                       **GPU_EVENT)
    wire(strip_event.success, review_strip, [last_strip], [plot, strip_review, strip_card],
         api_name="latent_path_strip_metrics",
         **GPU_EVENT)
