"""Helpers shared by the command modules: settings at the edge, a console, clean errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from battleground.settings import Settings, quiet_third_party_telemetry

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """A rich Console created on first use, so that ``battleground --help`` does not pay for rich."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return getattr(self._console, name)


console: Console = _LazyConsole()  # type: ignore[assignment]
err_console: Console = _LazyConsole(stderr=True)  # type: ignore[assignment]


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
    except (ValueError, LookupError, PermissionError, FileNotFoundError, RuntimeError) as exc:
        from rich.markup import escape

        # Escaped: messages quote lists such as [low, high], which rich would read as markup and drop.
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=1) from exc
