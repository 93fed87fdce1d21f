"""Tab 3 — part-of-speech subspaces of CLIP, and removing a visual theme from text-to-image."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from .common import (
    GPU_EVENT,
    lazy_examples,
    legend_plot,
    progress_stages,
    session_state,
    show_notices,
    stamp_standin,
    user_errors,
    wire,
)

ABOUT = """
### PoS subspaces · removing a visual theme
CLIP's text embeddings mix *what* is in a picture (nouns) with *how* it looks (adjectives, styles).
The part-of-speech method (Oldfield et al., NeurIPS 2023) learns, in closed form, a subspace for each part
of speech from about 140 000 WordNet words — one that holds the variance of nouns (or adjectives, verbs,
adverbs) while keeping the variance of the other parts out (the trade-off is **λ**; **k** is the
dimension kept). A **theme** — say, a list of painters — is learned the same way, against the four parts
of speech. Removing the theme subspace keeps the content of a prompt and drops the theme.

**Generate** draws the prompt twice from the same seed: as written, and with the theme removed.
**Analyse** shows, for any text, how much of its CLIP ViT-B/32 embedding lies in each subspace and which
vocabulary words are nearest before and after the removal.

*How the images are made (an adaptation):* the paper projects the pooled CLIP embedding that conditions
its text-to-image model. Here the model is SD-Turbo (one to four steps), conditioned on its text encoder's
token states; the theme subspace is learned on that encoder's states for the same words and removed from
every token state of the prompt (each keeps its length). On a CPU the images are decoded with TAESD, a
tiny distilled decoder (faster, slightly softer). *Limits:* a theme that the content words imply
can survive; on a CPU, a few thousand of the vocabulary words are used (the result says how many), and
the first run of a theme spends time encoding them.
"""

THEMES = [("Artists (52 painters)", "artists"), ("My own list", "custom")]
GEOMETRY = [("Geometry-aware (on the sphere)", "tangent"), ("Euclidean", "euclidean")]
ENERGY_COLUMNS = ["subspace", "share of energy", "text"]
NEAREST_COLUMNS = ["rank", "before", "before: part", "after", "after: part"]
TEXTS = ("as written", "theme removed")
BAR_ORDER = [f"{c} · {t}" for c in ("nouns", "adjectives", "verbs", "adverbs", "theme") for t in TEXTS]


def _theme(preset: str, custom: str | None):
    from backends import pos_subspaces

    if preset == "custom":
        return pos_subspaces.parse_theme("custom", custom or "")
    return pos_subspaces.parse_theme(preset)


def _status(kind: str, result) -> str:
    weights = "**stand-in weights — not a result**" if result.standin else "real weights"
    return f"**{kind}** · theme *{result.theme}* · k = {result.k} · λ = {result.lam:g} · {weights}"


@user_errors
def generate(prompt: str, preset: str, custom: str | None, lam: float, k: float, geometry: str, seed: float | None,
             randomize: bool, steps: float, model_id: str | None, progress: gr.Progress = gr.Progress()):  # noqa: B008
    from backends import pos_subspaces

    model_id = pos_subspaces.check_model_id(model_id)
    theme = _theme(preset, custom)
    result = pos_subspaces.generate(
        prompt, theme, lam=float(lam), k=int(k), geometry=geometry, seed=None if randomize else seed,
        steps=int(steps), model_id=model_id, progress=progress_stages(progress),
    )
    show_notices(result.notices)
    card = save_with_card(result)
    original, removed = result.original, result.removed
    if result.standin:  # random weights draw flat colour fields: say so on the pictures themselves
        original, removed = stamp_standin(original), stamp_standin(removed)
    status = (_status("Generated", result)
              + f" · seed {result.seed} · {result.steps} step(s) · {result.model_id} (decoder {result.decoder})"
              + f" · {result.seconds:.1f} s")
    return original, removed, result.seed, status, result.to_dict(), (result, theme, card)


def save_with_card(result) -> str:
    """Both images as PNGs (unstamped, as generated) and the run card beside them; the card's path."""
    from backends.results import results_dir, seal
    from backends.runcard import write_card

    folder = results_dir("pos_subspaces")
    result.original.save(folder / "original.png")
    result.removed.save(folder / "theme_removed.png")
    card = write_card(result.run_card, folder, {"original": "original.png", "removed": "theme_removed.png"})
    seal(folder)
    return str(card)


@user_errors
def review_generation(last: tuple | None):
    """CLIP similarity of both images to the theme's words, and the run card; runs after the images are shown."""
    from backends.pos_subspaces.generate import theme_presence

    if not last:
        return {"note": "Generate first: the theme's presence in both images appears here."}, None
    result, theme, card = last
    return theme_presence(result, theme), card


@user_errors
def analyse(text: str, preset: str, custom: str | None, lam: float, k: float, geometry: str,
            progress: gr.Progress = gr.Progress()):  # noqa: B008
    from backends import pos_subspaces

    theme = _theme(preset, custom)
    result = pos_subspaces.diagnose(text, theme, lam=float(lam), k=int(k), geometry=geometry,
                                    progress=progress_stages(progress))
    show_notices(result.notices)
    # One bar per subspace and text, side by side (the plot stacks bars that share an x value).
    rows = [{"subspace": f"{c} · {label}", "share of energy": values[c], "text": label}
            for c in result.categories
            for label, values in zip(TEXTS, (result.energy_before, result.energy_after), strict=True)]
    energy = pd.DataFrame(rows, columns=ENERGY_COLUMNS)
    nearest = pd.DataFrame(
        [[i + 1, b[0], b[1], a[0], a[1]]
         for i, (b, a) in enumerate(zip(result.nearest_before, result.nearest_after, strict=True))],
        columns=NEAREST_COLUMNS,
    )
    return energy, nearest, _status("Analysed", result), result.to_dict()


