"""Events: ingest from every input, validation (nothing written on a bad row), idempotency, metric sums
checked against pandas on the same events, on both backends."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from battleground.cli import app
from battleground.experiment.events import (
    EventStore,
    EventValidationError,
    count_events,
    daily_metric_sums,
    events_frame,
    ingest,
    metric_sums,
    open_event_store,
)
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage._db import dispose_all
from battleground.storage.sums import MetricSums

START = dt.datetime(2022, 3, 1)
END = dt.datetime(2022, 3, 15)
METRICS = [
    {"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True},
    {"name": "revenue", "kind": "mean", "numerator": "purchase"},
    {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"},
]


@dataclass
class World:
    """A store and registry with a few experiments, shared by the tests of one backend."""

    settings: Settings
    store: EventStore
    registry: Registry

    def experiment(self, name: str, *, start: bool = True, **kwargs: Any) -> int:
        kwargs.setdefault("variants", {"control": 0.5, "treatment": 0.5})
        kwargs.setdefault("metrics", METRICS)
        kwargs.setdefault("start_at", START)
        kwargs.setdefault("end_at", END)
        exp = self.registry.create_experiment(name, **kwargs)
        if start:
            self.registry.start(exp.id)
        return exp.id


def _postgres_database() -> tuple[str, Callable[[], None]]:
    admin_url = os.environ.get("BATTLEGROUND_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"bg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        dispose_all()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{admin_url.rpartition('/')[0]}/{name}", drop


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    env = {"BATTLEGROUND_HOME": str(tmp_path_factory.mktemp("events") / ".battleground")}
    drop: Callable[[], None] | None = None
    if request.param == "postgresql":
        env["BATTLEGROUND_DATABASE_URL"], drop = _postgres_database()
    settings = Settings.from_env(env)
    w = World(settings, open_event_store(settings), Registry(settings.registry_url))
    w.experiment("shop")
    w.experiment("old", start=True)
    w.registry.stop("old", "over")
    w.registry.archive("old")
    try:
        yield w
    finally:
        if drop is not None:
            drop()


def _batch(prefix: str, n: int = 6, experiment: str = "shop") -> pd.DataFrame:
    """A valid batch: exposures, purchases (some without a value), a click."""
    types = ["exposure", "exposure", "purchase", "purchase", "click", "exposure"]
    return pd.DataFrame({
        "event_id": [f"{prefix}-{i}" for i in range(n)],
        "experiment": experiment,
        "variant": ["control", "treatment"] * (n // 2) + ["control"] * (n % 2),
        "user_id": [f"u{i // 2}" for i in range(n)],
        "event_type": [types[i % len(types)] for i in range(n)],
        "timestamp": pd.date_range("2022-03-02 10:00", periods=n, freq="37min"),
        # None is "no value"; a float column's NaN would be rejected (it is a NaN, not a gap).
        "value": pd.Series(([None, None, 12.5, None, None, None] * n)[:n], dtype=object),
        "covariate": ([1.0, 2.0, 1.0, 2.0, 3.0, 3.0] * n)[:n],
    })


def _stored(world: World, prefix: str) -> pd.DataFrame:
    frame = events_frame(world.store, "shop")
    frame = frame[frame["event_id"].str.startswith(prefix + "-")]
    return frame.sort_values("event_id").reset_index(drop=True)


def _expected(batch: pd.DataFrame) -> pd.DataFrame:
    out = batch.rename(columns={"timestamp": "ts"}).drop(columns="experiment")
    return out.sort_values("event_id").reset_index(drop=True)


def _same_events(stored: pd.DataFrame, batch: pd.DataFrame) -> None:
    expected = _expected(batch)
    assert stored["event_id"].tolist() == expected["event_id"].tolist()
    for col in ("variant", "user_id", "event_type"):
        assert stored[col].tolist() == expected[col].tolist(), col
    assert [pd.Timestamp(t) for t in stored["ts"]] == [pd.Timestamp(t) for t in expected["ts"]]
    for col in ("value", "covariate"):
        got = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in stored[col]]
        want = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in expected[col]]
        assert got == want, col


# --------------------------------------------------------------------------------------------------
# Every input
# --------------------------------------------------------------------------------------------------


def _write_csv(batch: pd.DataFrame, path: Path) -> Path:
    out = batch.copy()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    out.to_csv(path, index=False, na_rep="")
    return path


def _write_jsonl(batch: pd.DataFrame, path: Path) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for rec in batch.to_dict("records"):
            rec["timestamp"] = rec["timestamp"].isoformat()
            rec = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def _records(batch: pd.DataFrame) -> list[dict[str, Any]]:
    recs = batch.to_dict("records")
    for rec in recs:
        rec["timestamp"] = rec["timestamp"].to_pydatetime()
        for k in ("value", "covariate"):
            if isinstance(rec[k], float) and math.isnan(rec[k]):
                rec[k] = None
    return recs


INPUTS: dict[str, Callable[[pd.DataFrame, Path], Any]] = {
    "pandas": lambda b, _: b,
    "arrow": lambda b, _: pa.Table.from_pandas(b, preserve_index=False),
    "parquet": lambda b, d: (pq.write_table(pa.Table.from_pandas(b, preserve_index=False), d / "e.parquet"), d / "e.parquet")[1],
    "csv": lambda b, d: _write_csv(b, d / "e.csv"),
    "jsonl": lambda b, d: _write_jsonl(b, d / "e.jsonl"),
    "list of dicts": lambda b, _: _records(b),
    "dict of columns": lambda b, _: {c: [r[c] for r in _records(b)] for c in b.columns},
}


@pytest.mark.parametrize("kind", list(INPUTS))
def test_ingest_every_input(world: World, kind: str, tmp_path: Path) -> None:
    prefix = f"in-{kind.replace(' ', '_')}"
    batch = _batch(prefix)
    result = ingest(world.store, INPUTS[kind](batch, tmp_path))
    assert (result.received, result.inserted, result.duplicates) == (6, 6, 0)
    _same_events(_stored(world, prefix), batch)
    again = ingest(world.store, INPUTS[kind](batch, tmp_path))
    assert (again.received, again.inserted, again.duplicates) == (6, 0, 6)


def test_cli_ingest_and_count(world: World, tmp_path: Path) -> None:
    env = {"BATTLEGROUND_HOME": str(world.settings.home), "COLUMNS": "250"}
    if world.store.backend == "postgresql":
        env["BATTLEGROUND_DATABASE_URL"] = world.settings.events_url
    batch = _batch("cli").drop(columns="experiment")
    path = _write_csv(batch.assign(experiment="shop"), tmp_path / "e.csv")
    _write_csv(batch, tmp_path / "no_experiment.csv")
    runner = CliRunner()
    first = runner.invoke(app, ["events", "ingest", str(path)], env=env)
    assert first.exit_code == 0, first.output
    assert "received 6 · inserted 6 · duplicates 0" in first.output
    again = runner.invoke(app, ["events", "ingest", str(tmp_path / "no_experiment.csv"), "--experiment", "shop"], env=env)
    assert again.exit_code == 0, again.output
    assert "received 6 · inserted 0 · duplicates 6" in again.output
    count = runner.invoke(app, ["events", "count", "shop"], env=env)
    total, by_type = count_events(world.store, "shop")
    assert count.exit_code == 0 and f"{total:,} events in experiment shop" in count.output
    assert dict(by_type)["exposure"] >= 3
    bad = runner.invoke(app, ["events", "ingest", str(tmp_path / "no_experiment.csv")], env=env)
    assert bad.exit_code == 1
    assert "missing column(s) ['experiment']" in bad.output


# --------------------------------------------------------------------------------------------------
# Validation: one bad row rejects the batch, names row and field, writes nothing
# --------------------------------------------------------------------------------------------------


def _set(col: str, value: Any, row: int = 3) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def mutate(b: pd.DataFrame) -> pd.DataFrame:
        b = b.copy()
        keeps_dtype = (isinstance(value, float) and b[col].dtype.kind == "f") or (
            b[col].dtype.kind == "M" and (value is pd.NaT or isinstance(value, pd.Timestamp)))
        if not keeps_dtype:
            b[col] = b[col].astype(object)
        b.loc[row, col] = value
        return b

    return mutate


def _timestamps_as_text(row: int, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def mutate(b: pd.DataFrame) -> pd.DataFrame:
        b = b.copy()
        b["timestamp"] = b["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object)
        b.loc[row, "timestamp"] = value
        return b

    return mutate


# (label, mutation, row, field, words in the message)
INVALID: list[tuple[str, Callable[[pd.DataFrame], pd.DataFrame], int | None, str, str]] = [
    ("missing event_id", _set("event_id", None), 3, "event_id", "is empty"),
    ("blank event_id", _set("event_id", "   "), 3, "event_id", "is blank"),
    ("blank event_type", _set("event_type", ""), 3, "event_type", "is blank"),
    ("float user id", _set("user_id", 1.5), 3, "user_id", "1.5 is a float; this column holds text or integers"),
    ("unknown variant", _set("variant", "treatment_x"), 3, "variant", "'treatment_x' is not a variant of experiment 'shop'"),
    ("unknown experiment", _set("experiment", "nope"), 3, "experiment", "no experiment 'nope'"),
    ("archived experiment", _set("experiment", "old"), 3, "experiment", "archived"),
    ("timestamp text", _timestamps_as_text(3, "yesterday"), 3, "timestamp", "'yesterday' is not an ISO date"),
    ("timestamp missing", _set("timestamp", pd.NaT), 3, "timestamp", "is empty"),
    ("before the start", _set("timestamp", pd.Timestamp("2022-02-28 23:59")), 3, "timestamp", "before its start"),
    ("at the end", _set("timestamp", pd.Timestamp("2022-03-15")), 3, "timestamp", "at or after its end"),
    ("value NaN", _set("value", float("nan")), 3, "value", "is nan; numbers must be finite"),
    ("value NaN in a float column", lambda b: b.assign(value=[1.0, 2.0, 3.0, float("nan"), 5.0, 6.0]), 3, "value", "is nan"),
    ("value infinite", _set("value", float("inf")), 3, "value", "is inf; numbers must be finite"),
    ("value text", _set("value", "12,5"), 3, "value", "'12,5' is a str; this column holds numbers"),
    ("covariate NaN", _set("covariate", float("nan")), 3, "covariate", "numbers must be finite"),
    ("missing column", lambda b: b.drop(columns="variant"), None, "variant", "missing column(s) ['variant']"),
    ("unknown column", lambda b: b.assign(colour="red"), None, "colour", "unknown column"),
    ("typo column", lambda b: b.rename(columns={"timestamp": "timestmp"}), None, "timestmp", "did you mean 'timestamp'"),
    ("value of wrong type", lambda b: b.assign(value=["a"] * len(b)), 0, "value", "must be a number, got type"),
]


@pytest.mark.parametrize(("label", "mutate", "row", "field", "words"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_batch_is_rejected_and_nothing_written(
    world: World, label: str, mutate: Callable[[pd.DataFrame], pd.DataFrame], row: int | None, field: str,
    words: str,
) -> None:
    ingest(world.store, _batch("valid-before"))  # the store holds something
    before = world.store.count()
    bad = mutate(_batch(f"bad-{INVALID.index(next(c for c in INVALID if c[0] == label))}"))
    with pytest.raises(EventValidationError) as info:
        ingest(world.store, bad)
    assert (info.value.row, info.value.field) == (row, field)
    message = str(info.value)
    assert message.startswith(f"row {row}, field '{field}'" if row is not None else f"field '{field}'")
    assert words in message
    assert world.store.count() == before


def test_experiment_argument_and_errors(world: World) -> None:
    batch = _batch("arg").drop(columns="experiment")
    assert ingest(world.store, batch, experiment="shop").inserted == 6
    shop = world.registry.get("shop").id
    assert ingest(world.store, _batch("arg2").drop(columns="experiment"), experiment=shop).inserted == 6
    with pytest.raises(EventValidationError, match="given both as a column and as experiment="):
        ingest(world.store, _batch("arg3"), experiment="shop")
    with pytest.raises(EventValidationError, match="no experiment 'nope'"):
        ingest(world.store, batch, experiment="nope")
    numeric = _batch("arg4").assign(experiment=shop, user_id=[10, 11, 12, 13, 14, 15])
    assert ingest(world.store, numeric).inserted == 6
    assert sorted(_stored(world, "arg4")["user_id"]) == ["10", "11", "12", "13", "14", "15"]
    with pytest.raises(EventValidationError, match="cannot read events from int"):
        ingest(world.store, 5)
    with pytest.raises(EventValidationError, match="no such file"):
        ingest(world.store, "/nonexistent/events.parquet")
    assert ingest(world.store, _batch("empty").iloc[:0]).received == 0


def test_idempotent_resend_and_duplicates_within_a_batch(world: World) -> None:
    batch = _batch("idem", n=12)
    assert ingest(world.store, batch.iloc[:8]).inserted == 8
    overlap = ingest(world.store, batch)
    assert (overlap.received, overlap.inserted, overlap.duplicates) == (12, 4, 8)
    assert ingest(world.store, batch).inserted == 0
    # The same id twice in one batch: the first occurrence is stored.
    twice = pd.concat([_batch("dup", n=3), _batch("dup", n=3).assign(value=99.0)], ignore_index=True)
    result = ingest(world.store, twice)
    assert (result.received, result.inserted) == (6, 3)
    stored = _stored(world, "dup")
    assert stored["value"].isna().tolist() == [True, True, False]
    assert stored["value"].iloc[2] == 12.5
    assert (result.duplicates, result.conflicts) == (0, 3)  # the re-sent ids carry another value


def test_event_ids_are_per_experiment_and_conflicts_are_counted(world: World) -> None:
    """The idempotency key is (experiment, event_id): the same id in two experiments is two events."""
    world.experiment("ids-a")
    world.experiment("ids-b")
    a = ingest(world.store, _batch("same", experiment="ids-a"))
    b = ingest(world.store, _batch("same", experiment="ids-b"))
    assert (a.inserted, b.inserted, b.duplicates, b.conflicts) == (6, 6, 0, 0)
    assert count_events(world.store, "ids-a")[0] == count_events(world.store, "ids-b")[0] == 6
    # An identical re-send is a duplicate; a re-sent id with other content is a conflict, and the
    # stored row is kept (first write wins), never silently replaced.
    again = ingest(world.store, _batch("same", experiment="ids-b"))
    assert (again.inserted, again.duplicates, again.conflicts) == (0, 6, 0)
    changed = _batch("same", experiment="ids-b").assign(user_id=["x1", "u0", "u1", "u1", "u2", "u2"])
    clash = ingest(world.store, changed)
    assert (clash.received, clash.inserted, clash.duplicates, clash.conflicts) == (6, 0, 5, 1)
    assert clash.to_dict()["conflicts"] == 1
    frame = events_frame(world.store, "ids-b")
    assert sorted(frame["user_id"]) == ["u0", "u0", "u1", "u1", "u2", "u2"]


# --------------------------------------------------------------------------------------------------
# Metric sums against pandas, on both backends
# --------------------------------------------------------------------------------------------------


def _simulated_events(experiment: str, seed: int = 3, users: int = 300) -> pd.DataFrame:
    """Exposed and never-exposed users, events before exposure, values, covariates, several days."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    k = 0

    def add(user: int, variant: str, kind: str, when: dt.datetime, value: float | None = None,
            covariate: float | None = None) -> None:
        nonlocal k
        rows.append({"event_id": f"{experiment}-{k}", "experiment": experiment, "variant": variant,
                     "user_id": f"u{user}", "event_type": kind, "timestamp": when, "value": value,
                     "covariate": covariate})
        k += 1

    for u in range(users):
        variant = "control" if rng.random() < 0.5 else "treatment"
        day0 = START + dt.timedelta(days=int(rng.integers(0, 10)), hours=int(rng.integers(0, 24)))
        cov = float(np.round(rng.gamma(2.0, 3.0), 3)) if rng.random() < 0.8 else None
        exposed = rng.random() < 0.85
        if exposed:
            add(u, variant, "exposure", day0, covariate=cov)
        if rng.random() < 0.3:  # an event before the exposure (not counted; a CUPED covariate)
            add(u, variant, "impression", day0 - dt.timedelta(hours=3) if day0 - dt.timedelta(hours=3) >= START else day0)
        for _ in range(int(rng.poisson(3))):
            when = day0 + dt.timedelta(hours=float(rng.uniform(0, 72)))
            if when >= END:
                continue
            add(u, variant, "impression", when, covariate=cov)
            if rng.random() < 0.3:
                add(u, variant, "click", when + dt.timedelta(seconds=5), value=None if rng.random() < 0.7 else 2.0)
        if rng.random() < (0.2 if variant == "control" else 0.3):
            when = min(day0 + dt.timedelta(hours=float(rng.uniform(0, 48))), END - dt.timedelta(seconds=1))
            add(u, variant, "purchase", when, value=float(np.round(rng.lognormal(3, 1), 2)))
            if rng.random() < 0.2:
                add(u, variant, "purchase", when + dt.timedelta(hours=1), value=None)
    frame = pd.DataFrame(rows)
    frame["value"] = frame["value"].astype(object).where(frame["value"].notna(), None)
    frame["covariate"] = frame["covariate"].astype(object).where(frame["covariate"].notna(), None)
    return frame


