"""Tab 4 — face anonymization with FALCO: one photo, or a zip of photos."""

from __future__ import annotations

import shutil

import gradio as gr
import pandas as pd

from backends.device import get_device
from backends.results import results_dir, seal
from backends.runcard import write_card

from .common import GPU_EVENT, UploadImage, asset, review_panel, show_notices, user_errors, wire

ABOUT = """
### Anonymization · FALCO
FALCO (Barattin et al., CVPR 2023) gives a face a **new identity** while keeping its attributes (pose, expression,
hair, age, lighting). The photo is aligned and inverted into StyleGAN2's W+ space with e4e. Among a pool of
generated faces, the one closest to yours in the FaRL face-feature space is found, and its code replaces yours in
W+ layers 3–7 (the others stay yours, bit for bit). Those five layers are then optimised with Adam so that the
ArcFace **identity cosine** to your face goes to the **margin m** (0 = unrelated, higher = more similar) while the
FaRL tokens of the two faces stay close. The new face is pasted back into your photo with a feathered edge.

**Variant:** *official* replicates the paper's code, quirks included (the real photo enters the loss networks in
[0, 1] and the generated face in [−1, 1]; FaRL weights rounded to fp16 as on the authors' GPU; min–max image
output). *corrected* gives each network the range it was trained on. **Candidates** > 1 starts from one of the
k nearest fakes, picked by the seed (1 = the paper's nearest neighbour; the seed then changes nothing).

*Limits:* one optimisation step renders a 1024 px face and back-propagates through it: about 0.1 s on a big GPU,
about 4 s on two CPU cores, so CPU runs default to 20 steps (under two minutes). The fake pool is built once per
machine (with progress; about 1 s per fake on two CPU cores) and cached. Roughly frontal, unoccluded faces work
best; the inversion is shown so you can judge it.
"""


def _default_steps() -> int:
    # bench/bench_falco.py, two CPU cores: 3.8 s per step (it was 22 s before the CPU-speed work, hence 5 then).
    return 50 if get_device().type == "cuda" else 20


def _curves(result) -> tuple[pd.DataFrame, pd.DataFrame]:
    identity = pd.DataFrame(
        [{"step": r.step, "value": r.id, "curve": "identity loss |cos − m|"} for r in result.history]
        + [{"step": r.step, "value": r.cos, "curve": "identity cosine"} for r in result.history],
        columns=["step", "value", "curve"],
    )
    attributes = pd.DataFrame(
        [{"step": r.step, "attribute loss": r.attr} for r in result.history], columns=["step", "attribute loss"]
    )
    return identity, attributes


def _summary(result) -> str:
    weights = "**stand-in weights — not a result**" if result.standin else "real weights"
    return (
        f"**Identity cosine** to your face: inversion {result.cos_inversion:.3f} → start {result.cos_start:.3f} → "
        f"**anonymised {result.cos_final:.3f}** (target m = {result.margin:g}) · **attribute similarity** "
        f"(FaRL) {result.attr_similarity:.3f} · {result.steps} steps, seed {result.seed}, "
        f"variant {result.variant}, pool of {result.pool_size} fakes · {weights}"
    )


@user_errors
def anonymize(
    photo: str | None,
    margin: float,
    steps: float,
    seed: float = 0,
    candidates: float = 1,
    variant: str = "official",
    already_aligned: bool = False,
    progress: gr.Progress = gr.Progress(),
):  # noqa: B008 - gradio injects the tracker
    from backends import anonymization as falco

    result = falco.anonymize_photo(
        photo, margin=float(margin), steps=steps, seed=seed, candidates=candidates, variant=variant,
        already_aligned=bool(already_aligned), progress=lambda f, d: progress(f, desc=d),
    )
    show_notices(result.notices)
    folder = results_dir("anonymization")
    pasted_png, face_png = folder / "anonymized_photo.png", folder / "anonymized_face.png"
    result.pasted.save(pasted_png)
    result.anonymized.save(face_png)
    card = write_card(result.run_card, folder, {"pasted": pasted_png.name, "anonymized": face_png.name})
    seal(folder)
    stages = [
        (result.aligned, "Aligned original"),
        (result.inversion, "Inversion (e4e)"),
        (result.start, "Start: nearest fake in layers 3–7"),
        (result.anonymized, "Anonymised"),
    ]
    identity, attributes = _curves(result)
    return (
        result.pasted, (result.aligned, result.anonymized), stages, identity, attributes, _summary(result),
        [str(pasted_png), str(face_png)], result.to_dict(), (result, str(card)),
    )


