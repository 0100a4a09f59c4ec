"""Start-up stays cheap: the registry commands and every ``--help`` import no statistics, modelling or
data-frame library (issue 13 §4; counted by modules, never timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from battleground.experiment.register import Registry
from battleground.settings import Settings

SRC = str(Path(__file__).resolve().parents[2] / "src")
HEAVY = ("scipy", "scipy.stats", "numpy", "pandas", "pyarrow", "mlflow", "lightgbm", "xgboost", "sklearn",
         "optuna", "kedro", "ray", "plotly", "fastapi", "statsmodels", "polars", "duckdb", "jinja2", "uvicorn",
         "matplotlib", "shap", "psycopg")

# Runs the commands in order in one fresh interpreter and reports, for each, the heavy modules that
# were imported by then (so the first command that pulls one in is named).
_SCRIPT = """
import json, sys
from typer.testing import CliRunner
from battleground.cli import app
heavy, commands = json.loads(sys.argv[1]), json.loads(sys.argv[2])
report = []
for args in commands:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, (args, res.output)
    report.append((args, sorted(m for m in heavy if m in sys.modules)))
print(json.dumps(report))
"""


def _heavy_imports(settings: Settings, commands: list[list[str]]) -> list[tuple[list[str], list[str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATTLEGROUND_")}
    env.update(BATTLEGROUND_HOME=str(settings.home), PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(HEAVY), json.dumps(commands)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return [(args, found) for args, found in json.loads(out.stdout.splitlines()[-1]) if found]


def test_registry_commands_import_nothing_heavy(settings: Settings) -> None:
    registry = Registry(settings.registry_url)
    exp = registry.create_experiment("checkout", metrics=[{"name": "conversion", "kind": "proportion",
                                                           "numerator": "purchase"}])
    registry.start(exp.id)
    commands = [["--version"], ["experiment", "list", "--help"], ["experiment", "list"],
                ["experiment", "list", "--json"], ["experiment", "show", "checkout"],
                ["experiment", "show", "1", "--csv"], ["experiment", "audit", "1"],
                ["experiment", "create", "second", "--metric", "conversion:proportion:purchase"],
                ["experiment", "start", "second"], ["experiment", "stop", "second", "--reason", "done"],
                ["experiment", "archive", "second"]]
    assert _heavy_imports(settings, commands) == []


def test_every_help_imports_nothing_heavy(settings: Settings) -> None:
    import typer.main

    from battleground.cli import app

    commands: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        commands.append([*path, "--help"])
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    assert len(commands) > 40
    assert _heavy_imports(settings, commands) == []
