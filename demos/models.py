"""Models & about: the weight registry, the device, and a check of the face pipeline."""

from __future__ import annotations

import gradio as gr

from backends import weights
from backends.device import get_device, precision_report
from backends.face.pipeline import prepare_face
from backends.standin import standin_enabled

from .common import UploadImage, asset, lazy_examples, show_notices, user_errors, wire

ABOUT = """
### Models and weights
Every network Face Lab uses, where its weights come from, its licence and whether it is present on this
machine. A file is looked for in `$FACELAB_WEIGHTS_DIR`, then among the files shipped with the code
(`assets/weights/`: the YuNet detector), then in the Hugging Face cache and Face Lab's download cache, then
downloaded: from `$FACELAB_HUB_REPO` when set, the public hub mirrors, and the authors' own links
(Google Drive, Dropbox, GitHub releases). A tab downloads what it needs on first use, with a progress bar; the
commands below fetch ahead of time. *Host supplies* marks a file with no public source (the ContraCLIP
expressions corpus): put it in `$FACELAB_WEIGHTS_DIR` or in your own Hugging Face repo named by `FACELAB_HUB_REPO`.
"""

COLUMNS = ["key", "tabs", "status", "size", "licence", "source"]
TAB_COLUMNS = ["tab", "needs", "missing", "command", "host supplies"]


def registry_table() -> list[list[str]]:
    return [[row[c] for c in COLUMNS] for row in weights.table_rows()]


def tabs_table() -> list[list[str]]:
    """Per tab: which checkpoints are missing here and the exact command that fetches them."""
    return [[row[c] for c in TAB_COLUMNS] for row in weights.tab_rows()]


# Wide text columns get most of the width and wrap, so no column is cut off at the container's edge.
COLUMN_WIDTHS = ["15%", "15%", "8%", "8%", "18%", "36%"]
TAB_COLUMN_WIDTHS = ["12%", "6%", "32%", "34%", "16%"]


def detector_choices() -> list[tuple[str, str]]:
    """The detectors a visitor can pick here: RetinaFace is offered only where its file is, or can be fetched."""
    from backends.weights import find_local, get_entry, human_size, offline

    choices = [("auto", "auto"), ("yunet", "yunet")]
    entry = get_entry("retinaface_resnet50")
    if find_local(entry.key) is not None:
        choices.append(("retinaface", "retinaface"))
    elif not offline():
        size = f" of {human_size(entry.size_bytes)}" if entry.size_bytes else ""
        choices.append((f"retinaface (first use downloads a file{size})", "retinaface"))
    return choices


def runtime_info() -> dict:
    return {"device": str(get_device()), "precision": precision_report(), "stand_in_weights": standin_enabled()}


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


def _example_check(photo: str | None):
    return check_face(photo, "auto", False)


def build() -> None:
    gr.Markdown(ABOUT)
    gr.JSON(runtime_info(), label="Runtime")
    by_tab = gr.Dataframe(
        tabs_table(), headers=TAB_COLUMNS, label="What each tab still needs on this machine", interactive=False,
        wrap=True, column_widths=TAB_COLUMN_WIDTHS, elem_id="weights-by-tab",
    )
    table = gr.Dataframe(registry_table(), headers=COLUMNS, label="Checkpoints", interactive=False, wrap=True,
                         column_widths=COLUMN_WIDTHS, elem_id="weights-table")
    refresh = gr.Button("Refresh", size="sm")
    wire(refresh.click, registry_table, None, table, api_name="models")
    wire(refresh.click, tabs_table, None, by_tab, api_name="models_by_tab")
    with gr.Accordion("Try the face pipeline", open=True):
        gr.Markdown("Upload a photo to see the detected face, its 5 landmarks and the FFHQ-aligned crop.")
        with gr.Row():
            with gr.Column():
                photo = UploadImage(label="Photo", elem_id="face-check-input")
                engine = gr.Radio(detector_choices(), value="auto", label="Detector", elem_id="face-check-detector")
                aligned = gr.Checkbox(False, label="Already aligned (skip detection)")
                run = gr.Button("Align", variant="primary", elem_id="face-check-run")
            with gr.Column():
                overlay = gr.Image(label="Detection", interactive=False)
                crop = gr.Image(label="Aligned crop", interactive=False, elem_id="face-check-crop")
                info = gr.JSON(label="Details")
    lazy_examples([[asset("astronaut.png")], [asset("camera.png")]], [photo], _example_check, [overlay, crop, info],
                  label="Example photos (automatic detector; computed at the first click)")
    wire(run.click, check_face, [photo, engine, aligned], [overlay, crop, info], api_name="align_face")
