"""What every tab shares: error translation, input checks, notices, the stand-in banner, upload components."""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from backends import validation
from backends.errors import FaceLabError, InputError, MissingWeightsError, scrub_paths, shorten
from backends.standin import standin_enabled

log = logging.getLogger("facelab")

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def asset(name: str) -> str:
    """Path of an example file shipped in assets/ (see assets/LICENSES.md)."""
    return str(ASSETS / name)


GPU_QUEUE = "gpu"  # one concurrency id shared by every GPU-heavy event
# How many GPU-heavy requests run at once; the rest wait in the queue. One keeps memory
# bounded on a small GPU or a 2-core CPU Space; raise it on a big GPU.
GPU_CONCURRENCY = int(os.environ.get("FACELAB_GPU_CONCURRENCY", "1"))
GPU_EVENT: dict[str, Any] = {"concurrency_id": GPU_QUEUE, "concurrency_limit": GPU_CONCURRENCY}

STANDIN_BANNER = (
    "⚠️ **Stand-in weights are in use.** Every network runs with deterministic random weights of its real "
    "size, so the app can be tried offline. Images, labels and numbers shown are **not results** of the methods."
)


def user_errors(fn: Callable) -> Callable:
    """Turn backend errors into messages in the UI and the API; never let a traceback reach a user."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        tracker = next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Progress)), None)
        try:
            with download_progress(tracker):
                return fn(*args, **kwargs)
        except gr.Error:
            raise
        except MissingWeightsError as exc:
            # The visitor gets one sentence; the host's account (sources, commands) stays in the log and
            # in a collapsed section of the same message, which stays up until it is closed.
            log.warning("missing weights in %s: %s", fn.__name__, exc)
            raise gr.Error(missing_weights_message(exc), duration=None, title="Missing model",
                           print_exception=False) from None
        except FaceLabError as exc:
            # Backends word their own messages; the scrub is the last guard against a server path.
            raise gr.Error(scrub_paths(str(exc)), print_exception=False) from None
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("internal error %s in %s", ref, fn.__name__)
            raise gr.Error(
                f"Something went wrong inside Face Lab (reference {ref}). Please try another input; "
                "if it keeps happening, report the reference to the Space owner.",
                print_exception=False,
            ) from None

    return wrapper


# --------------------------------------------------------------------------- checked inputs
# One validation layer for every event, in two parts. `wire` gives each input control of an event a checked
# twin class (the same front end, gradio's own processing after the check): the raw value a client sent is
# checked before gradio's preprocessing and before the handler, so a NaN, an infinity, 1e30, 2.5 for a count,
# a string for a number or a megabyte of text is refused at once with a message that names the control by
# its label and states its range (the checks themselves are in backends/validation.py). The class, not the
# instance, carries the check, so a control that a handler updates (gradio rebuilds it from its class) stays
# checked. `check_every_event` (called by app.build_demo) does the same for the events gradio wires itself
# and checks each request as a whole: how many values it holds, and that uploads are uploads.


def _field(component: gr.components.Component) -> str:
    return str(component.label or component.elem_id or "A value")


def _refuse(check: Callable[[], Any]) -> Any:
    try:
        return check()
    except InputError as exc:  # a path the client sent is quoted as "<file>", like any server path
        raise gr.Error(scrub_paths(str(exc)), print_exception=False) from None


def counts(control: gr.Slider | gr.Number) -> bool:
    """Whether a numeric control takes whole numbers only: it says so (precision 0), or it is a slider
    whose bounds and step are all ints (``gr.Slider(1, 200, step=1)``)."""
    if control.precision == 0:
        return True
    return isinstance(control, gr.Slider) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in (control.minimum, control.maximum, control.step)
    )


_UNBOUNDED = float(2**53)  # a Number without a declared bound still gets one: the largest exact float integer


class CheckedSlider(gr.Slider):
    is_template = True  # rendered by gradio's own front end (see RawPathImage)

    def preprocess(self, payload: Any) -> Any:  # type: ignore[override]
        value = _refuse(lambda: validation.check_number(
            payload, _field(self), self.minimum, self.maximum, integer=counts(self)))
        return super().preprocess(value)


class CheckedNumber(gr.Number):
    is_template = True

    def preprocess(self, payload: Any) -> Any:  # type: ignore[override]
        low = -_UNBOUNDED if self.minimum is None else self.minimum
        high = _UNBOUNDED if self.maximum is None else self.maximum
        value = _refuse(lambda: validation.check_number(payload, _field(self), low, high, integer=counts(self)))
        return super().preprocess(value)


class CheckedCheckbox(gr.Checkbox):
    is_template = True

    def preprocess(self, payload: Any) -> Any:  # type: ignore[override]
        return super().preprocess(_refuse(lambda: validation.check_flag(payload, _field(self))))


class CheckedRadio(gr.Radio):
    is_template = True

    def preprocess(self, payload: Any) -> Any:  # type: ignore[override]
        values = [value for _, value in self.choices]
        return super().preprocess(_refuse(lambda: validation.check_choice(payload, _field(self), values)))


class CheckedDropdown(gr.Dropdown):
    is_template = True

    def preprocess(self, payload: Any) -> Any:  # type: ignore[override]
        values = [value for _, value in self.choices]
        if self.multiselect:
            if not isinstance(payload, list):
                _refuse(lambda: validation.check_choice(payload, _field(self), values))
            for item in payload:
                _refuse(lambda item=item: validation.check_choice(item, _field(self), values))
            return super().preprocess(payload)
        return super().preprocess(_refuse(lambda: validation.check_choice(
            payload, _field(self), values, custom=bool(self.allow_custom_value))))


class CheckedTextbox(gr.Textbox):
    is_template = True

    def preprocess(self, payload: Any) -> Any:  # type: ignore[override]
        limit = self.max_length or validation.MAX_TEXT_CHARS
        return super().preprocess(_refuse(lambda: validation.check_text(payload, _field(self), limit)))


class CheckedFile(gr.File):
    """``gr.File`` without its stray temporary file.

    gradio 6's ``File`` opens an empty ``NamedTemporaryFile(delete=False)`` in its cache root for every
    upload it passes on as a path and never closes or deletes it: one empty file (and one open descriptor)
    per request that survived even the shutdown clean-up. The path is passed on here without it.
    """

    is_template = True

    def _process_single_file(self, f: Any) -> Any:  # gradio's per-file step (File.preprocess calls it)
        if self.type != "filepath":
            return super()._process_single_file(f)
        from gradio import utils as gradio_utils
        from gradio_client import utils as client_utils

        if self.file_types and not client_utils.is_valid_file(f.path, self.file_types):
            raise gr.Error(f"{_field(self)} must be a file of type {', '.join(self.file_types)}.",
                           print_exception=False)
        return gradio_utils.NamedString(f.path)


class CheckedDataset(gr.Dataset):
    """The examples' table: an API client sends the index of an example, which must be one of them."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:  # type: ignore[override]
        last = max(len(self.raw_samples) - 1, 0)
        index = _refuse(lambda: validation.check_number(payload, f"{self.label or 'Example'} (index)", 0, last,
                                                        integer=True))
        return super().preprocess(index)


