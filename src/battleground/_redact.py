"""Redaction: what a URL, an error or a log line may show to whoever reads it.

No error message, page, log line or API reply shows a password, a token or a full filesystem path:

* :func:`redact_url` renders a database URL with SQLAlchemy's own ``hide_password=True`` and shortens
  a file URL (``sqlite:///…``, ``duckdb:///…``) to its file name;
* :func:`redact_text` scrubs any text (a driver's error, a log message): passwords in URLs and in
  ``password=…`` key-value strings, the given secrets, and the given folders.

Example:
    >>> redact_url("postgresql://ana:s3cret@db:5432/battleground")
    'postgresql://ana:***@db:5432/battleground'
    >>> redact_url("sqlite:////home/ana/.battleground/registry.db")
    'sqlite:///…/registry.db'
    >>> redact_text("cannot reach postgresql://ana:s3cret@db/x", secrets=["tok"])
    'cannot reach postgresql://ana:***@db/x'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["RedactingFilter", "redact_text", "redact_url"]

MASK = "***"
# scheme://user:password@host → the password, whatever the scheme
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)(?P<pw>[^\s@'\"]+)(?=@)")
# libpq key-value strings and query parameters: password=... / password: ...
_KV_PASSWORD = re.compile(r"(?i)(?P<head>\b(?:password|passwd|pwd|token|secret)\s*[=:]\s*)(?P<pw>[^\s&;,'\"]+)")
_FILE_SCHEMES = ("sqlite:", "duckdb:", "file:")


def redact_url(url: object) -> str:
    """``url`` without its password; a file URL shows only the file's name."""
    text = str(url)
    if text.startswith(_FILE_SCHEMES):
        scheme, _, rest = text.partition(":")
        name = rest.lstrip("/").rsplit("/", 1)[-1]
        return f"{scheme}:///…/{name}" if "/" in rest.lstrip("/") else text
    try:
        from sqlalchemy.engine import make_url

        return str(make_url(text).render_as_string(hide_password=True))
    except Exception:  # not a URL SQLAlchemy can parse: scrub it as text
        return redact_text(text)


def redact_text(
    text: object, *, secrets: Iterable[str | None] = (), folders: Iterable[str | Path | None] = ()
) -> str:
    """``text`` with URL passwords, ``password=…`` values and every given secret replaced by ``***``,
    and every given folder by ``<home>``."""
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:  # a 1-3 character "secret" would blank out ordinary words
            out = out.replace(secret, MASK)
    for folder in folders:
        if folder:
            out = out.replace(str(folder), "<home>")
    out = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, out)
    return _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, out)


def url_password(url: str | None) -> str | None:
    """The password inside a database URL, to be scrubbed wherever it might appear."""
    if not url or url.startswith(_FILE_SCHEMES):
        return None
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:
        m = _URL_PASSWORD.search(url)
        return m.group("pw") if m else None


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs a server's log records (message, arguments and traceback text)."""

    def __init__(self, *, secrets: Iterable[str | None] = (), folders: Iterable[str | Path | None] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]
        self.folders = [f for f in folders if f]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = redact_text(message, secrets=self.secrets, folders=self.folders)
        record.args = None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, secrets=self.secrets, folders=self.folders)
        return True