def _pandas_sums(events: pd.DataFrame, metric: dict[str, Any], start: dt.datetime | None,
                 end: dt.datetime | None, *, lookback_days: float = 14.0) -> dict[str, MetricSums]:
    """The documented definition of the sums, written independently in pandas: users from their first
    exposure in the window, users who saw two variants left out, events from the exposure on, the
    covariate an explicit one or else the metric over the lookback before the exposure."""
    e = events.copy()
    e["value"] = pd.to_numeric(e["value"], errors="coerce")
    e["covariate"] = pd.to_numeric(e["covariate"], errors="coerce")
    exposures = e[e["event_type"] == "exposure"]
    if start is not None:
        exposures = exposures[exposures["timestamp"] >= start]
    if end is not None:
        exposures = exposures[exposures["timestamp"] < end]
        e = e[e["timestamp"] < end]
    first = exposures.groupby("user_id").agg(t0=("timestamp", "min"), variant=("variant", "min"),
                                             arms=("variant", "nunique"))
    first = first[first["arms"] == 1]
    num, den = metric["numerator"], metric.get("denominator")
    e = e[e["event_type"].isin({"exposure", num, den} - {None}) & e["user_id"].isin(first.index)]
    e = e.join(first[["t0"]], on="user_id")
    e = e[e["timestamp"] >= e["t0"] - dt.timedelta(days=lookback_days)]
    after = e["timestamp"] >= e["t0"]
    before = ~after
    v1 = e["value"].fillna(1.0)
    e = e.assign(
        n=((e["event_type"] == num) & after).astype(float),
        s=np.where((e["event_type"] == num) & after, v1, 0.0),
        d=np.where((e["event_type"] == den) & after, v1, 0.0) if den else 0.0,
        pn=((e["event_type"] == num) & before).astype(float),
        ps=np.where((e["event_type"] == num) & before, v1, 0.0),
    )
    per_user = e.groupby("user_id").agg(n=("n", "sum"), s=("s", "sum"), d=("d", "sum"), pn=("pn", "sum"),
                                        ps=("ps", "sum"), c=("covariate", "max"))
    per_user = per_user.join(first[["variant"]])
    proportion = metric["kind"] == "proportion"
    x = (per_user["n"] > 0).astype(float) if proportion else per_user["s"]
    y = per_user["d"]
    c = per_user["c"].fillna((per_user["pn"] > 0).astype(float) if proportion else per_user["ps"])
    out = {}
    for variant, idx in per_user.groupby("variant").groups.items():
        xv, yv, cv = x.loc[idx], y.loc[idx], c.loc[idx]
        out[str(variant)] = MetricSums(
            str(variant), len(idx), round(per_user.loc[idx, "n"].sum()), float(xv.sum()), float((xv**2).sum()),
            float(yv.sum()), float((yv**2).sum()), float((xv * yv).sum()), float(cv.sum()),
            float((cv**2).sum()), float((xv * cv).sum()),
        )
    return out


