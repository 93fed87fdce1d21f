"""Tab 1 — face reenactment (layout only until StyleMask lands)."""

from __future__ import annotations

import gradio as gr

from backends.catalog import require

from .common import UploadImage, unavailable_message, user_errors

ABOUT = """
### Reenactment · StyleMask, HyperReenact, GAN directions
The **source** face keeps its identity and takes the head pose and expression of a **driving** face.
StyleMask aligns both faces, inverts them into StyleGAN2's latent space with e4e and, in the generator's
style space, lets a small learned mask decide for every channel whether to take the driving face's value
(pose, expression) or keep the source's (identity, hair, background).

*Limits:* the generator knows 1024 px FFHQ-like portraits; inversion loses fine detail; strong profiles
and occlusions degrade results.
"""


@user_errors
def reenact(source: str | None, driving: str | None, engine: str):
    require(engine)


def build() -> None:
    gr.Markdown(ABOUT)
    gr.Markdown(unavailable_message("Reenactment"))
    with gr.Row():
        with gr.Column():
            source = UploadImage(label="Source face (identity)")
            driving = UploadImage(label="Driving face (pose and expression)")
            engine = gr.Dropdown(
                [("StyleMask", "stylemask"), ("HyperReenact (coming)", "hyperreenact"),
                 ("GAN directions (coming)", "gan_directions")],
                value="stylemask", label="Engine",
            )
            run = gr.Button("Reenact", variant="primary")
        with gr.Column():
            result = gr.Image(label="Reenacted face", interactive=False)
    run.click(reenact, [source, driving, engine], [result], api_name="reenact_image")
