"""One rule for reading an instant, shared by every surface (registry, monitor, web window, CLI).

The rule (:func:`parse_instant`):

- accepted: ``datetime``, ``date``, pandas ``Timestamp`` and ISO strings (``'2022-03-01'``,
  ``'2022-03-01T12:00'``, ``'2022-03-01T12:00+09:00'``); ``None`` means "not given";
- timezone-aware values are converted to naive UTC; naive values are already UTC;
- a bare date is midnight UTC, except as the end bound of a window (``end=True``), where it means through
  the end of that day (the next midnight, exclusive);
- years outside 1900-9998 are refused (the stores' timestamps and the day after must fit);
- every refusal raises ``error(field, message)`` (default :class:`TimeInputError`), a
  :class:`~battleground.errors.BattlegroundError` and a ``ValueError`` whose message names the field, the
  value and the fix.

Imports only the standard library, so any layer (storage upward) can use it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from battleground.errors import BattlegroundError

__all__ = ["MAX_YEAR", "MIN_YEAR", "TimeInputError", "parse_instant"]

MIN_YEAR = 1900
MAX_YEAR = 9998


class TimeInputError(BattlegroundError, ValueError):
    """A value that is not an instant by the shared rule; ``field`` names which input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_instant(
    value: Any, field: str, *, end: bool = False, error: type[TimeInputError] = TimeInputError
) -> dt.datetime | None:
    """A naive UTC datetime (or ``None``) from ``value`` by the module's rule.

    Args:
        value: a datetime, date, pandas Timestamp, ISO string or ``None``.
        field: the input's name, used in the error message.
        end: ``value`` is the end bound of a window, so a bare date means through the end of that day.
        error: the :class:`TimeInputError` subclass to raise (each surface keeps its own error class).

    >>> parse_instant("2022-03-01T09:00+09:00", "start")
    datetime.datetime(2022, 3, 1, 0, 0)
    >>> parse_instant("2022-03-01", "end", end=True)
    datetime.datetime(2022, 3, 2, 0, 0)
    """
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp (a datetime subclass with nanoseconds)
        value = value.to_pydatetime()
    bare_date = False
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed, bare_date = dt.datetime.combine(value, dt.time()), True
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise error(
                field, f"{field} must be an ISO date or datetime like '2022-03-01' or '2022-03-01T12:00', "
                f"got {value!r}"
            ) from None
        bare_date = "T" not in text.upper() and " " not in text and ":" not in text
    else:
        raise error(field, f"{field} must be a date, datetime or ISO string, got {value!r}")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise error(field, f"{field} must be a year between {MIN_YEAR} and {MAX_YEAR}, got {value!r}")
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    if end and bare_date:
        parsed += dt.timedelta(days=1)
    return parsed
