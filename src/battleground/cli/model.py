"""`battleground model …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Split data, train, tune, evaluate and pick the champion model.", no_args_is_help=True)
