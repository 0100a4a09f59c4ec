"""`battleground experiment …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Register, run, monitor and report A/B tests.", no_args_is_help=True)