def _assert_same(a: list[MetricSums], b: list[MetricSums], rel: float = 1e-12) -> None:
    """Equal counts, and sums equal up to the rounding of a different order of addition."""
    assert [(x.variant, x.users, x.events) for x in a] == [(x.variant, x.users, x.events) for x in b]
    for x, y in zip(a, b, strict=True):
        for field in ("sum_x", "sum_x2", "sum_y", "sum_y2", "sum_xy", "sum_c", "sum_c2", "sum_xc"):
            assert getattr(x, field) == pytest.approx(getattr(y, field), rel=rel, abs=1e-12), (x.variant, field)


def _assert_sums(got: list[MetricSums], want: dict[str, MetricSums]) -> None:
    assert [s.variant for s in got] == ["control", "treatment"]
    for s in got:
        w = want.get(s.variant, MetricSums(s.variant, 0, 0, 0.0, 0.0))
        assert (s.users, s.events) == (w.users, w.events), s.variant
        for field in ("sum_x", "sum_x2", "sum_y", "sum_y2", "sum_xy", "sum_c", "sum_c2", "sum_xc"):
            assert getattr(s, field) == pytest.approx(getattr(w, field), rel=1e-9, abs=1e-9), (s.variant, field)


WINDOWS = [(None, None), (dt.datetime(2022, 3, 3), dt.datetime(2022, 3, 8, 12))]


