"""What every tab shares: error translation, notices, the stand-in banner, upload components."""

from __future__ import annotations

import contextlib
import functools
import html
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gradio as gr

from backends.errors import FaceLabError, MissingWeightsError, scrub_paths
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
                  **kwargs: Any) -> gr.Examples:
    """Examples whose result is computed at the first click (by anyone) and then shown at once.

    The cache is kept apart for stand-in and real weights: a result of random weights must never be
    shown as a result after a restart with the real ones.
    """
    kwargs.setdefault("api_visibility", "private")  # the tab's own endpoints are the API
    base = Path(os.environ.get(EXAMPLES_CACHE_ENV, ".gradio/cached_examples"))
    folder = base / ("stand-in" if standin_enabled() else "weights")
    before = os.environ.get(EXAMPLES_CACHE_ENV)
    os.environ[EXAMPLES_CACHE_ENV] = str(folder)  # gradio reads it while building the examples
    try:
        return gr.Examples(examples, inputs, outputs, fn, cache_examples=True, cache_mode="lazy", **kwargs)
    finally:
        if before is None:
            os.environ.pop(EXAMPLES_CACHE_ENV, None)
        else:
            os.environ[EXAMPLES_CACHE_ENV] = before


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
