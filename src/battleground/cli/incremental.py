"""`battleground incremental …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Incremental (Lambda-Learner-style) model updates from a stream.", no_args_is_help=True)
