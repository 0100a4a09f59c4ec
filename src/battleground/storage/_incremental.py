"""Incremental refresh: per-day partial sums cached in battleground's registry, the last N days recomputed.

The sums of an experiment are sums over units (users, or (user, variant) pairs), and sums taken around
a *fixed* shift add up over units. So with ``S(t)`` the per-arm sums of every unit with events before
``t`` and ``A`` the units with an event in ``[t, t')``:

    S(t') = S(t) − Σ_{u ∈ A} contribution(u, t) + Σ_{u ∈ A} contribution(u, t')

(a unit without events in ``[t, t')`` contributes the same at both instants). The cache holds
``S(midnight)`` of the cutoff day, keyed by experiment, day and the hash of the metric definitions
(with the window start and the multiple-exposure policy), so a changed definition never meets old
sums. A refresh at ``end`` recomputes only ``[cutoff, end)``, the cutoff being the midnight N − 1 days
before end's: it first settles the days between the newest cached day and the cutoff (stored, since
data older than N days is settled), then steps to ``end``; the result is re-centred on the exact means,
as a full scan gives. Late events older than N days are not seen until ``full=True`` recomputes
everything.

Why a refresh used to cost 2–5× a full recompute (profiled on the warehouse benchmark): a step computed
``contribution(u, t)`` by re-reading the *whole history* of the active units (a semi-join, which a
Parquet source cannot prune by time), once for each of its two instants, and a daily check made two
steps: four scans of the source per check. Now, on DuckDB (the embedded store and the sources DuckDB
reads in place), the cache also holds each unit's state at the cutoff (its first exposure, variants,
covariate and window aggregates; a Parquet file in ``cache_dir``), and one query reads only the events
after the cutoff (``ts >= cutoff``, pushed into the scan) plus the look-back of units first exposed
after it; what is exact is stated in ``_incremental_sql.py``. PostgreSQL, Spark and chdb run the same
refresh with the states in battleground's store (:class:`_PulledRunner`: the engine runs read-only
queries, the step runs in a local DuckDB); MariaDB/MySQL keep the history re-read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground.storage._sums_sql import DAILY_COLUMNS, MetricQuery, as_query
from battleground.storage.events import decode_sums

if TYPE_CHECKING:
    import pyarrow as pa

    from battleground.storage.events import EventStore
    from battleground.storage.sums import ExperimentSums

__all__ = ["definition_hash", "refresh_sums"]

_NULL = "\x00"  # the excluded users' row (variant NULL) in the JSON cache
_ADDED = ("users", "exposed_users", "multiple_users")


def definition_hash(defs: Sequence[MetricQuery], multiple: str, start: dt.datetime | None) -> str:
    """The cache key of a set of metric definitions over a window starting at ``start``."""
    text = json.dumps({"metrics": [[m.kind, m.numerator, m.denominator, m.window_days, m.lookback_days]
                                   + ([m.cap_value] if m.cap_value is not None else [])
                                   for m in defs], "multiple": multiple,
                       "start": start.isoformat() if start else None}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _by_arm(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in records:
        key = _NULL if r["variant"] is None else str(r["variant"])
        out[key] = {k: float(v or 0.0) for k, v in r.items() if k != "variant"}
    return out


def _combine(base: dict[str, dict[str, float]], minus: dict[str, dict[str, float]],
             plus: dict[str, dict[str, float]], n: int) -> dict[str, dict[str, float]]:
    cols = [*_ADDED, *(f"m{j}_{c}" for j in range(n) for c in DAILY_COLUMNS)]
    out: dict[str, dict[str, float]] = {}
    for arm in {*base, *minus, *plus}:
        row = {c: base.get(arm, {}).get(c, 0.0) - minus.get(arm, {}).get(c, 0.0) + plus.get(arm, {}).get(c, 0.0)
               for c in cols}
        out[arm] = row
    return out


def _shifts_of(records: list[dict[str, Any]], n: int) -> dict[str, float]:
    first = records[0] if records else {}
    return {f"{k}{j}": float(first.get(f"m{j}_{c}") or 0.0)
            for j in range(n) for k, c in (("kx", "shift"), ("ky", "shift_y"), ("kc", "shift_c"))}


def _recentred(arms: dict[str, dict[str, float]], shifts: dict[str, float], defs: Sequence[MetricQuery],
               ) -> list[dict[str, Any]]:
    """Rows of the metric-sums query from sums around ``shifts``, re-centred on the exact means."""
    analysed = [a for k, a in arms.items() if k != _NULL]
    n_all = sum(a["users"] for a in analysed)
    rows: list[dict[str, Any]] = [{"variant": None if k == _NULL else k, **a} for k, a in arms.items()]
    for j, m in enumerate(defs):
        kx, ky, kc = shifts[f"kx{j}"], shifts[f"ky{j}"], shifts[f"kc{j}"]
        total = {c: sum(a[f"m{j}_{c}"] for a in analysed) for c in ("sum_x", "sum_y", "sum_c")}
        nx = kx if m.kind == "proportion" else (kx + total["sum_x"] / n_all if n_all else 0.0)
        ny = (ky + total["sum_y"] / n_all if n_all else 0.0) if m.kind == "ratio" else ky
        nc = kc + total["sum_c"] / n_all if n_all else 0.0
        dx, dy, dc = nx - kx, ny - ky, nc - kc
        for r in rows:
            u = r["users"]
            sx, sy, sc = r[f"m{j}_sum_x"], r[f"m{j}_sum_y"], r[f"m{j}_sum_c"]
            r[f"m{j}_sum_x2"] += -2 * dx * sx + u * dx * dx
            r[f"m{j}_sum_c2"] += -2 * dc * sc + u * dc * dc
            r[f"m{j}_sum_xc"] += -dc * sx - dx * sc + u * dx * dc
            if m.kind == "ratio":  # e (the pre-period denominator) is around the denominator's shift too
                se = r[f"m{j}_sum_e"]
                r[f"m{j}_sum_e2"] += -2 * dy * se + u * dy * dy
                r[f"m{j}_sum_xe"] += -dy * sx - dx * se + u * dx * dy
                r[f"m{j}_sum_ye"] += -dy * se - dy * sy + u * dy * dy
                r[f"m{j}_sum_ce"] += -dy * sc - dc * se + u * dc * dy
                r[f"m{j}_sum_yc"] += -dc * sy - dy * sc + u * dy * dc
                r[f"m{j}_sum_e"] = se - u * dy
                r[f"m{j}_sum_y2"] += -2 * dy * sy + u * dy * dy
                r[f"m{j}_sum_xy"] += -dy * sx - dx * sy + u * dx * dy
                r[f"m{j}_sum_y"] = sy - u * dy
            r[f"m{j}_sum_x"] = sx - u * dx
            r[f"m{j}_sum_c"] = sc - u * dc
            r[f"m{j}_shift"], r[f"m{j}_shift_y"], r[f"m{j}_shift_c"] = nx, ny, nc
    return rows


def _step(store: EventStore, exp_id: int, defs: Sequence[MetricQuery], start: dt.datetime | None,
          multiple: str, base: dict[str, dict[str, float]], shifts: dict[str, float], t0: dt.datetime,
          t1: dt.datetime) -> dict[str, dict[str, float]]:
    """``S(t1)`` from ``S(t0)``: only the units with an event in ``[t0, t1)`` are read."""
    active = (t0, t1)
    minus = _by_arm(store.sums_records(exp_id, defs, start, t0, multiple, shifts=shifts, active=active))
    plus = _by_arm(store.sums_records(exp_id, defs, start, t1, multiple, shifts=shifts, active=active))
    return _combine(base, minus, plus, len(defs))


def refresh_sums(
    store: EventStore,
    registry_url: str,
    experiment_id: int,
    metrics: Sequence[Any],
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    variants: Sequence[str] = (),
    *,
    multiple_exposures: str = "exclude",
    days: int = 2,
    full: bool = False,
    cache_dir: str | Path | None = None,
) -> ExperimentSums:
    """:meth:`EventStore.experiment_sums` over ``[start, end)`` recomputing only the last ``days`` days
    (``end`` default now, UTC); ``full`` recomputes everything and replaces the cache.

    On DuckDB (the embedded store, and sources DuckDB reads in place: Parquet, Delta, Iceberg) the
    per-unit states at the cutoff are cached as a Parquet file in ``cache_dir`` (default
    ``sums_cache/`` beside a SQLite registry, else under the temporary directory) and a refresh reads
    only the events after the cutoff (see ``_incremental_sql.py``). On PostgreSQL, Spark and chdb the
    states are cached the same way and the engine runs read-only queries: the first states, then per
    step the recent events, merged with the states in a local DuckDB. On other engines (MariaDB), and
    for capped metrics, a refresh re-reads the whole history of the units active since the cutoff
    (exact, but it scans the source)."""
    if not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a whole number of days >= 1, got {days!r}")
    defs = [as_query(m) for m in metrics]
    end = end or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    cutoff = dt.datetime.combine(end.date() - dt.timedelta(days=days - 1), dt.time())
    # a quantile cap moves with every new user: it is not a sum over units, so read it in one scan
    if (start is not None and cutoff <= start) or any(m.cap_quantile is not None for m in defs):
        return store.experiment_sums(experiment_id, defs, start, end, variants, multiple_exposures=multiple_exposures)
    key = definition_hash(defs, multiple_exposures, start)
    runner = _DuckDBRunner.of(store)
    if runner is not None and not any(m.capped for m in defs):
        folder = Path(cache_dir) if cache_dir is not None else _default_cache(registry_url)
        final, shifts = _pruned(runner, registry_url, experiment_id, defs, start, end, cutoff,
                                multiple_exposures, key, folder, full)
    else:
        final, shifts = _by_users(store, registry_url, experiment_id, defs, start, end, cutoff,
                                  multiple_exposures, key, full)
    return decode_sums(_recentred(final, shifts, defs), len(defs), variants, multiple_exposures)


def _by_users(store: EventStore, registry_url: str, experiment_id: int, defs: Sequence[MetricQuery],
              start: dt.datetime | None, end: dt.datetime, cutoff: dt.datetime, multiple_exposures: str,
              key: str, full: bool) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """The refresh on any engine: the active units' sums from a scan of their whole history."""
    cached = None if full else _latest(registry_url, experiment_id, key, cutoff.date())
    if cached is None:
        records = store.sums_records(experiment_id, defs, start, cutoff, multiple_exposures)
        shifts = _shifts_of(records, len(defs))
        state = _by_arm(records)
        _save(registry_url, experiment_id, key, cutoff.date(), state, shifts, replace=full)
    else:
        day, state, shifts = cached[0], cached[1]["arms"], cached[1]["shifts"]
        if day < cutoff.date():
            state = _step(store, experiment_id, defs, start, multiple_exposures, state, shifts,
                          dt.datetime.combine(day, dt.time()), cutoff)
            _save(registry_url, experiment_id, key, cutoff.date(), state, shifts)
    return _step(store, experiment_id, defs, start, multiple_exposures, state, shifts, cutoff, end), shifts


