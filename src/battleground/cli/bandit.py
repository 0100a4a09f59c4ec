"""`battleground bandit …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Bandit policies on the retail simulator, and off-policy evaluation.", no_args_is_help=True)
