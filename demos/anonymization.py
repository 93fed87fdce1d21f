"""Tab 4 — face anonymization with FALCO: one photo, or a zip of photos."""

from __future__ import annotations

import shutil

import gradio as gr
import pandas as pd

from backends.device import get_device
from backends.results import results_dir, seal
from backends.runcard import write_card

from .common import GPU_EVENT, UploadImage, asset, review_panel, show_notices, user_errors, wire
from .job_control import request_job, stop_session_jobs

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
seconds on a CPU. The **fake pool** (each fake is one 1024 px render and one FaRL pass) starts building in the
background when this tab opens and is cached; on a CPU it holds {cpu_pool} fakes by default (the paper's 60,000
would take days there; larger pools are one click away and extend the cached one). {measured} The line under the
options gives the times measured on this server as it runs, and **Stop** ends a run after its current step (or
pool face); closing the page stops it too. Roughly frontal, unoccluded faces work best; the inversion is shown so
you can judge it.
"""
# bench/bench_falco.py --end-to-end (stand-in weights of real size, 2 CPU cores shared with other jobs; the
# first photo ran at load average 5, the second at about 1; at load 10+ the same run took 21 and 10 min).
# Re-run it on the target machine and update these figures.
MEASURED_CPU = (
    "Measured on two idle CPU cores (bench/bench_falco.py --end-to-end), with the defaults ({cpu_pool} fakes, "
    "{cpu_steps} steps): the first photo took {first} (loading the networks, the pool at {per_fake} per fake, "
    "{first_step} per step), the next one {later} ({later_step} per step)."
)
MEASURED_CPU_FIGURES = {"first": "87 s", "later": "71 s", "per_fake": "0.9 s", "first_step": "3.4 s",
                        "later_step": "3.4 s"}


CPU_STEPS = 20


def _default_steps() -> int:
    # bench/bench_falco.py --end-to-end, two idle CPU cores: 3.4 s per step (22 s before the CPU-speed work).
    return 50 if get_device().type == "cuda" else CPU_STEPS


def _about() -> str:
    from backends.anonymization import POOL_SIZE

    measured = MEASURED_CPU.format(cpu_pool=POOL_SIZE["cpu"], cpu_steps=CPU_STEPS, **MEASURED_CPU_FIGURES)
    return ABOUT.format(cpu_pool=POOL_SIZE["cpu"], measured=measured)


def pool_status_text(chosen_pool: float | None = None, steps: float | None = None) -> str:
    """The pool's state and what the chosen pool and steps cost at the rates measured on this server."""
    from backends import anonymization as falco
    from backends.job_control import format_seconds

    device = get_device()
    status = falco.pool_status()
    parts = [status.describe()] if status.describe() else []
    have = status.done if status.state in {"building", "ready"} else 0
    chosen = int(chosen_pool) if chosen_pool else falco.pool_size_for(device)
    per_fake = falco.MEASURED_SECONDS_PER_FAKE.get(device.type)
    if per_fake is not None:
        if chosen > have:
            parts.append(f"the chosen pool of {chosen:,} needs about {format_seconds(per_fake * (chosen - have))} "
                         f"more ({per_fake:.1f} s per fake measured here)")
        else:
            parts.append(f"{per_fake:.1f} s per fake measured here")
    per_step = falco.MEASURED_SECONDS_PER_STEP.get(device.type)
    if per_step is not None:
        n = int(steps) if steps else _default_steps()
        parts.append(f"one optimisation step took {per_step:.1f} s here ({n} steps: about "
                     f"{format_seconds(per_step * n)})")
    return " · ".join(parts) if parts else "The fake pool is built on the first run (with progress)."


IDENTITY_CURVES = ("identity loss |cos − m|", "identity cosine")
IDENTITY_COLORS = dict(zip(IDENTITY_CURVES, ("#d62728", "#1f77b4"), strict=True))