# ------------------------------------------------------------------ the pruned refresh
class _DuckDBRunner:
    """Runs the incremental queries on a DuckDB connection (the embedded store's, a DuckDB source's),
    values bound as literals; the events are read where they are (``relation``: a source's mapping)."""

    def __init__(self, connection: Any, relation: Any = None) -> None:
        self.connection, self.relation = connection, relation

    @classmethod
    def of(cls, store: EventStore) -> _DuckDBRunner | None:
        """The runner of ``store``: DuckDB's own, one that pulls the recent events from PostgreSQL, Spark
        or chdb, or ``None`` (other engines keep the history re-read)."""
        if store.backend == "duckdb":
            return cls(store.connection)  # type: ignore[attr-defined]
        engine = getattr(store, "engine", None)
        if store.backend == "warehouse" and engine is not None and engine.dialect == "duckdb":
            return cls(contextlib.nullcontext(engine.connection), getattr(store, "relation", None))
        if store.backend in ("postgresql", "warehouse") and store.dialect in _PULLED:
            return _PulledRunner(store)
        return None

    def load(self, defs: Sequence[MetricQuery], params: dict[str, Any]) -> None:
        """Make the events a step over ``[:cutoff, :end)`` reads available: here they already are."""

    def first(self, sql: str, params: dict[str, Any], path: Path) -> None:
        """The first unit states (``sql`` reads every event before the cutoff) into ``path``."""
        self.copy(sql, params, path)

    def _text(self, sql: str, params: dict[str, Any]) -> str:
        """The query as DuckDB runs it: compiled once per text and relation, then the values written in
        as literals (a prepared parameter would hide the time bounds from the Parquet scan's pruning)."""
        from battleground.storage._compile import literal
        from battleground.storage._events_sql import _TOKEN

        text = _duckdb_text(sql, self.relation)
        return _TOKEN.sub(lambda m: m.group(0) if m.group(1) is None
                          else literal(params[m.group(1)], "duckdb").sql(dialect="duckdb"), text)

    def _con(self) -> Any:
        c = self.connection
        return c() if callable(c) else c

    def copy(self, sql: str, params: dict[str, Any], path: Path) -> None:
        """Write the rows of ``sql`` to the Parquet file ``path`` (atomically: a temporary file renamed)."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with self._con() as con:
            con.execute(f"COPY ({self._text(sql, params)}) TO {_quoted(tmp)} (FORMAT parquet)")
        os.replace(tmp, path)

    def fetch(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._con() as con:
            cursor = con.execute(self._text(sql, params))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


# engines whose refresh pulls the recent events (MySQL/MariaDB lack the FULL JOIN of the first states)
_PULLED = ("postgres", "spark", "clickhouse")
_PULLED_COLUMNS = ("experiment_id", "variant", "user_id", "event_type", "ts", "value", "covariate")


class _PulledRunner(_DuckDBRunner):
    """The pruned refresh on an engine that cannot read battleground's cached states (PostgreSQL, Spark,
    chdb), without writing anything into it. The engine runs two read-only queries of the shared
    definitions: once, the first unit states (one row per unit, brought back and cached as Parquet in
    battleground's store, like DuckDB's); then, per step, the events that the step reads
    (:func:`recent_events_sql`: the recent days, and the look-back of units exposed in them). The step
    itself (states moved forward, the active units' sums) runs on those rows and the cached states in an
    in-memory DuckDB, with the same SQL as on DuckDB, so the result is the same, exactly."""

    def __init__(self, store: EventStore) -> None:
        import duckdb

        local = duckdb.connect(":memory:")
        local.execute("SET TimeZone = 'UTC'")
        super().__init__(contextlib.nullcontext(local))
        self.store, self.local = store, local
        self._events(self._empty())

    def _empty(self) -> pa.Table:
        from battleground.storage._arrow import EVENT_SCHEMA

        return EVENT_SCHEMA.empty_table().select(list(_PULLED_COLUMNS))

    def _events(self, table: pa.Table) -> None:
        self.local.register("events", table)

    def load(self, defs: Sequence[MetricQuery], params: dict[str, Any]) -> None:
        from battleground.storage._incremental_sql import recent_events_sql

        rows = self.store._query(recent_events_sql(defs), params, scan=True)
        self._events(_as_table(rows, self._empty().schema))

    def first(self, sql: str, params: dict[str, Any], path: Path) -> None:
        import pyarrow.parquet as pq

        self._events(self._empty())  # the states' columns and types, as DuckDB gives them
        schema = self.local.sql(f"SELECT * FROM ({self._text(sql, params)}) s LIMIT 0").to_arrow_table().schema
        table = _as_table(self.store._query(sql, params, scan=True), schema)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)


def _as_table(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    """Rows from an engine's driver as an Arrow table of ``schema``: instants as naive UTC (drivers give
    aware or naive ones), numbers as floats or ints (PostgreSQL's sums are ``Decimal``)."""
    import pyarrow as pa

    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for field, values in zip(schema, columns, strict=True):
        t = field.type
        if pa.types.is_timestamp(t):
            values = tuple(v.astimezone(dt.UTC).replace(tzinfo=None) if v is not None and v.tzinfo is not None
                           else v for v in values)
        elif pa.types.is_floating(t):
            values = tuple(None if v is None else float(v) for v in values)
        elif pa.types.is_integer(t):
            values = tuple(None if v is None else int(v) for v in values)
        elif pa.types.is_boolean(t):
            values = tuple(None if v is None else bool(v) for v in values)
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            values = tuple(None if v is None else str(v) for v in values)
        arrays.append(pa.array(values, type=t))
    return pa.Table.from_arrays(arrays, schema=schema)


_TEXTS: dict[tuple[str, str | None], str] = {}


def _duckdb_text(sql: str, relation: Any) -> str:
    """``sql`` compiled for DuckDB with its ``:name`` placeholders kept, ``events`` replaced by
    ``relation`` (a sqlglot expression), so that a refresh reuses the text of the last one."""
    from battleground.storage._compile import compile_sql

    key = (sql, None if relation is None else relation.sql(dialect="duckdb"))
    if key not in _TEXTS:
        if len(_TEXTS) > 64:
            _TEXTS.clear()
        _TEXTS[key] = compile_sql(sql, "duckdb", None, events=relation)
    return _TEXTS[key]


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _read(path: Path) -> str:
    return f"read_parquet({_quoted(path)})"


def _default_cache(registry_url: str) -> Path:
    if registry_url.startswith("sqlite:///"):
        return Path(registry_url[len("sqlite:///"):]).expanduser().absolute().parent / "sums_cache"
    return Path(tempfile.gettempdir()) / "battleground-sums-cache"


def _tagged(records: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "tag"} for r in records if r["tag"] == tag]


