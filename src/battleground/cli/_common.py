"""Helpers shared by the command modules: settings at the edge, a console, clean errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from battleground.settings import Settings, quiet_third_party_telemetry

console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    """Read the settings once, at the edge, and quiet third-party telemetry."""
    quiet_third_party_telemetry()
    return Settings.from_env()


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the ``ValueError``/``LookupError``/``RuntimeError`` subclasses our code raises for bad input
    into a one-line red message and exit code 1, instead of a traceback."""
    try:
        yield
    except (ValueError, LookupError, PermissionError, RuntimeError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=1) from exc
