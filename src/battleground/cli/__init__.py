"""The ``battleground`` command line, one Typer sub-app per part.

Every module here imports only Typer and Rich at the top; the heavy libraries are imported inside the
commands, so ``battleground --help`` stays quick.
"""

from __future__ import annotations

import typer

from battleground.cli import bandit, events, experiment, incremental, model, pipeline
from battleground.cli._app import demo_command, serve_command, ui_command

app = typer.Typer(
    name="battleground",
    help="ML models and decision policies fight it out; honest statistics declare the winner.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(experiment.app, name="experiment")
app.add_typer(events.app, name="events")
app.add_typer(model.app, name="model")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(bandit.app, name="bandit")
app.add_typer(incremental.app, name="incremental")
app.command("serve")(serve_command)
app.command("ui")(ui_command)
app.command("demo")(demo_command)


def main() -> None:
    """Console-script entry point."""
    app()
