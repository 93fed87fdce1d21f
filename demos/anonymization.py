"""Tab 4 — face anonymization with FALCO (layout only until the method lands)."""

from __future__ import annotations

import gradio as gr

from backends.catalog import require

from .common import UploadImage, unavailable_message, user_errors

ABOUT = """
### Anonymization · FALCO
FALCO inverts a face into StyleGAN2's W+ space and then **optimises a few of its layers** so that the
face's identity, as measured by the ArcFace network, moves away from the original while its attributes
(pose, expression, hair, background), as seen by the FaRL face model, stay close. The result looks like
a different person in the same photo.

*Limits:* it works on aligned, roughly frontal faces; the optimisation takes tens of steps per face.
"""


@user_errors
def anonymize(photo: str | None, margin: float, steps: float):
    require("falco")


def build() -> None:
    gr.Markdown(ABOUT)
    gr.Markdown(unavailable_message("FALCO"))
    with gr.Row():
        with gr.Column():
            photo = UploadImage(label="Face photo")
            margin = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Identity margin m")
            steps = gr.Slider(10, 100, value=50, step=5, label="Optimisation steps")
            run = gr.Button("Anonymize", variant="primary")
        with gr.Column():
            result = gr.Image(label="Anonymized face", interactive=False)
    run.click(anonymize, [photo, margin, steps], [result], api_name="anonymize")
