"""Write access: ``Authorization: Bearer <BATTLEGROUND_API_TOKEN>``; no token configured = read-only."""

from __future__ import annotations

import hmac

__all__ = ["WRITE_METHODS", "AuthFailure", "check_write_access"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuthFailure(Exception):
    """A refused write: ``status`` is 403 (read-only server) or 401 (missing or wrong token)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="battleground"'} if self.status == 401 else {}


def check_write_access(api_token: str | None, authorization: str | None) -> None:
    """Raise :class:`AuthFailure` unless ``authorization`` carries the configured token.

    The comparison takes the same time whatever the guess (``hmac.compare_digest``).
    """
    if not api_token:
        raise AuthFailure(
            403,
            "this server is read-only: no API token is configured. Restart it with "
            "BATTLEGROUND_API_TOKEN=<secret> set to accept writes, and send "
            "'Authorization: Bearer <secret>'",
        )
    if not authorization:
        raise AuthFailure(401, "missing 'Authorization: Bearer <token>' header; writes need the API token")
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise AuthFailure(401, "the Authorization header must read 'Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), api_token.encode("utf-8")):
        raise AuthFailure(401, "wrong API token in 'Authorization: Bearer <token>'")