def _pruned(runner: _DuckDBRunner, registry_url: str, experiment_id: int, defs: Sequence[MetricQuery],
            start: dt.datetime | None, end: dt.datetime, cutoff: dt.datetime, multiple: str, key: str,
            folder: Path, full: bool) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """The refresh that reads only the events after the cutoff (and the look-back of new units)."""
    from battleground.storage._incremental_sql import active_sums_sql, state_sql, state_sums_sql
    from battleground.storage._sums_sql import max_lookback
    from battleground.storage.events import _params

    base = _params(experiment_id, defs, start, end)
    lookback = max_lookback(defs)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{int(experiment_id)}-{key}-"

    def path_of(day: dt.date) -> Path:
        return folder / f"{prefix}{day.isoformat()}.parquet"

    def between(lo: dt.datetime, hi: dt.datetime, **extra: Any) -> dict[str, Any]:
        return {**base, "cutoff": lo, "since": lo - lookback, "end": hi, **extra}

    cached = None if full else _latest(registry_url, experiment_id, key, cutoff.date())
    state = path_of(cached[0]) if cached is not None and cached[1].get("state") else None
    if cached is None or state is None or not state.exists():  # the first read: every event before the cutoff
        for stale in folder.glob(f"{prefix}*.parquet"):
            stale.unlink(missing_ok=True)
        state = path_of(cutoff.date())
        runner.first(state_sql(defs, multiple), {**base, "cutoff": base["start"], "since": base["scan_start"],
                                                 "end": cutoff}, state)
        records = _tagged(runner.fetch(state_sums_sql(defs, multiple, _read(state), fixed_shifts=False), base), "new")
        shifts = _shifts_of(records, len(defs))
        arms = _by_arm(records)
        _save(registry_url, experiment_id, key, cutoff.date(), arms, shifts, replace=True, state=state.name)
    else:
        day, arms, shifts = cached[0], cached[1]["arms"], cached[1]["shifts"]
        if day < cutoff.date():  # settle the days between: the states at the new cutoff, saved
            moved = path_of(cutoff.date())
            settle = between(dt.datetime.combine(day, dt.time()), cutoff)
            runner.load(defs, settle)
            runner.copy(state_sql(defs, multiple, _read(state)), settle, moved)
            records = _tagged(runner.fetch(state_sums_sql(defs, multiple, _read(moved), fixed_shifts=True),
                                           {**base, **shifts}), "new")
            arms = _by_arm(records)
            _save(registry_url, experiment_id, key, cutoff.date(), arms, shifts, state=moved.name)
            state.unlink(missing_ok=True)
            state = moved
    step = between(cutoff, end, **shifts)
    runner.load(defs, step)
    rows = runner.fetch(active_sums_sql(defs, multiple, _read(state)), step)
    return _combine(arms, _by_arm(_tagged(rows, "old")), _by_arm(_tagged(rows, "new")), len(defs)), shifts


