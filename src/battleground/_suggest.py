"""The one "did you mean" hint, light enough for any module to import."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

__all__ = ["suggest"]


def suggest(value: str, valid: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``valid`` to ``value``, else an empty string.

    Example:
        >>> suggest("revenu", ["conversion", "revenue"])
        " (did you mean 'revenue'?)"
    """
    close = difflib.get_close_matches(value, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
