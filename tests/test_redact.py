"""Redaction of URLs, driver messages and log records (battleground._redact)."""

from __future__ import annotations

import logging

from battleground._redact import RedactingFilter, redact_text, redact_url, url_password


def test_redact_url_hides_the_password_and_shortens_file_urls() -> None:
    assert redact_url("postgresql://ana:s3cret@db:5432/bg") == "postgresql://ana:***@db:5432/bg"
    assert redact_url("postgresql+psycopg://ana:p%40ss@db/bg") == "postgresql+psycopg://ana:***@db/bg"
    assert redact_url("postgresql://ana@db/bg") == "postgresql://ana@db/bg"
    assert redact_url("sqlite:////home/ana/.battleground/registry.db") == "sqlite:///…/registry.db"
    assert redact_url("duckdb:////srv/bg/events.duckdb") == "duckdb:///…/events.duckdb"
    assert url_password("postgresql://ana:s3cret@db/bg") == "s3cret"
    assert url_password("sqlite:////x/registry.db") is None


def test_redact_text_scrubs_urls_key_values_secrets_and_folders() -> None:
    text = ("failed: postgresql://ana:s3cret@db/bg (host=db password=hunter22 user=ana) "
            "token tok-12345 at /home/ana/.battleground/events.duckdb")
    out = redact_text(text, secrets=["tok-12345", None, "ab"], folders=["/home/ana/.battleground"])
    assert "s3cret" not in out and "hunter22" not in out and "tok-12345" not in out
    assert "/home/ana" not in out and "<home>/events.duckdb" in out
    assert "postgresql://ana:***@db/bg" in out and "password=***" in out
    assert redact_text("a short ab word", secrets=["ab"]) == "a short ab word"  # too short to be a secret


def test_the_logging_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("battleground.web", logging.ERROR, __file__, 1, "cannot open %s", ("tok-12345",), None)
    try:
        raise RuntimeError("postgresql://ana:s3cret@db/bg refused")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter(secrets=["tok-12345"]).filter(record)
    text = logging.Formatter().format(record)
    assert "tok-12345" not in text and "s3cret" not in text and "cannot open ***" in text