# ------------------------------------------------------------------ the cache (registry table)
def _latest(registry_url: str, exp_id: int, key: str, day: dt.date) -> tuple[dt.date, dict[str, Any]] | None:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from battleground.storage._db import registry_engine
    from battleground.storage._models import SumsCacheRow

    with Session(registry_engine(registry_url)) as session:
        row = session.scalars(
            select(SumsCacheRow).where(SumsCacheRow.experiment_id == exp_id, SumsCacheRow.definition == key,
                                       SumsCacheRow.day <= day).order_by(SumsCacheRow.day.desc()).limit(1)
        ).first()
        if row is None:
            return None
        return row.day, dict(row.sums)


def _save(registry_url: str, exp_id: int, key: str, day: dt.date, arms: Any, shifts: Any, *,
          replace: bool = False, state: str | None = None) -> None:
    from sqlalchemy import delete
    from sqlalchemy.orm import Session

    from battleground.storage._db import registry_engine
    from battleground.storage._models import SumsCacheRow

    with Session(registry_engine(registry_url)) as session, session.begin():
        if replace:
            session.execute(delete(SumsCacheRow).where(SumsCacheRow.experiment_id == exp_id,
                                                       SumsCacheRow.definition == key))
        session.merge(SumsCacheRow(experiment_id=exp_id, definition=key, day=day,
                                   sums={"arms": arms, "shifts": shifts, **({"state": state} if state else {})}))