class CheckedJSON(gr.JSON):
    """A result's details sent back by the page (an object or a list, size-capped); the handler that reads
    them checks their fields like any other input."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:  # type: ignore[override]
        return super().preprocess(_refuse(lambda: validation.check_json(payload, _field(self))))


CHECKED: dict[type, type] = {
    gr.Slider: CheckedSlider, gr.Number: CheckedNumber, gr.Checkbox: CheckedCheckbox, gr.Radio: CheckedRadio,
    gr.Dropdown: CheckedDropdown, gr.Textbox: CheckedTextbox, gr.File: CheckedFile, gr.Dataset: CheckedDataset,
    gr.JSON: CheckedJSON,
}


def check_inputs(inputs: Iterable[gr.components.Component]) -> None:
    """Give each control its checked twin class (idempotent); controls without one are left as they are."""
    for component in inputs:
        twin = CHECKED.get(type(component))
        if twin is not None:
            component.__class__ = twin


def upload_problem(component: gr.components.Component, payload: Any) -> str | None:
    """Why an upload's raw payload is refused (None if it is fine): it must be nothing, or a file that the
    client uploaded to this server (gradio's upload route; ``handle_file`` in gradio_client).

    gradio hands a payload without its ``meta`` marker to the component unchecked, so ``{"path": "/any/file"}``
    would make the server open any file it can read; and it fetches URLs for a client. Only files in gradio's
    upload cache and the app's own example assets are accepted.
    """
    if payload is None:
        return None
    field = _field(component)
    path = payload.get("path") if isinstance(payload, dict) else None
    if not isinstance(path, str) or not path:
        return f"{field} must be a file uploaded to this server (gradio_client: handle_file), got " \
               f"{validation.describe(payload)}."
    from gradio.utils import get_upload_folder

    roots = (Path(get_upload_folder()).resolve(), ASSETS.resolve())
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        real = None
    if real is None or not any(real.is_relative_to(root) for root in roots):
        name = path.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{field} must be a file uploaded to this server (gradio_client: handle_file); " \
               f"'{shorten(name, 40)}' is not one."
    return None


def _raw_problem(block_fn: Any, inputs: Any) -> str | None:
    """What is wrong with a request's raw input list as a whole (its length, its uploads), before gradio reads it."""
    expected = list(block_fn.inputs)
    if not isinstance(inputs, list) or len(inputs) < len(expected):
        names = ", ".join(_field(c) for c in expected)
        got = len(inputs) if isinstance(inputs, list) else validation.describe(inputs)
        return f"This endpoint takes {len(expected)} inputs ({shorten(names, 300)}); got {got}."
    for component, payload in zip(expected, inputs, strict=False):
        if isinstance(component, gr.State):  # gradio reads it from the session, never from the request
            if payload is not None:
                return (f"{_field(component)} is kept by the server for this session; send null for it, got "
                        f"{validation.describe(payload)}.")
            continue
        if isinstance(component, (gr.Image, gr.Video, gr.File)):
            problem = upload_problem(component, payload)
            if problem:
                return problem
        elif _holds_file(payload):  # gradio would try to move it into its cache before the control's check
            return f"{_field(component)} does not take a file or nested data, got {validation.describe(payload)}."
    return None


def _holds_file(payload: Any, depth: int = 0) -> bool:
    """Whether a JSON value holds a file reference (a dict with gradio's "meta" marker) or is nested deeper
    than any control's value (gradio walks it recursively)."""
    if depth > 20:
        return True
    if isinstance(payload, dict):
        return "meta" in payload or any(_holds_file(v, depth + 1) for v in payload.values())
    if isinstance(payload, list):
        return any(_holds_file(v, depth + 1) for v in payload)
    return False


def check_every_event(demo: gr.Blocks) -> None:
    """Check the inputs of every event of ``demo``, also those gradio wires itself (the examples' tables).

    ``wire`` checks each control of ours as it is wired; this catches gradio's own events once the app is
    built, and checks each request's raw input list as a whole (how many values, the uploads) before gradio
    validates it: a short list or a NaN where a file belongs would otherwise fail inside gradio.
    """
    for block_fn in demo.fns.values():
        check_inputs(block_fn.inputs)
    original = demo.preprocess_data
    if getattr(original, "facelab_checked", False):
        return

    async def preprocess_data(block_fn: Any, inputs: Any, state: Any, explicit_call: bool = False) -> Any:
        problem = _raw_problem(block_fn, inputs)
        if problem:
            raise gr.Error(scrub_paths(problem), print_exception=False)
        return await original(block_fn, inputs, state, explicit_call)

    preprocess_data.facelab_checked = True  # type: ignore[attr-defined]
    demo.preprocess_data = preprocess_data  # type: ignore[method-assign]


def wire(listener: Callable, fn: Callable, inputs: Any, outputs: Any, **kwargs: Any) -> Any:
    """``listener(fn, inputs, outputs, **kwargs)`` with every input checked before ``fn`` runs.

    Use it for every event (``wire(run.click, handler, [a, b], [out], api_name="x")``): it is what makes an
    API client's out-of-range, non-finite or ill-typed value a clear message naming the control instead of
    a crash inside a handler (``check_every_event`` adds the checks of whole requests once the app is built).
    ``fn`` itself is called unchanged; it is marked so that a test can list the app's endpoints and check
    each one went through here.
    """
    listed = [] if inputs is None else [inputs] if isinstance(inputs, gr.components.Component) else list(inputs)
    check_inputs(listed)
    # gradio reads the handler's kind (streaming, async) and its signature (the progress tracker): keep both.
    if inspect.isgeneratorfunction(fn):
        def handler(*args: Any, **kw: Any) -> Any:
            yield from fn(*args, **kw)
    elif inspect.iscoroutinefunction(fn):
        async def handler(*args: Any, **kw: Any) -> Any:
            return await fn(*args, **kw)
    else:
        def handler(*args: Any, **kw: Any) -> Any:
            return fn(*args, **kw)
    handler = functools.wraps(fn)(handler)
    handler.facelab_checked_inputs = tuple(listed)  # type: ignore[attr-defined]
    return listener(handler, inputs, outputs, **kwargs)


def private_file_modes() -> None:
    """Files and folders this process makes from now on are its user's only (0600 files, 0700 folders).

    gradio writes every output (face images, videos, zips) into its cache with the process's umask: 0644
    files in 0755 folders on most hosts, which any local user could read. Result folders are sealed on their
    own (``backends.results.seal``); this covers what gradio writes, and any cache the backends fill.
    """
    os.umask(0o077)
MISSING_MODEL = "This Space is missing a model this step needs; the owner can fetch it with one command."
MAX_SENTENCE = 160  # longer first sentences are the host's business: they go into the detail
OWNER_SUMMARY = "Details for the Space owner"


def visitor_sentence(exc: MissingWeightsError) -> str:
    """The one sentence a visitor reads about a missing checkpoint (no sources, commands or class names)."""
    from backends import weights

    entry = weights.entry_of_error(exc.key, exc.filename, str(exc))
    if entry is not None:
        return weights.visitor_message(entry)
    first = re.split(r"(?<=[.!?])\s", str(exc).strip(), maxsplit=1)[0]
    return first if first and len(first) <= MAX_SENTENCE else MISSING_MODEL


def owner_details(text: str, summary: str = OWNER_SUMMARY) -> str:
    """``text`` (the host's account) as a collapsed HTML section: commands in code, one tried source a line."""
    body = html.escape(scrub_paths(text), quote=False)
    body = re.sub(r"`([^`]+)`", r"<code>\1</code>", body)
    body = re.sub(r" (\(\d+\) )", r"<br>\1", body)
    return f"<details><summary>{summary}</summary>{body}</details>"


def missing_weights_message(exc: MissingWeightsError) -> str:
    """One sentence for the visitor, then the host's full account collapsed (toast, status text, API)."""
    return visitor_sentence(exc) + owner_details(str(exc))


def delete_private_files(demo: gr.Blocks) -> None:
    """Delete every upload and output this app put in gradio's cache, and every result folder.

    Called at shutdown: a stopped server keeps no face on disk.
    """
    from gradio.route_utils import delete_files_created_by_app
    from gradio.utils import get_upload_folder

    from backends.results import purge_all

    purge_all()
    try:
        delete_files_created_by_app(demo, None)
        # gradio keeps the examples' copies out of its own deletion; at shutdown they go too.
        for component in demo.blocks.values():
            for kept in getattr(component, "keep_in_cache", ()):
                with contextlib.suppress(OSError):
                    Path(kept).unlink()
    except Exception:  # a half-started app may lack parts of its state; the folders go below anyway
        log.exception("could not delete gradio's cached files")
    # Uploads sit in one hashed folder each; remove the folders the deletion left empty.
    cache = Path(get_upload_folder())
    for folder in sorted(cache.rglob("*"), key=lambda p: len(p.parts), reverse=True) if cache.is_dir() else ():
        with contextlib.suppress(OSError):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def download_progress(progress: Any) -> contextlib.AbstractContextManager:
    """Show weight downloads started inside the block on ``progress`` (a ``gr.Progress``).

    The first use of a tab may download its checkpoints: the bar then shows the file name, the bytes so
    far and the size instead of a silent wait. ``user_errors`` applies this to every handler that takes
    a ``gr.Progress``; without a tracker it does nothing.
    """
    from backends import weights  # here, not at the top: every tab imports this module

    if progress is None:
        return contextlib.nullcontext()

    def on_event(event: weights.DownloadProgress) -> None:
        if event.stage != "failed":  # a failed source is followed by the next one, or by the error message
            progress(event.fraction, desc=event.describe())

    return weights.report_downloads(on_event)


def legend_plot(kind: type[gr.LinePlot] | type[gr.BarPlot], *, label: str, height: int = 320,
                **kwargs: Any) -> Any:
    """A line or bar plot whose colour legend stays inside its box.

    gradio draws a component's label above the chart without telling the chart, which then fits its
    axes and the legend below them into ``height`` and loses the legend's entries off the bottom (only
    its title showed). The chart draws the label itself here, as its title, so it fits everything.
    """
    return kind(label=label, show_label=False, title=label, height=height, **kwargs)


def progress_stages(progress: gr.Progress | None) -> Callable[[float, str], None]:
    """A backend ``progress(fraction, stage)`` callback that shows each stage on the tab's progress bar."""

    def report(fraction: float, stage: str) -> None:
        if progress is not None:
            progress(fraction, desc=stage)

    return report


EXAMPLES_CACHE_ENV = "GRADIO_EXAMPLES_CACHE"


def lazy_examples(examples: list[list[Any]], inputs: list[Any], fn: Callable, outputs: list[Any],
                  on_click: Sequence[tuple[Any, Any]] = (), **kwargs: Any) -> gr.Examples:
    """Examples whose result is computed at the first click (by anyone) and then shown at once.

    The cache is kept apart for stand-in and real weights: a result of random weights must never be
    shown as a result after a restart with the real ones.

    gradio 6.31 stores what ``fn`` returns and reads it back later, and that round trip has limits:
    ``fn`` returns plain values only (a ``gr.update`` of a plot breaks the cache writer; a ``None``
    for an image, video or file cannot be read back; a ``gr.State`` is not stored), and a failure
    there leaves the page waiting. So the outputs are the values, and anything else a click must do
    (hide a stale plot, switch a result tab) goes in ``on_click``: ``(component, value)`` pairs set
    by a quick event of their own.
    """
    kwargs.setdefault("api_visibility", "private")  # the tab's own endpoints are the API
    base = Path(os.environ.get(EXAMPLES_CACHE_ENV, ".gradio/cached_examples"))
    folder = base / ("stand-in" if standin_enabled() else "weights")
    before = os.environ.get(EXAMPLES_CACHE_ENV)
    os.environ[EXAMPLES_CACHE_ENV] = str(folder)  # gradio reads it while building the examples
    try:
        made = gr.Examples(examples, inputs, outputs, fn, cache_examples=True, cache_mode="lazy", **kwargs)
    finally:
        if before is None:
            os.environ.pop(EXAMPLES_CACHE_ENV, None)
        else:
            os.environ[EXAMPLES_CACHE_ENV] = before
    if on_click:
        targets = [component for component, _ in on_click]
        values = tuple(value for _, value in on_click)
        made.dataset.click(lambda: values if len(values) > 1 else values[0], None, targets, queue=False,
                           api_visibility="private")
    return made


STAND_IN_STAMP = "STAND-IN WEIGHTS · NOT A RESULT"


def stamp_standin(image: Any) -> Any:
    """``image`` (PIL) with a band across its foot saying it was drawn by stand-in weights.

    Random weights draw flat or noisy pictures that look like a broken app; the stamp says what they are.
    """
    from PIL import ImageDraw, ImageFont

    if image is None:
        return None
    stamped = image.convert("RGB").copy()
    width, height = stamped.size
    band = max(18, height // 12)
    try:
        font = ImageFont.load_default(size=max(10, band * 3 // 5))
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(stamped)
    draw.rectangle([0, height - band, width, height], fill=(255, 243, 205))
    box = draw.textbbox((0, 0), STAND_IN_STAMP, font=font)
    x = max(2, (width - (box[2] - box[0])) // 2)
    y = height - band + max(0, (band - (box[3] - box[1])) // 2) - box[1]
    draw.text((x, y), STAND_IN_STAMP, fill=(110, 76, 0), font=font)
    return stamped


def show_notices(notices: Iterable[str]) -> None:
    """Show backend notices (capped sizes, several faces...) as toasts."""
    for notice in notices:
        gr.Warning(scrub_paths(notice))


def banner() -> gr.Markdown:
    """The loud stand-in banner, visible only when stand-in weights are on."""
    return gr.Markdown(STANDIN_BANNER, visible=standin_enabled(), elem_classes=["standin-banner"])


def unavailable_message(method: str, issue_hint: str = "") -> str:
    return (
        f"**{method} is not available yet in this build.** The tab shows its planned layout; "
        f"no output is produced until the method is implemented{issue_hint}."
    )


class RawPathImage(gr.Image):
    """An image upload that hands the raw file to the backend's input policy.

    ``gr.Image`` opens uploads with PIL before the handler runs, so a corrupt or
    non-image file would fail inside gradio with no helpful message. This keeps the
    same front-end component but passes the file path through untouched. (It must not
    override ``__init__``: gradio reads the component's props from that signature.)
    """

    is_template = True  # rendered by gradio's own Image front end

    def preprocess(self, payload):  # type: ignore[override]
        if payload is None:
            return None
        if getattr(payload, "path", None):
            return str(payload.path)
        return super().preprocess(payload)


def UploadImage(**kwargs: Any) -> RawPathImage:  # noqa: N802 - reads like a component
    """A face-photo upload (file, clipboard or webcam) whose handler receives the raw file path."""
    kwargs.setdefault("type", "filepath")
    kwargs.setdefault("sources", ["upload", "clipboard", "webcam"])
    return RawPathImage(**kwargs)


# Inputs that need no check of their own in `wire`: uploads, which gradio validates as files and the
# backends' input policy reads (not an image, not a video... are clear errors there); and session state
# (gr.State: the reviewer panels' last result), which gradio takes from the session, never from a request.
UPLOAD_INPUTS: tuple[type, ...] = (RawPathImage, gr.Video, gr.State)


def review_panel(prefix: str) -> tuple[gr.JSON, gr.File, gr.State]:
    """The reviewer view under a result: the papers' metrics (filled in after the result, by a chained
    event), the run card download, and the server-side state that carries the result to them."""
    with gr.Accordion("Reviewer view: the papers' metrics and the run card", open=True):
        gr.Markdown("Metrics are computed after the result is shown. The run card (JSON) lists every setting, "
                    "seed, weight file (sha256) and package version; `python -m backends.replay run_card.json "
                    "INPUTS...` re-runs it and reports whether the output is identical.")
        review = gr.JSON(label="Metrics (each with what it means and which way is better)", max_height=300,
                         elem_id=f"{prefix}-review")
        card = gr.File(label="Run card (JSON)", interactive=False, elem_id=f"{prefix}-card")
    return review, card, session_state("The last result")


def session_state(label: str) -> gr.State:
    """A server-side value of this session (the last result, for the reviewer panels), named for messages:
    an API client sends null in its place (gradio_client does), anything else is refused."""
    state = gr.State()
    state.label = label
    return state
