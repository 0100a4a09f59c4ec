"""Event stores: one small interface, two implementations (DuckDB embedded, PostgreSQL with COPY).

A store knows how to append a validated batch atomically and idempotently (on ``(experiment_id,
event_id)``) and how to
compute per-variant sufficient statistics of a metric definition in SQL. It knows nothing about
experiments' rules or statistics: :mod:`battleground.experiment.events` validates batches against the
registry and resolves metric names; :mod:`battleground.stats` turns the sums into tests.
"""

from __future__ import annotations

import abc
import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from battleground.errors import StorageError
from battleground.storage._events_sql import EXPOSURE
from battleground.storage._sums_sql import MetricDefinition
from battleground.storage.sums import MetricSums

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "EventStore",
    "StoreUnavailableError",
    "WriteResult",
    "has_duplicate_ids",
    "open_event_store",
    "registry_url_for",
]

# Open bounds for the time window (both engines compare TIMESTAMP against these exactly).
_MIN_TS = dt.datetime(1900, 1, 1)
_MAX_TS = dt.datetime(9999, 12, 31)


class StoreUnavailableError(StorageError, RuntimeError):
    """The store's database server cannot be reached, or the connection broke during an operation.

    A batch being written may or may not have been stored; re-sending it is always safe, because ingest
    is idempotent on ``(experiment_id, event_id)``.
    """


@dataclass(frozen=True)
class WriteResult:
    """What writing one batch did: every row is inserted, a duplicate or a conflict.

    Attributes:
        inserted: rows stored.
        duplicates: rows whose (experiment_id, event_id) was stored (or came earlier in the batch) with
            the same content: a harmless re-send.
        conflicts: rows whose key was stored with *other* content; the stored row is kept (first write
            wins), so a sender that reuses ids learns about it here instead of losing events silently.
    """

    inserted: int
    duplicates: int = 0
    conflicts: int = 0


