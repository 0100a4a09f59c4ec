"""`battleground events …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Ingest and inspect experiment events.", no_args_is_help=True)
