from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "numpy", "mlflow", "lightgbm", "xgboost", "kedro", "duckdb", "sqlalchemy", "ray",
         "sklearn", "plotly", "fastapi", "rich.console")


def test_help_imports_no_heavy_library() -> None:
    """`battleground --help` must stay quick: the CLI modules import heavy libraries inside commands."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from battleground.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_part() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "battleground", "--help"], capture_output=True, text=True, check=True
    )
    for group in ("experiment", "events", "model", "pipeline", "bandit", "incremental", "serve", "ui", "demo"):
        assert group in out.stdout
