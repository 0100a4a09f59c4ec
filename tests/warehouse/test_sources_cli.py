"""`battleground sources add|list|show|remove`: sources per project or per experiment (issue 18 §2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_monitor_engines import assert_same_result
from test_sources import monitor, user_table
from tests.experiment.ab_scenario import build
from typer.testing import CliRunner

from battleground.cli import app
from battleground.experiment.events import open_event_store
from battleground.settings import Settings
from battleground.storage._sources import SourceError, SourceSpec, load_source, save_project_source
from battleground.storage._warehouse import WarehouseEventStore

COLUMNS = ["--column", "user_id=uid", "--column", "ts=event_time", "--column", "event_type=name",
           "--column", "value=amount"]


@pytest.fixture
def lake(tmp_path: Path) -> Any:
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground")})
    sc = build(settings, users=400, seed=6, max_duration_days=3)
    folder = tmp_path / "lake"
    folder.mkdir()
    pq.write_table(user_table(open_event_store(settings).to_arrow(sc.id)), folder / "part-0.parquet")
    return settings, sc.id, str(folder / "*.parquet")


def run(settings: Settings, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"BATTLEGROUND_HOME": str(settings.home), "COLUMNS": "300"})


def test_project_source_from_the_cli(lake: Any) -> None:
    settings, exp_id, files = lake
    want = monitor(settings, exp_id).result()
    res = run(settings, "sources", "add", "lake", files, "--format", "parquet", *COLUMNS)
    assert res.exit_code == 0, res.output
    assert "registered for the project" in res.output
    listed = json.loads(run(settings, "sources", "list", "--json").output)
    assert [(r["name"], r["scope"], r["format"]) for r in listed] == [("lake", "project", "parquet")]
    shown = json.loads(run(settings, "sources", "show", "lake").output)
    assert shown["spec"]["columns"] == {"user_id": "uid", "ts": "event_time", "event_type": "name", "value": "amount"}
    # every experiment without a source of its own reads the project's, in place
    m = monitor(settings, exp_id)
    assert isinstance(m.backend.store_for(exp_id), WarehouseEventStore)  # type: ignore[attr-defined]
    assert_same_result(m.result(), want)
    assert run(settings, "sources", "remove", "lake").exit_code == 0
    assert json.loads(run(settings, "sources", "list", "--json").output) == []
    assert load_source(settings.registry_url, exp_id) is None


def test_experiment_source_wins_over_the_project(lake: Any) -> None:
    settings, exp_id, files = lake
    save_project_source(settings.registry_url, SourceSpec("other", "nowhere.parquet", format="parquet"))
    res = run(settings, "sources", "add", "mine", files, "--format", "parquet", "--experiment", str(exp_id), *COLUMNS)
    assert res.exit_code == 0, res.output
    spec = load_source(settings.registry_url, exp_id)
    assert spec is not None and spec.name == "mine"
    listed = json.loads(run(settings, "sources", "list", "--json").output)
    assert [(r["name"], r["scope"]) for r in listed] == [("other", "project"), ("mine", f"experiment {exp_id}")]
    assert run(settings, "sources", "remove", "mine", "--experiment", str(exp_id)).exit_code == 0
    assert load_source(settings.registry_url, exp_id).name == "other"  # type: ignore[union-attr]
    save_project_source(settings.registry_url, SourceSpec("third", "t.parquet", format="parquet"))
    with pytest.raises(SourceError, match=r"several \('other', 'third'\).*sources add NAME --experiment"):
        load_source(settings.registry_url, exp_id)


@pytest.mark.parametrize(("args", "words"), [
    (["--column", "ts=when"], ["'lake'", "'when'", "(ts)", "columns={'ts'"]),
    (["--exposures", "events"], ["'lake'", "project source", "exposures='assignment_log'", "--experiment"]),
    (["--format", "orc"], ["'lake'", "format must be one of"]),
])
def test_add_errors_name_source_column_and_fix(lake: Any, args: list[str], words: list[str]) -> None:
    settings, _, files = lake
    res = run(settings, "sources", "add", "lake", files, "--format", "parquet", *COLUMNS, *args)
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    for w in words:
        assert w in text, (w, text)
    assert json.loads(run(settings, "sources", "list", "--json").output) == []  # nothing registered


def test_show_and_remove_name_what_exists(lake: Any) -> None:
    settings, _, _ = lake
    res = run(settings, "sources", "show", "ghost")
    assert res.exit_code == 1
    assert "no source 'ghost' registered for the project" in " ".join(res.output.split())
    assert run(settings, "sources", "remove", "ghost").exit_code == 1
