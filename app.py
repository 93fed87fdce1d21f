"""Face Lab: interactive demos of a research group's face papers.

``build_demo()`` composes the tabs; nothing heavy happens at import. Run
``python app.py`` to serve it (flags: --host --port --share --cpu --stand-in-weights).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import signal
import sys
from collections.abc import Sequence

import gradio as gr

from backends.results import RESULTS_TTL_SECONDS, SWEEP_SECONDS, start_sweeper
from backends.standin import enable_standin
from demos import anonymization, expression, latent_paths, models, pos_subspaces, reenactment
from demos.common import banner, check_every_event, delete_private_files, private_file_modes

TITLE = "Face Lab"
INTRO = (
    "# Face Lab\nInteractive demos of face papers: reenactment, latent-path editing, part-of-speech "
    "subspaces, anonymization and expression recognition. Uploaded photos and videos are processed "
    f"for your request only: uploads and results are deleted from the server within {RESULTS_TTL_SECONDS // 3600} "
    "hours, and at once when the server stops."
)
MAX_FILE_SIZE = "25mb"
CSS = ".standin-banner { background: #fff3cd; border: 2px solid #d39e00; border-radius: 8px; padding: 8px 12px; }"

TABS = [
    ("Reenactment", reenactment),
    ("Latent paths", latent_paths),
    ("PoS subspaces", pos_subspaces),
    ("Anonymization", anonymization),
    ("Expression", expression),
    ("Models & about", models),
]


def build_demo() -> gr.Blocks:
    """The whole app as one Blocks object (tests launch it in-process)."""
    # gradio sweeps its upload/output cache every SWEEP_SECONDS and removes files older than the age
    # given, so with age = TTL - SWEEP nothing it holds outlives the TTL promised above.
    cache_policy = (SWEEP_SECONDS, RESULTS_TTL_SECONDS - SWEEP_SECONDS)
    private_file_modes()  # gradio's cached outputs (faces) readable by the server's user only
    with gr.Blocks(title=TITLE, delete_cache=cache_policy, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        banner()
        with gr.Tabs():
            for name, module in TABS:
                with gr.Tab(name, id=name.lower().replace(" ", "_").replace("&", "and")):
                    module.build()
    check_every_event(demo)  # the events gradio wires itself (examples) get the same input checks as ours
    demo.queue(default_concurrency_limit=2)
    return demo


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the Face Lab demo.")
    parser.add_argument(
        "--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    parser.add_argument("--cpu", action="store_true", help="run every network on the CPU")
    parser.add_argument(
        "--stand-in-weights",
        action="store_true",
        help="use deterministic random weights of real size instead of checkpoints (outputs are not results)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cpu:
        from backends.device import force_device

        force_device("cpu")
    if args.stand_in_weights:
        enable_standin(True)
    demo = build_demo()
    _delete_files_at_exit(demo)
    start_sweeper()
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=MAX_FILE_SIZE,
        css=CSS,
        footer_links=["api"],
    )


def _delete_files_at_exit(demo: gr.Blocks) -> None:
    """Uploads and results go when the server stops: at a normal exit, Ctrl-C, or SIGTERM (Spaces, docker)."""
    done = False

    def cleanup() -> None:
        nonlocal done
        if not done:
            done = True
            delete_private_files(demo)

    def on_term(signum: int, _frame) -> None:
        logging.getLogger("facelab").info("signal %d: deleting uploads and results, then stopping", signum)
        cleanup()
        demo.close(verbose=False)
        sys.exit(0)

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_term)


if __name__ == "__main__":
    main()
