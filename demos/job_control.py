"""Stopping long jobs: one cancel token per running request, set by a Stop button, by gradio's own
cancellation, or when the visitor's page closes.

gradio's ``cancels=[...]`` ends the request's asyncio task and frees its queue slot, but the worker
thread that runs the backend cannot be interrupted: it would keep the CPU (and the model) busy for
the rest of the job. The backends therefore check a :class:`~backends.job_control.CancelToken` between
steps; this module hands each request one and sets it from the UI's side.

A closed page needs no ``demo.unload`` (which would open a heartbeat stream on every page): the
request's own event stream drops, gradio's queue marks the event as no longer alive, and the token
reads that at the job's next check (gradio notices the drop at its next progress message, within
10 s at worst).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import gradio as gr

from backends.job_control import CancelToken

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

    def _event_gone(self) -> str:
        """Why gradio no longer runs this request's event ("" while it does)."""
        queue = getattr(self._blocks, "_queue", None)
        events = getattr(queue, "event_ids_to_events", None)
        if not self._event_id or not isinstance(events, dict):
            return ""
        event = events.get(self._event_id)
        if event is None:
            return "the request was cancelled"
        if getattr(event, "alive", True) is False:
            return "the page was closed"
        return ""

    @property
    def cancelled(self) -> bool:
        if not super().cancelled:
            reason = self._event_gone()
            if reason:
                self.cancel(reason)
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