def test_metric_sums_match_pandas(world: World) -> None:
    world.experiment("sums")
    events = _simulated_events("sums")
    assert ingest(world.store, events).inserted == len(events)
    for metric in METRICS:
        for start, end in WINDOWS:
            got = metric_sums(world.store, "sums", str(metric["name"]), start=start, end=end)
            _assert_sums(got, _pandas_sums(events, metric, start, end))
    # Some users really have covariates, ratios and pre-exposure events, so every sum was exercised.
    ctr = metric_sums(world.store, "sums", "ctr")
    assert len(events[events["event_type"] == "impression"]) > sum(s.sum_y for s in ctr)  # some came before
    assert all(s.sum_y > 0 and s.sum_xy > 0 and s.sum_xc > 0 for s in ctr)
    # Dates and ISO strings work as window bounds too.
    # (DuckDB sums floats in parallel, so two runs of one query may differ in the last bits.)
    by_text = metric_sums(world.store, "sums", "revenue", start="2022-03-03", end=dt.date(2022, 3, 8))
    by_datetime = metric_sums(world.store, "sums", "revenue", start=dt.datetime(2022, 3, 3), end=dt.datetime(2022, 3, 8))
    assert [s.variant for s in by_text] == [s.variant for s in by_datetime]
    for a, b in zip(by_text, by_datetime, strict=True):
        assert a.users == b.users and a.events == b.events
        assert a.sum_x == pytest.approx(b.sum_x, rel=1e-12) and a.sum_x2 == pytest.approx(b.sum_x2, rel=1e-12)