def has_duplicate_ids(table: pa.Table) -> bool:
    """Whether some ``event_id`` occurs twice in a batch (then the stores check for repeated keys).

    Hashing the ids with the vectorised XXH64 and sorting the 64-bit digests is several times faster than
    a hash set of strings; equal ids always have equal digests, and a collision of different ids (odds
    about n²/2⁶⁵) only sends the batch down the slower, exact deduplicating path.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = table.column("event_id")
    if table.num_rows < 2:
        return False
    longest = pc.max(pc.binary_length(ids)).as_py() or 0
    if longest > 64:  # the vectorised hash pads every id to the longest: use a hash set instead
        return bool(pc.count_distinct(ids).as_py() != table.num_rows)
    from battleground.experiment._xxh64 import xxh64_strings

    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    digests = np.sort(xxh64_strings(b"", arr))
    return bool(np.any(digests[1:] == digests[:-1]))


def registry_url_for(events_url: str) -> str:
    """The registry that goes with an event store by convention: the same PostgreSQL database, or
    ``registry.db`` beside an ``events.duckdb`` file."""
    if events_url.startswith(("postgresql", "postgres://")):
        return events_url
    if events_url.startswith("duckdb:///"):
        path = events_url[len("duckdb:///") :]
        return f"sqlite:///{os.path.join(os.path.dirname(os.path.abspath(path)), 'registry.db')}"
    raise ValueError(f"event store URL must start with 'duckdb:///' or 'postgresql://', got {events_url!r}")


class EventStore(abc.ABC):
    """Append-only storage of experiment events with per-variant sums computed in SQL.

    Subclasses implement the primitives :meth:`_write`, :meth:`_fetch` and :meth:`to_arrow`; the queries are shared (``storage/_events_sql.py``). Connections are opened per
    operation, so a store holds no resources between calls and needs no closing.

    Attributes:
        url: the store's URL.
        registry_url: the registry used to validate batches and to look metrics up.
    """

    backend: str = ""

    def __init__(self, url: str, registry_url: str | None = None) -> None:
        self.url = url
        self.registry_url = registry_url or registry_url_for(url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # ------------------------------------------------------------------ primitives
    @abc.abstractmethod
    def _write(self, table: pa.Table) -> WriteResult:
        """Insert a validated batch in one transaction, skipping keys ``(experiment_id, event_id)`` already
        stored (or repeated within the batch: the first occurrence wins); say what became of each row."""

    @abc.abstractmethod
    def _fetch(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run a shared query (``:name`` placeholders) and return all rows."""

    def count(self, experiment_id: int | None = None) -> int:
        """Number of stored events (of one experiment, or all)."""
        return sum(n for _, n in self.count_by_type(experiment_id))

    def count_by_type(self, experiment_id: int | None = None) -> list[tuple[str, int]]:
        """``(event_type, number of events)`` of one experiment (or all), by event type."""
        sql = "SELECT event_type, COUNT(*) FROM events"
        params: dict[str, Any] = {}
        if experiment_id is not None:
            sql += " WHERE experiment_id = :experiment"
            params["experiment"] = int(experiment_id)
        rows = self._fetch(sql + " GROUP BY event_type ORDER BY event_type", params)
        return [(str(t), int(n)) for t, n in rows]

    @abc.abstractmethod
    def to_arrow(self, experiment_id: int | None = None) -> pa.Table:
        """The stored events as an Arrow table (columns as in ``COLUMNS``), ordered by ts and event_id."""

    def write_batch(self, table: pa.Table) -> WriteResult:
        """Store an already validated, normalised batch (see :func:`battleground.experiment.events.ingest`
        for the public, validating entry point)."""
        if table.num_rows == 0:
            return WriteResult(0)
        return self._write(table)

    # ------------------------------------------------------------------ sums of metric definitions
    def sums_many(
        self,
        experiment_id: int,
        metrics: Sequence[MetricDefinition],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Sequence[str] = (),
    ) -> list[list[MetricSums]]:
        """Per-variant sums over ``[start, end)`` of metric definitions ``(kind, numerator, denominator)``
        from one scan of the events: one list per metric; ``variants`` lists variants to report even
        when they have no users yet (with zero sums), in that order."""
        from battleground.storage._sums_sql import metric_sums_many_sql

        defs = _definitions(metrics)
        rows = self._fetch(metric_sums_many_sql(defs), _params(experiment_id, defs, start, end))
        out = []
        for j in range(len(defs)):
            found = {str(r[0]): _sums_from_row(str(r[0]), (r[1], *r[2 + 9 * j : 11 + 9 * j])) for r in rows}
            out.append(_ordered(found, variants))
        return out

    def daily_sums_many(
        self,
        experiment_id: int,
        metrics: Sequence[MetricDefinition],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Sequence[str] = (),
    ) -> list[tuple[dt.date, list[list[MetricSums]]]]:
        """Cumulative per-variant sums at the end of each day (UTC) from the first day with data to the
        last (days without events repeat the previous day), one list per metric; the last day equals
        :meth:`sums_many`."""
        from battleground.storage._sums_sql import daily_sums_many_sql

        defs = _definitions(metrics)
        rows = self._fetch(daily_sums_many_sql(defs), _params(experiment_id, defs, start, end))
        if not rows:
            return []
        by_day: dict[dt.date, dict[str, tuple[Any, ...]]] = {}
        for r in rows:
            by_day.setdefault(_as_date(r[0]), {})[str(r[1])] = r[2:]
        names = list(variants) + sorted({v for d in by_day.values() for v in d} - set(variants))
        totals = {v: [[0.0] * 10 for _ in defs] for v in names}
        out: list[tuple[dt.date, list[list[MetricSums]]]] = []
        day, last = min(by_day), max(by_day)
        while day <= last:
            for v, deltas in by_day.get(day, {}).items():
                users = float(deltas[0] or 0.0)
                for j, acc in enumerate(totals[v]):
                    acc[0] += users
                    for i, value in enumerate(deltas[1 + 9 * j : 10 + 9 * j]):
                        acc[1 + i] += float(value or 0.0)
            out.append((day, [
                _ordered({v: _sums_from_row(v, totals[v][j]) for v in names}, variants) for j in range(len(defs))
            ]))
            day += dt.timedelta(days=1)
        return out

    def sums(
        self,
        experiment_id: int,
        kind: str,
        numerator: str,
        denominator: str | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Sequence[str] = (),
    ) -> list[MetricSums]:
        """:meth:`sums_many` of one metric definition."""
        return self.sums_many(experiment_id, [(kind, numerator, denominator)], start, end, variants)[0]

    def daily_sums(
        self,
        experiment_id: int,
        kind: str,
        numerator: str,
        denominator: str | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Sequence[str] = (),
    ) -> list[tuple[dt.date, list[MetricSums]]]:
        """:meth:`daily_sums_many` of one metric definition."""
        series = self.daily_sums_many(experiment_id, [(kind, numerator, denominator)], start, end, variants)
        return [(day, per_metric[0]) for day, per_metric in series]


