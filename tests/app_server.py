"""Launch the app in-process for contract and browser tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def running_app(standin: bool = False) -> Iterator[str]:
    """Yield the URL of a freshly built Face Lab served on loopback; close it afterwards."""
    import app
    from backends.standin import enable_standin

    enable_standin(standin)
    demo = app.build_demo()
    try:
        _, url, _ = demo.launch(
            prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
            max_file_size=app.MAX_FILE_SIZE, css=app.CSS,
        )
        yield url
    finally:
        demo.close()
        enable_standin(False)
