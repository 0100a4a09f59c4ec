"""The ``battleground`` command line, one Typer sub-app per part.

Every module here imports only Typer and Rich at the top; the heavy libraries are imported inside the
commands, so ``battleground --help`` stays quick.
"""

from __future__ import annotations

import typer

from battleground.cli import (
    bandit,
    decisions,
    events,
    experiment,
    incremental,
    model,
    pipeline,
    sources,
)
from battleground.cli._app import demo_command, serve_command, ui_command
from battleground.cli._help import HelpGroup

app = typer.Typer(
    name="battleground",
    help="ML models and decision policies fight it out; honest statistics declare the winner.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (Typer's, for bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=HelpGroup,
)
for _part in (experiment, events, sources, model, pipeline, bandit, incremental):
    app.add_typer(_part.app, name=_part.__name__.rsplit(".", 1)[-1], cls=HelpGroup)


def _print_version(value: bool) -> None:
    if value:
        from battleground import __version__

        typer.echo(f"battleground {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    """ML models and decision policies fight it out; honest statistics declare the winner."""
app.command("serve")(serve_command)
app.command("ui")(ui_command)
app.command("demo")(demo_command)
decisions.register(app)  # serve-decisions and the decisions group (issue 15)


def main() -> None:
    """Console-script entry point."""
    app()
