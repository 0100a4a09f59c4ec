"""Browser sessions: the API token, typed once at ``/signin``, is exchanged for a session cookie.

The cookie (``bg_session``) is ``HttpOnly`` and ``SameSite=Strict`` and expires (8 hours by default);
it names a session held in the server's memory (a restart signs everyone out). Every form carries the
session's CSRF token, compared in constant time. The session also names the actor that the registry's
audit log records for what is done from the browser.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["COOKIE", "Session", "Sessions"]

COOKIE = "bg_session"
TTL_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Session:
    id: str
    actor: str
    csrf: str
    expires: float


class Sessions:
    """The signed-in browsers of one dashboard process."""

    def __init__(self, ttl: float = TTL_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def create(self, actor: str) -> Session:
        session = Session(secrets.token_urlsafe(32), actor, secrets.token_urlsafe(32), time.time() + self.ttl)
        with self._lock:
            now = time.time()
            self._by_id = {k: s for k, s in self._by_id.items() if s.expires > now}
            self._by_id[session.id] = session
        return session

    def of(self, request: Request) -> Session | None:
        """The live session the request's cookie names, if any."""
        key = request.cookies.get(COOKIE)
        if not key:
            return None
        with self._lock:
            session = self._by_id.get(key)
            if session is not None and session.expires <= time.time():
                del self._by_id[key]
                return None
        return session

    def drop(self, session: Session) -> None:
        with self._lock:
            self._by_id.pop(session.id, None)

    def set_cookie(self, response: Response, session: Session, *, secure: bool) -> None:
        response.set_cookie(
            COOKIE, session.id, max_age=int(self.ttl), httponly=True, samesite="strict", secure=secure, path="/"
        )

    @staticmethod
    def clear_cookie(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def csrf_ok(session: Session, given: str | None) -> bool:
    """Whether a form's CSRF token is the session's (constant-time)."""
    return bool(given) and hmac.compare_digest(str(given).encode("utf-8", "replace"), session.csrf.encode("utf-8"))
