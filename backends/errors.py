"""Typed errors raised by the backends.

The UI (demos/) and the CLIs turn these into messages for people; anything that
is *not* a :class:`FaceLabError` is a bug and is reported as an internal error
without leaking a traceback to the user.
"""

from __future__ import annotations

import re

# An absolute POSIX path of two or more parts (an upload's server-side location, a cache folder),
# not preceded by a word character, a colon or a slash (so "2/255", "10 s / 250" and URLs stay).
_SERVER_PATH = re.compile(r"""(?<![\w.:/])/(?:[^\s/'"]+/)+[^\s'"),;]*""")


def shorten(text: str, limit: int = 60) -> str:
    """User text as a message may quote it: one line, at most ``limit`` characters, the cut marked.

    A message echoes what the user sent (a path name, a choice, a file name in a zip) so they can see
    which value was wrong, never all of it: a megabyte of text must not come back in an error.
    """
    line = " ".join(str(text).split())  # newlines and tabs would break the message's layout
    if len(line) <= limit:
        return line
    return f"{line[:limit - 1]}… ({len(str(text)):,} characters)"


def scrub_paths(text: str) -> str:
    """``text`` with every server-side file path replaced by "<file>": no message may show one to a user."""
    return _SERVER_PATH.sub("<file>", text)


class FaceLabError(Exception):
    """Base class of every error a user may see. The message is user-facing."""


class InputError(FaceLabError):
    """The uploaded file or parameter cannot be used (not an image, corrupt, too large...)."""


class NoFaceError(InputError):
    """No face was found where one is required."""


class VideoError(InputError):
    """A video could not be read or holds nothing usable."""


class MissingWeightsError(FaceLabError):
    """A checkpoint is not available locally and cannot be downloaded."""

    def __init__(self, message: str, *, key: str = "", filename: str = ""):
        super().__init__(message)
        self.key = key
        self.filename = filename


class CheckpointError(FaceLabError):
    """A checkpoint file exists but is corrupt, unsafe, or of the wrong layout."""


class MethodUnavailableError(FaceLabError):
    """The requested method or engine is not available in this build."""
