"""Write access: ``Authorization: Bearer <BATTLEGROUND_API_TOKEN>``; no token configured = read-only.

The check itself is shared by every server (``battleground._http.check_token``, constant-time).
"""

from __future__ import annotations

from battleground._http import WRITE_METHODS, AuthFailure, check_token

__all__ = ["WRITE_METHODS", "AuthFailure", "check_write_access"]


def check_write_access(api_token: str | None, authorization: str | None) -> None:
    """Raise :class:`AuthFailure` unless ``authorization`` carries the configured token."""
    check_token(api_token, authorization, what="writes")
