"""Stopping long jobs: one cancel token per running request, set by a Stop button, by gradio's own
cancellation, or when the visitor's page closes.

gradio's ``cancels=[...]`` ends the request's asyncio task and frees its queue slot, but the worker
thread that runs the backend cannot be interrupted: it would keep the CPU (and the model) busy for
the rest of the job. The backends therefore check a :class:`~backends.jobs.CancelToken` between
steps; this module hands each request one and sets it from the UI's side.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import gradio as gr

from backends.jobs import CancelToken

_SESSIONS: dict[str, set[CancelToken]] = {}
_LOCK = threading.Lock()


class RequestToken(CancelToken):
    """A token that also reads as cancelled once gradio has dropped its event (``cancels=``, ``/cancel``)."""

    def __init__(self) -> None:
        super().__init__()
        try:
            from gradio.context import LocalContext

            self._blocks = LocalContext.blocks.get(None)
            self._event_id = LocalContext.event_id.get(None)
        except Exception:  # another gradio: the Stop button and page-close paths still work
            self._blocks = self._event_id = None

    def _event_dropped(self) -> bool:
        queue = getattr(self._blocks, "_queue", None)
        events = getattr(queue, "event_ids_to_events", None)
        return bool(self._event_id) and isinstance(events, dict) and self._event_id not in events

    @property
    def cancelled(self) -> bool:
        if not super().cancelled and self._event_dropped():
            self.cancel("the request was cancelled")
        return super().cancelled


def _session(request: Any) -> str | None:
    return getattr(request, "session_hash", None) or None


@contextlib.contextmanager
def request_job(request: Any) -> Iterator[CancelToken]:
    """A cancel token for the current request, registered under its session while the block runs."""
    token = RequestToken()
    key = _session(request)
    if key is not None:
        with _LOCK:
            _SESSIONS.setdefault(key, set()).add(token)
    try:
        yield token
    finally:
        if key is not None:
            with _LOCK:
                tokens = _SESSIONS.get(key, set())
                tokens.discard(token)
                if not tokens:
                    _SESSIONS.pop(key, None)


def _cancel_session(request: Any, reason: str) -> int:
    key = _session(request)
    with _LOCK:
        tokens = list(_SESSIONS.get(key, ())) if key else []
    for token in tokens:
        token.cancel(reason)
    return len(tokens)


def stop_session_jobs(request: gr.Request) -> None:
    """The Stop button: cancel every running job of this visitor."""
    _cancel_session(request, "Stop was pressed")


def cancel_on_unload(request: gr.Request) -> None:
    """``demo.unload``: the visitor closed or reloaded the page, so their running jobs stop."""
    _cancel_session(request, "the page was closed")
