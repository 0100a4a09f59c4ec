from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from battleground.settings import Settings


def test_embedded_defaults_live_under_home(tmp_path: Path) -> None:
    s = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path)})
    assert s.registry_url == f"sqlite:///{tmp_path}/registry.db"
    assert s.events_url == f"duckdb:///{tmp_path}/events.duckdb"
    assert s.mlflow_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert s.optuna_storage == f"{tmp_path}/optuna.journal"
    assert s.api_token is None


def test_postgres_url_moves_registry_and_events() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/test"
    s = Settings.from_env({"BATTLEGROUND_DATABASE_URL": url, "BATTLEGROUND_API_TOKEN": "t"})
    assert s.registry_url == url
    assert s.events_url == url
    assert s.api_token == "t"


def test_bad_database_url_names_the_variable() -> None:
    with pytest.raises(ValueError, match="BATTLEGROUND_DATABASE_URL"):
        Settings.from_env({"BATTLEGROUND_DATABASE_URL": "mysql://x"})


def test_import_is_light() -> None:
    code = "import sys, battleground; print(sorted(m for m in ('pandas','mlflow','lightgbm','kedro','duckdb','sqlalchemy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
