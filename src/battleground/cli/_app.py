"""Top-level commands: ``serve``, ``ui`` and ``demo``."""

from __future__ import annotations

import typer

from battleground.cli._common import load_settings


def serve_command(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to listen on."),
    model_name: str = typer.Option("churn", help="Registered MLflow model to serve (alias 'champion')."),
    require_token: bool = typer.Option(
        False, "--require-token", help="Every route but /health needs 'Authorization: Bearer $BATTLEGROUND_API_TOKEN'."
    ),
    docs: bool = typer.Option(True, "--docs/--no-docs", help="Serve the interactive API docs at /docs."),
) -> None:
    """Serve the champion model over HTTP (FastAPI)."""
    import uvicorn

    from battleground.cli._common import user_errors
    from battleground.model.serve import create_app

    settings = load_settings()
    with user_errors():  # no champion, or one the gate did not promote: one line, exit 1
        app = create_app(settings, model_name=model_name, require_token=require_token, docs=docs, hosts=(host,))
    uvicorn.run(app, host=host, port=port, log_level="warning")


def ui_command(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8080, help="Port to listen on."),
) -> None:
    """Open the battleground dashboard (experiments, leaderboard, bandit battles)."""
    import dataclasses

    import uvicorn

    from battleground.web import create_app

    settings = load_settings()
    settings = dataclasses.replace(settings, allowed_hosts=(*settings.allowed_hosts, host))  # trusted as well
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def demo_command(
    fast: bool = typer.Option(False, help="Smaller data everywhere (used by the tests)."),
) -> None:
    """Run the whole battleground on embedded defaults, with progress bars."""
    from battleground.demo import run_demo

    run_demo(load_settings(), fast=fast)
