"""Launch the app in-process for contract and browser tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def running_app(standin: bool = False) -> Iterator[str]:
    """Yield the URL of a freshly built Face Lab served on loopback; close it afterwards."""
    import os
    import tempfile

    import app
    from backends.standin import enable_standin

    enable_standin(standin)
    # Examples cached at their first click go to a folder of this app's own: no run sees another's results.
    examples_cache = tempfile.TemporaryDirectory(prefix="facelab-examples-")
    before = os.environ.get("GRADIO_EXAMPLES_CACHE")
    os.environ["GRADIO_EXAMPLES_CACHE"] = examples_cache.name
    try:
        demo = app.build_demo()
    finally:
        if before is None:
            os.environ.pop("GRADIO_EXAMPLES_CACHE", None)
        else:
            os.environ["GRADIO_EXAMPLES_CACHE"] = before
    try:
        _, url, _ = demo.launch(
            prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
            max_file_size=app.MAX_FILE_SIZE, css=app.CSS,
        )
        yield url
    finally:
        demo.close()
        enable_standin(False)
        examples_cache.cleanup()


def connect_to_subprocess_app(server, port: int, seconds: float = 240.0):
    """A gradio_client ``Client`` for ``python app.py`` started as ``server`` on ``port``, once it answers.

    Fails the test with the app's output if the process exits first, or after ``seconds``.
    """
    import time

    import pytest
    from gradio_client import Client

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:
            if server.poll() is not None:
                pytest.fail(f"the app exited early:\n{server.stdout.read()}")
            time.sleep(0.5)
    pytest.fail(f"the app did not start within {seconds:.0f} s")
