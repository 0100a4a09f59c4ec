"""`battleground pipeline …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="List and run the Kedro churn pipelines.", no_args_is_help=True)
