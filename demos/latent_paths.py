"""Tab 2 — latent-path editing with ContraCLIP (layout only until the method lands)."""

from __future__ import annotations

import gradio as gr

from backends.catalog import require

from .common import UploadImage, unavailable_message, user_errors

ABOUT = """
### Latent-path editing · ContraCLIP
ContraCLIP learns, for each attribute described in words (for example *"a smiling face"* against
*"a neutral face"*), a **curved path** through StyleGAN2's W+ latent space. Each path is built from a
set of radial basis functions that bend the direction of travel depending on where you are, trained
with a contrastive loss in CLIP space so that walking along one path changes its attribute and little else.
You upload a face, it is inverted into W+, and a slider walks along the chosen path.

*Limits:* the paths are learned for the FFHQ generator and a fixed list of attributes; identity drifts
for long walks.
"""


@user_errors
def edit(photo: str | None, attribute: str, steps: float):
    require("contraclip")


def build() -> None:
    gr.Markdown(ABOUT)
    gr.Markdown(unavailable_message("ContraCLIP"))
    with gr.Row():
        with gr.Column():
            photo = UploadImage(label="Face photo")
            attribute = gr.Dropdown(
                ["smile", "anger", "surprise", "age", "beard"], value="smile", label="Attribute path"
            )
            steps = gr.Slider(-10, 10, value=4, step=1, label="Steps along the path")
            run = gr.Button("Edit", variant="primary")
        with gr.Column():
            result = gr.Image(label="Edited face", interactive=False)
    run.click(edit, [photo, attribute, steps], [result], api_name="edit_latent_path")
