"""Dimension breakdowns of an experiment whose events stay in a warehouse source (issue 18): the
source maps numeric attribute columns (``SourceSpec.attributes``), and ``Monitor.breakdown`` gives the
breakdown that the same events give in battleground's own store (DuckDB over Parquet, and chdb)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from tests.experiment.test_breakdown_monitor import _register

from battleground.experiment._source import _Backend
from battleground.experiment.events import open_event_store
from battleground.experiment.monitoring import Monitor
from battleground.settings import Settings
from battleground.storage._sources import SourceError, SourceSpec, open_source, save_source
from battleground.storage._warehouse import ChdbEngine

MAPPING = {"user_id": "uid", "ts": "event_time", "event_type": "name", "value": "amount", "variant": "arm"}


def team_table(settings: Settings, exp_id: int) -> pa.Table:
    """The events as a team's table holds them: the country is a column (set on profile rows), not an
    event of its own; other names, UTC-aware times, no experiment column."""
    events = open_event_store(settings).to_arrow(exp_id)
    is_country = pc.equal(events.column("event_type"), "country")
    return pa.table({
        "uid": events.column("user_id"),
        "event_time": events.column("ts").cast(pa.timestamp("us", tz="UTC")),
        "name": pc.if_else(is_country, "profile", events.column("event_type")),
        "amount": pc.if_else(is_country, pa.scalar(None, pa.float64()), events.column("value")),
        "country_code": pc.if_else(is_country, events.column("value"), pa.scalar(None, pa.float64())),
        "arm": events.column("variant"),
    })


def assert_same_breakdown(got: Any, want: Any) -> None:
    assert got.users == want.users and len(got.metrics) == len(want.metrics) == 3
    for g, w in zip(got.metrics, want.metrics, strict=True):
        assert g.metric == w.metric and len(g.result.slices) == len(w.result.slices)
        for x, y in zip(g.result.slices, w.result.slices, strict=True):
            assert (x.slice, x.variant, x.n_control, x.n_treatment) == (y.slice, y.variant, y.n_control, y.n_treatment)
            for name in ("estimate", "p_value", "adjusted_p_value", "heterogeneity_p_value"):
                assert getattr(x, name) == pytest.approx(getattr(y, name), rel=1e-9, abs=1e-12), name
            assert x.heterogeneous == y.heterogeneous
    assert got.flagged == want.flagged


@pytest.fixture
def experiment(settings: Settings) -> tuple[Settings, int, Any]:
    exp_id, _ = _register(settings, {"breakdown_by": ["country"]})
    want = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).breakdown("country")
    assert list(want.users) == ["0", "1", "2", "(none)"] and want.flagged
    return settings, exp_id, want


def test_breakdown_of_a_parquet_source(experiment: Any, tmp_path: Path) -> None:
    settings, exp_id, want = experiment
    folder = tmp_path / "lake"
    folder.mkdir()
    table = team_table(settings, exp_id)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), folder / "part-0.parquet")
    pq.write_table(table.slice(half), folder / "part-1.parquet")
    save_source(settings.registry_url, exp_id, SourceSpec(
        "lake", str(folder / "*.parquet"), format="parquet", columns=MAPPING, exposures="events",
        attributes={"country": "country_code"}))
    got = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).breakdown("country")
    assert_same_breakdown(got, want)


def test_breakdown_of_a_chdb_table(experiment: Any, tmp_path: Path) -> None:
    settings, exp_id, want = experiment
    pq.write_table(team_table(settings, exp_id), tmp_path / "team.parquet")
    engine = ChdbEngine()
    engine.session.query(f"CREATE TABLE team ENGINE = Memory AS SELECT * FROM file('{tmp_path}/team.parquet', Parquet)")
    spec = SourceSpec("ch", "team", connection="chdb", columns=MAPPING, exposures="events",
                      attributes={"country": "country_code"})
    store = open_source(spec, exp_id, engine=engine)
    monitor = Monitor(client=settings, source=_Backend(settings, store=store)).put_experiment_id(experiment_id=exp_id)
    assert_same_breakdown(monitor.breakdown("country"), want)


@pytest.mark.parametrize(("attributes", "words"), [
    ({"country": "nation"}, ["'lake'", "'nation'", "attribute 'country'", "attributes={'country'"]),
    ({"country": "name"}, ["'lake'", "'name'", "not a number", "CASE"]),
])
def test_attribute_errors_name_the_column_and_the_fix(experiment: Any, tmp_path: Path, attributes: dict[str, str],
                                                      words: list[str]) -> None:
    settings, exp_id, _ = experiment
    pq.write_table(team_table(settings, exp_id), tmp_path / "team.parquet")
    spec = SourceSpec("lake", str(tmp_path / "team.parquet"), format="parquet", columns=MAPPING,
                      exposures="events", attributes=attributes)
    with pytest.raises(SourceError) as info:
        open_source(spec, exp_id)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    with pytest.raises(SourceError, match="attributes must map"):
        SourceSpec("lake", "t", attributes={"exposure": "x"})
