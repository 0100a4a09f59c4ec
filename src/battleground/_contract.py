"""The one input contract of every entry point (Python API, CLI files, HTTP; both backends).

* **Text** (ids, names, variants, event types): a string of 1–:data:`MAX_TEXT` characters, not blank,
  no control characters (tab, newline, NUL, DEL …), encodable as UTF-8 (no lone surrogates). An
  event's text fields also take a 64-bit integer (not a bool), stored as its decimal text.
* **Numbers** (``value``, ``covariate``): finite and within ±:data:`MAX_ABS_VALUE` (beyond that the
  sums' squares overflow and p-values turn into NaN).
* **Strict types**: a number is a number (``"1.5"`` is not 1.5 and ``True`` is not 1.0), an experiment
  is an id (``1`` … :data:`MAX_ID`) or a name (``True`` is neither), and a time is a datetime, a date or
  an ISO string (a bare integer is not an epoch unless the caller says which unit).

Scalar checks (:func:`check_text`, :func:`check_number`, :func:`check_experiment_key`) serve pydantic
models and the registry; the vectorised ones (:func:`text_problem`, :func:`number_problem`) serve Arrow
batches. Every failure is a :class:`ContractError` (a ``ValueError``) naming the field, the value and
the fix; nothing is stored when one is raised.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

from battleground.errors import BattlegroundError

__all__ = [
    "CONTROL",
    "MAX_ABS_VALUE",
    "MAX_ID",
    "MAX_TEXT",
    "ContractError",
    "check_experiment_key",
    "check_number",
    "check_text",
    "number_problem",
    "text_problem",
]

MAX_TEXT = 200
MAX_ABS_VALUE = 1e15
MAX_ID = 2**31 - 1
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_PATTERN = "[\\x00-\\x1f\\x7f]"


class ContractError(BattlegroundError, ValueError):
    """An input breaks the input contract (see the module docstring)."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}…({len(str(value))} characters)"


def text_reason(value: str) -> str | None:
    """Why a string breaks the text rule, or ``None``."""
    if not value.strip():
        return "must not be blank"
    if len(value) > MAX_TEXT:
        return f"is {len(value)} characters long; at most {MAX_TEXT}"
    if CONTROL.search(value):
        return "must not contain control characters (tabs, newlines, NUL, …)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (a lone surrogate); send UTF-8 text"
    return None


def check_text(value: Any, field: str = "text") -> str:
    """``value`` if it is contract text, else :class:`ContractError`."""
    if not isinstance(value, str):
        raise ContractError(f"{field} must be text, got {_short(value)} ({type(value).__name__})")
    reason = text_reason(value)
    if reason:
        raise ContractError(f"{field} {reason} (got {_short(value)})")
    return value


def check_number(value: Any, field: str = "value") -> float:
    """A finite float within ±:data:`MAX_ABS_VALUE` (``True`` and ``"1.5"`` are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ContractError(f"{field} must be a number, got {_short(value)} ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_ABS_VALUE:
        raise ContractError(f"{field} must be finite and within ±{MAX_ABS_VALUE:g}, got {_short(value)}")
    return number


def check_experiment_key(value: Any, field: str = "experiment") -> int | str:
    """An experiment id (1 … :data:`MAX_ID`) or name (contract text); a digit string stays a string."""
    if isinstance(value, bool):
        raise ContractError(f"{field} must be an experiment id or name, got {value!r}")
    if isinstance(value, numbers.Integral):
        if not 1 <= int(value) <= MAX_ID:
            raise ContractError(f"{field}: experiment ids are 1 to {MAX_ID}, got {value}")
        return int(value)
    text = check_text(value, field)
    if text.strip().isdigit() and not 1 <= int(text) <= MAX_ID:
        raise ContractError(f"{field}: experiment ids are 1 to {MAX_ID}, got {_short(text)}")
    return text


def text_problem(col: Any) -> tuple[int, str] | None:
    """The first row of an Arrow string column that breaks the text rule, and why (``None``: none)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    checks = (
        (pc.greater(pc.utf8_length(col), MAX_TEXT), None),
        (pc.match_substring_regex(col, _CONTROL_PATTERN), None),
    )
    rows = []
    for mask, _ in checks:
        if pc.any(mask).as_py():
            hits = np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False))
            rows.append(int(hits[0]))
    if not rows:
        return None
    row = min(rows)
    value = col[row].as_py() if isinstance(col, pa.Array | pa.ChunkedArray) else None
    return row, (text_reason(value) if isinstance(value, str) else None) or "breaks the text rule"


def number_problem(col: Any) -> int | None:
    """The first row of a float64 Arrow column beyond ±:data:`MAX_ABS_VALUE` (``None``: none)."""
    import numpy as np
    import pyarrow.compute as pc

    mask = pc.greater(pc.abs(col), MAX_ABS_VALUE)
    if not pc.any(mask).as_py():
        return None
    return int(np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False))[0])