@user_errors
def review_photo(last: tuple | None):
    """The papers' metrics of the last anonymised photo and its run card; runs after the result is shown."""
    from backends.anonymization.photo import photo_metrics

    if not last:
        return {"note": "Anonymize a photo first: the metrics of its result appear here."}, None
    result, card = last
    return photo_metrics(result), card


@user_errors
def anonymize_zip(
    archive: str | None,
    margin: float,
    steps: float,
    seed: float = 0,
    candidates: float = 1,
    variant: str = "official",
    already_aligned: bool = False,
    progress: gr.Progress = gr.Progress(),
):  # noqa: B008 - gradio injects the tracker
    from backends import anonymization as falco

    folder = results_dir("anonymization_zip")
    try:
        bundle, report = falco.anonymize_zip(
            archive, folder, margin=float(margin), steps=steps, seed=seed,
            candidates=candidates, variant=variant, already_aligned=bool(already_aligned),
            progress=lambda f, d: progress(f, desc=d),
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a refused request leaves nothing on disk
        raise
    seal(folder)
    table = pd.DataFrame(report.rows, columns=list(falco.REPORT_FIELDS))
    summary = {"anonymised": report.succeeded, "failed": report.failed, "standin": report.standin,
               "limits": {"files": falco.MAX_ZIP_FILES, "megabytes": falco.MAX_ZIP_BYTES // 2**20}}
    return str(bundle), table, summary


def build() -> None:
    from backends.anonymization import MAX_CANDIDATES, MAX_STEPS, MAX_ZIP_BYTES, MAX_ZIP_FILES
    from backends.validation import MAX_SEED

    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column():
            with gr.Tab("Photo"):
                photo = UploadImage(label="Face photo", elem_id="falco-photo")
                run = gr.Button("Anonymize", variant="primary", elem_id="falco-run")
                gr.Examples([[asset("astronaut.png")], [asset("camera.png")]], [photo], cache_examples=False)
            with gr.Tab("Zip of photos"):
                archive = gr.File(
                    label=f"Zip of photos (at most {MAX_ZIP_FILES} images, {MAX_ZIP_BYTES // 2**20} MB)",
                    file_types=[".zip"],
                )
                run_zip = gr.Button("Anonymize all", variant="primary")
            margin = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Identity margin m",
                               info="Identity cosine to aim at: 0 = unrelated person (the paper's default).")
            steps = gr.Slider(1, MAX_STEPS, value=_default_steps(), step=1, label="Optimisation steps",
                              info="The paper uses 50 (about 0.1 s each on a GPU, about 4 s on two CPU cores).",
                              elem_id="falco-steps")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                candidates = gr.Slider(1, MAX_CANDIDATES, value=1, step=1, label="Candidates",
                                       info="1 = nearest fake (paper); k > 1 = one of the k nearest, by seed.")
            variant = gr.Radio(["official", "corrected"], value="official", label="Variant")
            aligned = gr.Checkbox(value=False, label="Already aligned (FFHQ-aligned crops: skip face detection)")
        with gr.Column():
            with gr.Tabs():
                with gr.Tab("Photo result"):
                    pasted = gr.Image(label="Anonymised photo", interactive=False, format="png",
                                      elem_id="falco-result")
                    slider = gr.ImageSlider(label="Before / after (aligned face)", interactive=False)
                    summary = gr.Markdown(elem_id="falco-summary")
                    stages = gr.Gallery(label="Aligned original, inversion, start, anonymised", columns=4,
                                        height=200)
                    with gr.Row():
                        identity_plot = gr.LinePlot(x="step", y="value", color="curve", label="Identity",
                                                    height=220)
                        attr_plot = gr.LinePlot(x="step", y="attribute loss", label="Attributes", height=220)
                    downloads = gr.File(label="Download PNGs", file_count="multiple", interactive=False)
                    details = gr.JSON(label="Details (cosines, neighbour, weights, notices)", max_height=300)
                    review, card_file, last_photo = review_panel("falco")
                with gr.Tab("Zip result"):
                    bundle = gr.File(label="Anonymised photos and report.csv (zip)", interactive=False)
                    report = gr.Dataframe(label="Report", interactive=False)
                    zip_details = gr.JSON(label="Summary")
    options = [margin, steps, seed, candidates, variant, aligned]
    photo_event = wire(
        run.click, anonymize, [photo, *options],
        [pasted, slider, stages, identity_plot, attr_plot, summary, downloads, details, last_photo],
        api_name="anonymize", **GPU_EVENT,
    )
    wire(photo_event.success, review_photo, [last_photo], [review, card_file], api_name="anonymize_metrics",
         **GPU_EVENT)
    wire(run_zip.click, anonymize_zip, [archive, *options], [bundle, report, zip_details], api_name="anonymize_zip",
         **GPU_EVENT)
