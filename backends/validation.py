"""Checks of the values a client sends for a control, before any work is done.

The UI only ever sends what its controls allow; an API client can send anything JSON holds: NaN,
infinities, 1e30, 2**64, a string where a number belongs, 2.5 for a count. Each check here takes the
raw value and what the control declares (its name, range, whether it counts) and returns the value to
use, or raises :class:`~backends.errors.InputError` with a message that names the field and its range.
``demos/common.py`` applies them to every input of every event; the backends keep their own checks too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .errors import InputError, shorten

# What every seed control accepts: the sampler of the latent-path tab draws from a 32-bit seed, and the
# random-seed buttons draw from the same range (torch.Generator would take 64 bits).
MAX_SEED = 2**32 - 1
# A custom choice (a path name typed into a dropdown) is a name, not a document.
MAX_CUSTOM_CHOICE_CHARS = 200
# Free text (a prompt, a list of theme words) is capped far above any real use.
MAX_TEXT_CHARS = 20_000


def describe(value: Any) -> str:
    """A sent value as a message shows it: short, and readable for the values JSON can hold."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "infinity" if value > 0 else "minus infinity"
        return repr(value)
    if isinstance(value, int):
        try:
            return shorten(str(value), 30)
        except ValueError:  # more digits than Python will print (4300)
            return "a number with thousands of digits"
    if isinstance(value, str):
        return f"the text '{shorten(value, 40)}'"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def number_text(x: float) -> str:
    """A bound as people write it: 200, not 200.0; 0.15, not 0.15000000000000002."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return f"{x:.6g}"


def check_number(value: Any, field: str, minimum: float, maximum: float, *, integer: bool) -> int | float:
    """``value`` as a finite number in [minimum, maximum] (a whole one if ``integer``), or an InputError."""
    kind = "a whole number" if integer else "a number"
    expected = f"{field} must be {kind} from {number_text(minimum)} to {number_text(maximum)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{expected}, got {describe(value)}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{expected}, got {describe(value)}.")
    if not minimum <= value <= maximum:
        raise InputError(f"{expected}, got {describe(value)}.")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise InputError(f"{expected}, got {describe(value)}.")
        return int(value)
    return float(value)


def check_flag(value: Any, field: str) -> bool:
    """A checkbox's value: true or false, nothing else (``bool("false")`` is True)."""
    if not isinstance(value, bool):
        raise InputError(f"{field} must be true or false, got {describe(value)}.")
    return value


def check_choice(value: Any, field: str, choices: Sequence[Any], *, custom: bool = False) -> Any:
    """One of ``choices`` (or, if ``custom``, any short text), or an InputError listing the choices."""
    if value in choices and not isinstance(value, bool):
        return value
    if custom and isinstance(value, str):
        if len(value) > MAX_CUSTOM_CHOICE_CHARS:
            raise InputError(f"{field} must be at most {MAX_CUSTOM_CHOICE_CHARS} characters, got {len(value):,}.")
        return value
    listed = ", ".join(f"'{shorten(str(c), 40)}'" for c in choices[:12])
    more = f" and {len(choices) - 12} more" if len(choices) > 12 else ""
    raise InputError(f"{field} must be one of {listed}{more}; got {describe(value)}.")


MAX_JSON_CHARS = 200_000  # a result's details the page sends back (a long video's timeline is about 20 KB)


def check_json(value: Any, field: str, max_chars: int = MAX_JSON_CHARS) -> dict | list | None:
    """A JSON value the page sends back (a result's details): an object or a list (or nothing), of at most
    ``max_chars`` characters once written as JSON."""
    import json

    if value is None:
        return None
    if not isinstance(value, dict | list):
        raise InputError(f"{field} must be a JSON object or list, got {describe(value)}.")
    try:
        size = len(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        raise InputError(f"{field} must be plain JSON (no NaN or infinity).") from None
    if size > max_chars:
        raise InputError(f"{field} must be at most {max_chars:,} characters of JSON, got {size:,}.")
    return value


def check_text(value: Any, field: str, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    """Free text: a string (or nothing) of at most ``max_chars`` characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{field} must be text, got {describe(value)}.")
    if len(value) > max_chars:
        raise InputError(f"{field} must be at most {max_chars:,} characters, got {len(value):,}.")
    return value