def _definitions(metrics: Sequence[MetricDefinition]) -> list[MetricDefinition]:
    defs: list[MetricDefinition] = []
    for kind, numerator, denominator in metrics:
        if kind not in ("proportion", "mean", "ratio"):
            raise ValueError(f"kind must be proportion, mean or ratio, got {kind!r}")
        if kind == "ratio" and not denominator:
            raise ValueError(f"a ratio metric needs a denominator event type, got {denominator!r}")
        defs.append((kind, numerator, denominator if kind == "ratio" else None))
    if not defs:
        raise ValueError("give at least one metric definition (kind, numerator, denominator)")
    return defs


def _params(experiment_id: int, defs: Sequence[MetricDefinition], start: dt.datetime | None,
            end: dt.datetime | None) -> dict[str, Any]:
    from battleground.storage._sums_sql import sums_many_params

    return {"experiment": int(experiment_id), "start": start or _MIN_TS, "end": end or _MAX_TS,
            "exposure": EXPOSURE, **sums_many_params(defs)}


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _sums_from_row(variant: str, r: Sequence[Any]) -> MetricSums:
    f = [float(x or 0.0) for x in r]
    return MetricSums(
        variant=variant, users=round(f[0]), events=round(f[1]), sum_x=f[2], sum_x2=f[3],
        sum_y=f[4], sum_y2=f[5], sum_xy=f[6], sum_c=f[7], sum_c2=f[8], sum_xc=f[9],
    )


def _ordered(found: dict[str, MetricSums], variants: Sequence[str]) -> list[MetricSums]:
    out = [found.get(v) or MetricSums(v, 0, 0, 0.0, 0.0) for v in variants]
    out.extend(found[v] for v in sorted(found) if v not in set(variants))
    return out


def open_event_store(url: Any = None, registry_url: str | None = None) -> EventStore:
    """The event store at ``url``: ``duckdb:///path/events.duckdb`` or ``postgresql://…``.

    ``url`` may also be a :class:`~battleground.settings.Settings` (its ``events_url`` and
    ``registry_url``) or anything :func:`~battleground.experiment.register.resolve_client` accepts.
    ``registry_url`` defaults to the convention of :func:`registry_url_for`.
    """
    from battleground.settings import Settings

    if not (isinstance(url, str) and url.startswith(("duckdb:", "postgresql", "postgres://"))):
        if not isinstance(url, Settings):
            from battleground.experiment.register import resolve_client

            url = resolve_client(url)
        registry_url = registry_url or url.registry_url
        url = url.events_url
    if url.startswith("duckdb:"):
        from battleground.storage._duckdb import DuckDBEventStore

        return DuckDBEventStore(url, registry_url)
    from battleground.storage._postgres import PostgresEventStore

    return PostgresEventStore(url, registry_url)