def test_daily_cumulative_sums_end_at_the_whole_window(world: World) -> None:
    world.experiment("daily")
    events = _simulated_events("daily", seed=11, users=120)
    # A gap: no events at all on 2022-03-06.
    events = events[events["timestamp"].dt.date != dt.date(2022, 3, 6)]
    ingest(world.store, events)
    for metric in METRICS:
        series = daily_metric_sums(world.store, "daily", str(metric["name"]))
        days = [d for d, _ in series]
        assert days == [days[0] + dt.timedelta(days=i) for i in range(len(days))]
        _assert_same(series[-1][1], metric_sums(world.store, "daily", str(metric["name"])))
        users = [[s.users for s in sums] for _, sums in series]
        assert all(a <= b for prev, cur in itertools.pairwise(users) for a, b in zip(prev, cur, strict=True))
        gap = days.index(dt.date(2022, 3, 6))
        assert series[gap][1] == series[gap - 1][1]
        # Each day equals the whole-window sums up to the end of that day (users enter at exposure).
        day = days[len(days) // 2]
        through = metric_sums(world.store, "daily", str(metric["name"]),
                              end=dt.datetime.combine(day + dt.timedelta(days=1), dt.time()))
        exposed_by_then = {
            (r.variant, r.user_id) for r in events[(events["event_type"] == "exposure")
                                                    & (events["timestamp"].dt.date <= day)].itertuples()
        }
        assert sum(s.users for s in series[days.index(day)][1]) == len(exposed_by_then)
        assert series[days.index(day)][1][0].users == through[0].users


def test_duckdb_and_postgresql_give_equal_sums(settings: Settings, postgres_settings: Settings) -> None:
    events = _simulated_events("same", seed=5, users=200)
    stores = []
    for s in (settings, postgres_settings):
        w = World(s, open_event_store(s), Registry(s.registry_url))
        w.experiment("same")
        ingest(w.store, events)
        stores.append(w.store)
    duck, pg = stores
    for metric in METRICS:
        for start, end in WINDOWS:
            _assert_same(metric_sums(duck, "same", str(metric["name"]), start=start, end=end),
                         metric_sums(pg, "same", str(metric["name"]), start=start, end=end))
        (day_a, last_a), (day_b, last_b) = (daily_metric_sums(st, "same", str(metric["name"]))[-1] for st in stores)
        assert day_a == day_b
        _assert_same(last_a, last_b)
    assert duck.to_arrow().equals(pg.to_arrow())


# --------------------------------------------------------------------------------------------------
# Which events count: first exposure, conversion window, multiple exposures, CUPED covariates, shifts
# --------------------------------------------------------------------------------------------------


def _rows(experiment: str, spec: list[tuple[str, str, str, dt.datetime, float | None]]) -> pd.DataFrame:
    """Events from (user, variant, event_type, time, value) tuples."""
    return pd.DataFrame({
        "event_id": [f"{experiment}-{i}" for i in range(len(spec))], "experiment": experiment,
        "variant": [r[1] for r in spec], "user_id": [r[0] for r in spec], "event_type": [r[2] for r in spec],
        "timestamp": [r[3] for r in spec], "value": pd.Series([r[4] for r in spec], dtype=object),
    })


def test_variance_is_exact_when_the_mean_dwarfs_the_spread(world: World) -> None:
    """x = 1e8 + N(0, 1): raw Σx² keeps no digit of the variance; the shifted sums keep them all."""
    world.experiment("huge", metrics=[{"name": "revenue", "kind": "mean", "numerator": "purchase"}])
    rng = np.random.default_rng(11)
    values = {"control": 1e8 + rng.normal(0, 1, 400), "treatment": 1e8 + 0.5 + rng.normal(0, 1, 400)}
    spec = []
    for v, xs in values.items():
        for i, x in enumerate(xs):
            when = START + dt.timedelta(hours=i % 48)
            spec += [(f"{v}{i}", v, "exposure", when, None), (f"{v}{i}", v, "purchase", when, float(x))]
    ingest(world.store, _rows("huge", spec))
    for s in metric_sums(world.store, "huge", "revenue", shifted=True):
        want = values[s.variant]
        assert s.users == 400
        assert s.mean == pytest.approx(want.mean(), rel=1e-15)
        assert s.var == pytest.approx(want.var(ddof=1), rel=1e-9)
        # the same from the fields, as statistics read them: (Σx'² − (Σx')²/n)/(n − 1) around the shift
        assert (s.sum_x2 - s.sum_x**2 / s.users) / (s.users - 1) == pytest.approx(want.var(ddof=1), rel=1e-9)
        assert abs(s.shift - 1e8) < 1.0
    raw = metric_sums(world.store, "huge", "revenue")  # the seed's raw sums are still there on request
    assert raw[0].shift == 0.0 and raw[0].sum_x == pytest.approx(values["control"].sum(), rel=1e-15)


def test_events_count_from_the_first_exposure_within_the_window(world: World) -> None:
    metrics = [{"name": "buy", "kind": "proportion", "numerator": "purchase", "conversion_window_days": 7},
               {"name": "spend", "kind": "mean", "numerator": "purchase"}]
    world.experiment("window", metrics=metrics)
    assert world.registry.get("window").metric("buy").conversion_window_days == 7.0
    day = START + dt.timedelta(days=2)
    spec = [
        ("a", "control", "purchase", day - dt.timedelta(hours=1), 10.0),  # before exposure: never counts
        ("a", "control", "exposure", day, None),
        ("b", "control", "exposure", day, None),
        ("b", "control", "purchase", day + dt.timedelta(days=8), 5.0),  # after the 7-day window of "buy"
        ("c", "treatment", "exposure", day, None),
        ("c", "treatment", "purchase", day + dt.timedelta(days=6), 3.0),  # inside the window
        ("d", "treatment", "exposure", day, None),
        ("d", "treatment", "exposure", day + dt.timedelta(days=1), None),  # a second exposure: one user
    ]
    ingest(world.store, _rows("window", spec))
    buy = metric_sums(world.store, "window", "buy")
    assert [(s.variant, s.users, s.sum_x) for s in buy] == [("control", 2, 0.0), ("treatment", 2, 1.0)]
    spend = metric_sums(world.store, "window", "spend")
    assert [(s.users, s.events, s.sum_x) for s in spend] == [(2, 1, 5.0), (2, 1, 3.0)]
    # Counting from the exposure holds in the daily series too, whose last day is the whole window.
    _assert_same(daily_metric_sums(world.store, "window", "buy")[-1][1], buy)
    with pytest.raises(ValueError, match="conversion_window_days"):
        world.registry.add_metric("window", "bad", "proportion", "purchase", conversion_window_days=-1)


def test_users_exposed_to_several_variants(world: World) -> None:
    """Excluded from both arms by default, counted and reported; 'first' and 'keep' on request."""
    world.experiment("multi", metrics=[{"name": "buy", "kind": "proportion", "numerator": "purchase"}])
    day = START + dt.timedelta(days=1)
    spec = [
        ("m", "treatment", "exposure", day, None),
        ("m", "control", "exposure", day + dt.timedelta(hours=1), None),
        ("m", "control", "purchase", day + dt.timedelta(hours=2), None),
        ("c1", "control", "exposure", day, None), ("c2", "control", "exposure", day, None),
        ("t1", "treatment", "exposure", day, None), ("t1", "treatment", "purchase", day, None),
        ("t2", "treatment", "exposure", day, None),
    ]
    ingest(world.store, _rows("multi", spec))
    exp = world.registry.get("multi")
    query = [("proportion", "purchase", None)]
    found = world.store.experiment_sums(exp.id, query, variants=exp.variant_names)
    assert (found.exposed_users, found.multiple_exposure_users) == (5, 1)
    assert found.multiple_exposure_share == pytest.approx(0.2)
    assert [(s.variant, s.users, s.sum_x) for s in found.metrics[0]] == [("control", 2, 0.0), ("treatment", 2, 1.0)]
    first = world.store.experiment_sums(exp.id, query, variants=exp.variant_names, multiple_exposures="first")
    assert [(s.users, s.sum_x) for s in first.metrics[0]] == [(2, 0.0), (3, 2.0)]  # m is treatment's
    keep = world.store.experiment_sums(exp.id, query, variants=exp.variant_names, multiple_exposures="keep")
    assert [(s.users, s.sum_x) for s in keep.metrics[0]] == [(3, 1.0), (3, 1.0)]
    assert (keep.exposed_users, keep.multiple_exposure_users) == (5, 1)
    daily = world.store.daily_experiment_sums(exp.id, query, variants=exp.variant_names)
    assert (daily[-1][1].exposed_users, daily[-1][1].multiple_exposure_users) == (5, 1)
    assert [s.users for s in daily[-1][1].metrics[0]] == [2, 2]
    with pytest.raises(ValueError, match="multiple_exposures must be one of"):
        world.store.experiment_sums(exp.id, query, multiple_exposures="both")


def test_cuped_covariate_is_the_metric_before_the_first_exposure(world: World) -> None:
    metrics = [{"name": "spend", "kind": "mean", "numerator": "purchase"},
               {"name": "spend2", "kind": "mean", "numerator": "purchase", "cuped_lookback_days": 2}]
    world.experiment("cuped", metrics=metrics)
    day = START + dt.timedelta(days=10)
    spec = [
        ("a", "control", "purchase", day - dt.timedelta(days=3), 4.0),   # in the 14-day lookback only
        ("a", "control", "purchase", day - dt.timedelta(days=1), 6.0),   # in both lookbacks
        ("a", "control", "exposure", day, None),
        ("a", "control", "purchase", day + dt.timedelta(hours=1), 9.0),
        ("b", "control", "exposure", day, None),
        ("c", "treatment", "purchase", day - dt.timedelta(days=9), 1.0),
        ("c", "treatment", "exposure", day, None),
        ("d", "treatment", "exposure", day, None),
    ]
    ingest(world.store, _rows("cuped", spec))
    for name, c_a, c_c in (("spend", 10.0, 1.0), ("spend2", 6.0, 0.0)):
        ctrl, treat = metric_sums(world.store, "cuped", name)
        assert (ctrl.sum_c, ctrl.sum_c2, ctrl.sum_xc) == pytest.approx((c_a, c_a**2, 9.0 * c_a)), name
        assert (treat.sum_c, treat.sum_c2, treat.sum_xc) == pytest.approx((c_c, c_c**2, 0.0)), name
        assert ctrl.sum_x == 9.0 and ctrl.events == 1  # the pre-exposure purchases are no outcome
