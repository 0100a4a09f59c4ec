"""Helpers shared by the command modules: settings at the edge, a console, clean errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from battleground.errors import BattlegroundError
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
    """Turn the errors battleground raises on purpose (:class:`~battleground.errors.BattlegroundError`)
    into one red line on stderr and exit code 1. Anything else is a bug and keeps its traceback."""
    try:
        yield
    except BattlegroundError as exc:
        fail(str(exc))


def experiment_key(value: str) -> int | str:
    """An experiment is named by its id (digits) or its name."""
    return int(value) if value.strip().isdigit() else value


def fail(message: str) -> NoReturn:
    """Print ``error: message`` as one line on stderr (the terminal wraps it, never us) and exit 1."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=1)