def _curves(result) -> tuple[pd.DataFrame, pd.DataFrame]:
    loss_name, cos_name = IDENTITY_CURVES
    identity = pd.DataFrame(
        [{"step": r.step, "value": r.id, "curve": loss_name} for r in result.history]
        + [{"step": r.step, "value": r.cos, "curve": cos_name} for r in result.history],
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


def _pool_size(value: float | None) -> int | None:
    """The pool size chosen in the UI (None: this device's default)."""
    return int(value) if value else None


@user_errors
def anonymize(
    photo: str | None,
    margin: float,
    steps: float,
    seed: float = 0,
    candidates: float = 1,
    variant: str = "official",
    already_aligned: bool = False,
    pool_size: float | None = None,
    request: gr.Request = None,
    progress: gr.Progress = gr.Progress(),
):  # noqa: B008 - gradio injects the tracker
    from backends import anonymization as falco

    with request_job(request) as cancel:
        result = falco.anonymize_photo(
            photo, margin=float(margin), steps=steps, seed=seed, candidates=candidates, variant=variant,
            already_aligned=bool(already_aligned), progress=lambda f, d: progress(f, desc=d),
            pool_size=_pool_size(pool_size), cancel=cancel,
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
    pool_size: float | None = None,
    request: gr.Request = None,
    progress: gr.Progress = gr.Progress(),
):  # noqa: B008 - gradio injects the tracker
    from backends import anonymization as falco

    folder = results_dir("anonymization_zip")
    try:
        with request_job(request) as cancel:
            bundle, report = falco.anonymize_zip(
                archive, folder, margin=float(margin), steps=steps, seed=seed,
                candidates=candidates, variant=variant, already_aligned=bool(already_aligned),
                progress=lambda f, d: progress(f, desc=d), pool_size=_pool_size(pool_size), cancel=cancel,
            )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a refused request leaves nothing on disk
        raise
    seal(folder)
    table = pd.DataFrame(report.rows, columns=list(falco.REPORT_FIELDS))
    summary = {"anonymised": report.succeeded, "failed": report.failed, "standin": report.standin,
               "limits": {"files": falco.MAX_ZIP_FILES, "megabytes": falco.MAX_ZIP_BYTES // 2**20}}
    return str(bundle), table, summary


def _open_tab():
    """The tab was opened: start the background pool build and poll its progress while it runs."""
    from backends import anonymization as falco

    falco.start_background_build()
    return pool_status_text(), gr.Timer(active=falco.pool_status().state in {"loading", "building"})


def _refresh(pool_size: float | None, steps: float | None):
    from backends import anonymization as falco

    building = falco.pool_status().state in {"loading", "building"}
    return pool_status_text(pool_size, steps), gr.Timer(active=building)


def build():
    """Lay out the tab; returns the hook app.py calls with the tab (it starts the pool when opened)."""
    from backends.anonymization import MAX_CANDIDATES, MAX_STEPS, MAX_ZIP_BYTES, MAX_ZIP_FILES, pool_choices
    from backends.validation import MAX_SEED

    device = get_device()
    choices = pool_choices(device)
    gr.Markdown(_about())
    with gr.Row():
        with gr.Column():
            with gr.Tab("Photo"):
                photo = UploadImage(label="Face photo", elem_id="falco-photo")
                run = gr.Button("Anonymize", variant="primary", elem_id="falco-run")
                gr.Examples([[asset("astronaut.png")], [asset("camera.png")]], [photo], cache_examples=False,
                            label="Example photos (a click loads the photo; then press Anonymize)")
            with gr.Tab("Zip of photos"):
                archive = gr.File(
                    label=f"Zip of photos (at most {MAX_ZIP_FILES} images, {MAX_ZIP_BYTES // 2**20} MB)",
                    file_types=[".zip"], elem_id="falco-zip",
                )
                run_zip = gr.Button("Anonymize all", variant="primary", elem_id="falco-run-zip")
            stop = gr.Button("Stop", variant="stop", elem_id="falco-stop")
            margin = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Identity margin m",
                               info="Identity cosine to aim at: 0 = unrelated person (the paper's default).")
            steps = gr.Slider(1, MAX_STEPS, value=_default_steps(), step=1, label="Optimisation steps",
                              info="The paper uses 50 (about 0.1 s each on a GPU, seconds each on a CPU).",
                              elem_id="falco-steps")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                candidates = gr.Slider(1, MAX_CANDIDATES, value=1, step=1, label="Candidates",
                                       info="1 = nearest fake (paper); k > 1 = one of the k nearest, by seed.")
            variant = gr.Radio(["official", "corrected"], value="official", label="Variant")
            aligned = gr.Checkbox(value=False, label="Already aligned (FFHQ-aligned crops: skip face detection)")
            pool = gr.Radio([(f"{n:,}", n) for n in choices], value=choices[0], label="Fake pool (faces)",
                            info=f"The nearest fake starts the optimisation; the paper uses {60_000:,}. A larger "
                                 "pool extends the cached one (time per fake: see below).",
                            elem_id="falco-pool")
            pool_status = gr.Markdown(pool_status_text(), elem_id="falco-pool-status")
            poll = gr.Timer(2.0, active=False)
        with gr.Column():
            with gr.Tabs(selected="falco-photo-result") as result_tabs:
                with gr.Tab("Photo result", id="falco-photo-result"):
                    pasted = gr.Image(label="Anonymised photo", interactive=False, format="png",
                                      elem_id="falco-result")
                    slider = gr.ImageSlider(label="Before / after (aligned face)", interactive=False)
                    summary = gr.Markdown(elem_id="falco-summary")
                    stages = gr.Gallery(label="Aligned original, inversion, start, anonymised", columns=4,
                                        height=200)
                    # No fixed height: 220 px clipped the legend below the plot (its title showed, no entries).
                    identity_plot = gr.LinePlot(
                        x="step", y="value", color="curve", label="Identity",
                        color_map=IDENTITY_COLORS, elem_id="falco-identity-plot")
                    attr_plot = gr.LinePlot(x="step", y="attribute loss", label="Attributes")
                    downloads = gr.File(label="Download PNGs", file_count="multiple", interactive=False)
                    details = gr.JSON(label="Details (cosines, neighbour, weights, notices)", max_height=300)
                    review, card_file, last_photo = review_panel("falco")
                with gr.Tab("Zip result", id="falco-zip-result"):
                    bundle = gr.File(label="Anonymised photos and report.csv (zip)", interactive=False,
                                     elem_id="falco-bundle")
                    report = gr.Dataframe(label="Report", interactive=False)
                    zip_details = gr.JSON(label="Summary")
    options = [margin, steps, seed, candidates, variant, aligned, pool]
    status_inputs = [pool, steps]
    run.click(lambda: gr.Tabs(selected="falco-photo-result"), None, result_tabs, queue=False,
              api_visibility="private")
    photo_event = wire(
        run.click, anonymize, [photo, *options],
        [pasted, slider, stages, identity_plot, attr_plot, summary, downloads, details, last_photo],
        api_name="anonymize", **GPU_EVENT,
    )
    wire(photo_event.success, review_photo, [last_photo], [review, card_file], api_name="anonymize_metrics",
         **GPU_EVENT)
    run_zip.click(lambda: gr.Tabs(selected="falco-zip-result"), None, result_tabs, queue=False,
                  api_visibility="private")
    zip_event = wire(run_zip.click, anonymize_zip, [archive, *options], [bundle, report, zip_details],
                     api_name="anonymize_zip", **GPU_EVENT)
    # Stop ends the request at once (its queue slot frees) and the backend loop after its current step.
    stop.click(stop_session_jobs, None, None, cancels=[photo_event, zip_event], queue=False, api_visibility="private")
    for event in (photo_event, zip_event):
        wire(event.then, _refresh, status_inputs, [pool_status, poll], queue=False, api_visibility="private")
    for control in (pool, steps):
        wire(control.change, _refresh, status_inputs, [pool_status, poll], queue=False, api_visibility="private")
    wire(poll.tick, _refresh, status_inputs, [pool_status, poll], queue=False, api_visibility="private")

    def on_open(tab: gr.Tab) -> None:
        tab.select(_open_tab, None, [pool_status, poll], queue=False, api_visibility="private")

    return on_open
