"""`battleground pipeline …` commands."""

from __future__ import annotations

import typer

from battleground.cli._common import console, load_settings, user_errors

app = typer.Typer(help="List and run the Kedro churn pipelines.", no_args_is_help=True)


@app.command("list")
def list_pipelines() -> None:
    """Every pipeline name (``*_game2`` twins run in ``game2_env``)."""
    from battleground.pipelines.registry import PIPELINE_NAMES

    for name in PIPELINE_NAMES:
        console.print(f"{name}  [dim]({'game2_env' if name.endswith('_game2') else 'base | game2_env'})[/dim]")


@app.command("run")
def run(
    pipeline: str = typer.Option(..., "--pipeline", "-p", help="Pipeline name (see `battleground pipeline list`)."),
    env: str | None = typer.Option(None, "--env", "-e", help="Config environment: base (default) or game2_env."),
    n_characters: int | None = typer.Option(None, help="Override churn.n_characters (smaller data)."),
) -> None:
    """Run one pipeline by name; data goes under <BATTLEGROUND_HOME>/pipelines/<env>/."""
    with user_errors():
        from battleground.pipelines.registry import run_pipeline

        settings = load_settings()
        overrides = {"n_characters": n_characters} if n_characters is not None else {}
        with console.status(f"running {pipeline}…"):
            result = run_pipeline(pipeline, settings, env=env, params=overrides)
        console.print(f"{result.name} ran in {result.env}; data in {result.data_dir}")
        for name, path in result.outputs.items():
            console.print(f"  {name}: {path}")
