"""Tab 3 — part-of-speech subspaces of CLIP space (layout only until the method lands)."""

from __future__ import annotations

import gradio as gr

from backends.catalog import require

from .common import unavailable_message, user_errors

ABOUT = """
### PoS subspaces · removing a visual theme
CLIP's text embeddings mix *what* is in a picture (nouns) with *how* it looks (adjectives, styles).
The part-of-speech method finds, in closed form, linear subspaces of CLIP space where each part of
speech lives best. Projecting a prompt's embedding off a learned **theme subspace** (for example the
style of an artist) keeps the content of the prompt but removes the theme, and the text-to-image model
then draws the content without it.

*Limits:* the projection acts on the text embedding only; a theme that the content words themselves
imply can survive.
"""


@user_errors
def remove_theme(prompt: str, theme: str, seed: float):
    require("pos_subspaces")


def build() -> None:
    gr.Markdown(ABOUT)
    gr.Markdown(unavailable_message("PoS subspaces"))
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt", value="a portrait of a woman, by Van Gogh")
            theme = gr.Textbox(label="Theme to remove", value="Van Gogh")
            seed = gr.Number(value=0, precision=0, label="Seed")
            run = gr.Button("Generate", variant="primary")
        with gr.Column():
            result = gr.Gallery(label="Original prompt · theme removed", columns=2)
    run.click(remove_theme, [prompt, theme, seed], [result], api_name="pos_remove_theme")