def _custom_visible(preset: str):
    return gr.Textbox(visible=preset == "custom")


EXAMPLES = [
    ["a portrait of a woman in a sunlit garden, painted by Claude Monet", "artists", ""],
    ["a lighthouse on a cliff in a storm, in the style of J. M. W. Turner", "artists", ""],
    ["a night street with rain and a neon sign, cyberpunk, synthwave", "custom",
     "neon, cyberpunk, synthwave, vaporwave"],
]


def steps_slider(model_id: str) -> gr.Slider:
    """Turbo models are distilled for one to four steps; other models get the backend's whole range."""
    from backends.pos_subspaces import MAX_STEPS

    if "turbo" in model_id.lower():
        return gr.Slider(1, 4, value=1, step=1, label="Steps (1-4; SD-Turbo is made for 1)")
    return gr.Slider(1, MAX_STEPS, value=25, step=1, label=f"Steps (1-{MAX_STEPS})")


def _example_generate(prompt: str, preset: str, custom: str | None,
                      progress: gr.Progress = gr.Progress()):  # noqa: B008
    """An example with the tab's default settings (the cached result matches these)."""
    from backends.pos_subspaces import DEFAULT_K, DEFAULT_LAM, default_model_id

    model_id = default_model_id()
    steps = 1 if "turbo" in model_id.lower() else 25
    shown = generate(prompt, preset, custom, DEFAULT_LAM, DEFAULT_K, "tangent", 0, False, steps, model_id, progress)
    return shown[:5]  # the images, seed, status and details (not the metrics state)


def build() -> None:
    from backends.pos_subspaces import DEFAULT_K, DEFAULT_LAM, MAX_K, allowed_model_ids, default_model_id
    from backends.validation import MAX_SEED

    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt (or any text to analyse)", lines=2, elem_id="pos-prompt",
                                value="a portrait of a woman in a sunlit garden, painted by Claude Monet")
            preset = gr.Dropdown(THEMES, value="artists", label="Theme to remove")
            custom = gr.Textbox(label="Your theme: words or names, separated by commas or one per line",
                                lines=3, visible=False, elem_id="pos-custom",
                                placeholder="e.g. neon, cyberpunk, synthwave, vaporwave")
            with gr.Row():
                lam = gr.Slider(0.0, 1.0, value=DEFAULT_LAM, step=0.05, label="λ (0: PCA of the theme)")
                k = gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label="k (subspace dimension)")
            geometry = gr.Radio(GEOMETRY, value="tangent", label="Model")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                randomize = gr.Checkbox(value=False, label="New random seed")
                steps = steps_slider(default_model_id())
            with gr.Accordion("Text-to-image model", open=False):
                model_id = gr.Dropdown(allowed_model_ids(), value=default_model_id(), label="Model id",
                                       info="The host sets the choices (FACELAB_POS_T2I_MODEL[S]).")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="pos-generate")
                diagnose = gr.Button("Analyse text", elem_id="pos-analyse")
        with gr.Column():
            status = gr.Markdown(elem_id="pos-status")
            with gr.Row():
                original = gr.Image(label="Prompt as written", interactive=False, format="png",
                                    elem_id="pos-original")
                removed = gr.Image(label="Theme removed (same seed)", interactive=False, format="png",
                                   elem_id="pos-removed")
            energy = legend_plot(gr.BarPlot, x="subspace", y="share of energy", color="text",
                                 label="Energy in each subspace", height=380, sort=BAR_ORDER, x_label_angle=-35,
                                 elem_id="pos-energy")
            nearest = gr.Dataframe(headers=NEAREST_COLUMNS, label="Nearest vocabulary words (CLIP ViT-B/32)",
                                   interactive=False, wrap=True, column_widths=["8%", "27%", "19%", "27%", "19%"],
                                   elem_id="pos-nearest")
            details = gr.JSON(label="Details (seed, model, words used, notices)", max_height=260)
            pos_review = gr.JSON(label="Metrics: CLIP similarity of each image to the theme's words "
                                       "(filled in after the images)", max_height=260)
            pos_card = gr.File(label="Run card (JSON): `python -m backends.replay run_card.json` draws both images "
                                     "again and compares them", interactive=False, elem_id="pos-card")
            last_generation = session_state("The last images")
    lazy_examples(EXAMPLES, [prompt, preset, custom], _example_generate, [original, removed, seed, status, details],
                  label="Example prompts (default settings; the first click draws them, later clicks show them)")
    wire(preset.change, _custom_visible, preset, custom, api_visibility="private", queue=False)
    shared = [preset, custom, lam, k, geometry]
    # Analysing draws no image: clear the previous prompt's pictures so they are not read as its result.
    diagnose.click(lambda: (None, None), None, [original, removed], api_visibility="private", queue=False)
    generate_event = wire(run.click, generate, [prompt, *shared, seed, randomize, steps, model_id],
                          [original, removed, seed, status, details, last_generation], api_name="pos_generate",
                          **GPU_EVENT)
    wire(generate_event.success, review_generation, [last_generation], [pos_review, pos_card],
         api_name="pos_generate_metrics", **GPU_EVENT)
    wire(diagnose.click, analyse, [prompt, *shared], [energy, nearest, status, details], api_name="pos_diagnose",
         **GPU_EVENT)
