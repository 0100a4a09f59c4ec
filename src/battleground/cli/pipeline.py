"""`battleground pipeline …` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from battleground.cli._common import console, fail, load_settings, user_errors

app = typer.Typer(help="List and run the Kedro churn pipelines.", no_args_is_help=True)

_PYPROJECT = """\
# A Kedro project over battleground's churn pipelines: `kedro run -p NAME [--env game2_env]`, `kedro viz`.
# The pipelines and nodes live in the installed package (battleground.pipelines); configuration is ./conf.
[tool.kedro]
package_name = "battleground.pipelines"
project_name = "battleground-churn"
kedro_init_version = "{version}"
source_dir = "."
"""


@app.command("list")
def list_pipelines() -> None:
    """Every pipeline name (``*_game2`` twins run in ``game2_env``; ``regression_env`` is a numeric target)."""
    from battleground.pipelines.registry import ENVIRONMENTS, PIPELINE_NAMES

    others = " | ".join(e for e in ENVIRONMENTS)
    for name in PIPELINE_NAMES:
        console.print(f"{name}  [dim]({'game2_env' if name.endswith('_game2') else others})[/dim]")


@app.command("run")
def run(
    pipeline: str = typer.Option(..., "--pipeline", "-p", help="Pipeline name (see `battleground pipeline list`)."),
    env: str | None = typer.Option(None, "--env", "-e", help="Config environment: base (default), game2_env or regression_env (a numeric target)."),
    n_characters: int | None = typer.Option(None, help="Override churn.n_characters (smaller data)."),
    conf: Path | None = typer.Option(None, "--conf", help="Config folder with base/ and game2_env/ (default: "
                                     "the package's own; see `battleground pipeline kedro-project`)."),
) -> None:
    """Run one pipeline by name; data goes under <BATTLEGROUND_HOME>/pipelines/<env>/."""
    with user_errors():
        from battleground.pipelines.registry import CONF_DIR, run_pipeline

        settings = load_settings()
        overrides = {"n_characters": n_characters} if n_characters is not None else {}
        with console.status(f"running {pipeline}…"):
            result = run_pipeline(pipeline, settings, env=env, params=overrides, conf_source=conf or CONF_DIR)
        console.print(f"{result.name} ran in {result.env}; data in {result.data_dir}")
        for name, path in result.outputs.items():
            console.print(f"  {name}: {path}")


@app.command("kedro-project")
def kedro_project(
    folder: Path = typer.Argument(..., help="Folder to create (must not hold a pyproject.toml yet)."),
) -> None:
    """Write a Kedro project folder (pyproject.toml + a copy of conf/) so Kedro's own CLI runs the pipelines."""
    with user_errors():
        import shutil

        from kedro import __version__ as kedro_version

        from battleground.pipelines.registry import CONF_DIR

        if (folder / "pyproject.toml").exists():
            fail(f"{folder / 'pyproject.toml'} already exists; pick an empty folder")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pyproject.toml").write_text(_PYPROJECT.format(version=kedro_version), encoding="utf-8")
        shutil.copytree(CONF_DIR, folder / "conf", dirs_exist_ok=True)
        # kedro-telemetry asks for (or assumes) consent per project; this project says no
        (folder / ".telemetry").write_text("consent: false\n", encoding="utf-8")
        console.print(f"Kedro project in {folder}: cd there, then `kedro run -p sub_churn_train_from_raw` "
                      "(or --env game2_env -p sub_churn_train_from_raw_game2); edit conf/ to change the model")
