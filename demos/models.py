"""Models & about: the weight registry, the device, and a check of the face pipeline."""

from __future__ import annotations

import gradio as gr

from backends import weights
from backends.device import get_device
from backends.face.pipeline import prepare_face
from backends.standin import standin_enabled

from .common import UploadImage, asset, show_notices, user_errors

ABOUT = """
### Models and weights
Every network Face Lab uses, where its weights come from, its licence and whether it is present on this
machine. Files are looked for in `$FACELAB_WEIGHTS_DIR`, then in the Hugging Face cache, then downloaded.
Files marked *host supplies* have no public mirror: the Space owner uploads them to their own Hugging Face
repo and sets `FACELAB_HUB_REPO`. `python -m backends.weights list` prints the same table.
"""

COLUMNS = ["key", "tabs", "status", "size", "licence", "source"]


def registry_table() -> list[list[str]]:
    return [[row[c] for c in COLUMNS] for row in weights.table_rows()]


def runtime_info() -> dict:
    return {"device": str(get_device()), "stand_in_weights": standin_enabled()}


@user_errors
def check_face(photo: str | None, engine: str, already_aligned: bool):
    """Detect, align (FFHQ, 512 px) and show what the face pipeline sees."""
    prepared = prepare_face(photo, size=512, already_aligned=already_aligned, engine=engine)
    show_notices(prepared.notices)
    face = prepared.face
    info = {
        "faces_used": 0 if face is None else 1,
        "score": None if face is None else round(face.score, 3),
        "box": None if face is None else [round(v, 1) for v in face.box],
        "landmarks": None if face is None else face.landmarks.round(1).tolist(),
        "notices": prepared.notices,
        "standin": standin_enabled(),  # detectors always use real weights; the flag says what the app runs on
    }
    return prepared.overlay(), prepared.aligned.image, info


def build() -> None:
    gr.Markdown(ABOUT)
    gr.JSON(runtime_info(), label="Runtime")
    table = gr.Dataframe(registry_table(), headers=COLUMNS, label="Checkpoints", interactive=False, wrap=True)
    refresh = gr.Button("Refresh", size="sm")
    refresh.click(registry_table, None, table, api_name="models")
    with gr.Accordion("Try the face pipeline", open=True):
        gr.Markdown("Upload a photo to see the detected face, its 5 landmarks and the FFHQ-aligned crop.")
        with gr.Row():
            with gr.Column():
                photo = UploadImage(label="Photo", elem_id="face-check-input")
                engine = gr.Radio(["auto", "yunet", "retinaface"], value="auto", label="Detector")
                aligned = gr.Checkbox(False, label="Already aligned (skip detection)")
                run = gr.Button("Align", variant="primary", elem_id="face-check-run")
            with gr.Column():
                overlay = gr.Image(label="Detection", interactive=False)
                crop = gr.Image(label="Aligned crop", interactive=False, elem_id="face-check-crop")
                info = gr.JSON(label="Details")
    gr.Examples([[asset("astronaut.png")], [asset("camera.png")]], [photo], cache_examples=False)
    run.click(check_face, [photo, engine, aligned], [overlay, crop, info], api_name="align_face")
