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
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from battleground._redact import redact_url
from battleground.errors import StorageError
from battleground.storage._events_sql import EXPOSURE
from battleground.storage._producers import ProducerBatch, SequenceCheck
from battleground.storage._snapshot import read_snapshot
from battleground.storage._sums_sql import HEAD_COLUMNS, MetricDefinition, MetricQuery
from battleground.storage.sums import (
    CovariateSums,
    ExperimentSums,
    MetricSums,
    PerUserValues,
    covariate_names,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "EventStore",
    "StoreRefusedError",
    "StoreUnavailableError",
    "WriteResult",
    "has_duplicate_ids",
    "open_event_store",
    "read_snapshot",
    "registry_url_for",
]

# Open bounds for the time window (both engines compare TIMESTAMP against these exactly).
_MIN_TS = dt.datetime(1900, 1, 1)
_BATCH_SIZES = (8, 32, 128, 512)  # the id lists of a batched sums query (experiment_sums_batch)
_MAX_TS = dt.datetime(9999, 12, 31)


class StoreUnavailableError(StorageError, RuntimeError):
    """The store's database server cannot be reached, or the connection broke during an operation.

    A batch being written may or may not have been stored; re-sending it is always safe, because ingest
    is idempotent on ``(experiment_id, event_id)``.
    """


class StoreRefusedError(StorageError, RuntimeError):
    """The store's database refused an operation for a reason that re-sending will not cure: a
    constraint violation, bad data, a permission denied, a missing table, a failed login.

    Unlike :class:`StoreUnavailableError` this is **not retryable**: nothing of the batch was stored,
    and the same batch will be refused again until the data or the database's set-up is fixed.

    Attributes:
        sqlstate: the server's SQLSTATE code (``"42501"``: insufficient privilege, …), when it gave one.
        status: the HTTP status the API answers with: 422 when the data caused it (SQLSTATE classes 22
            data exception, 23 integrity violation, 54 program limit), 500 when the set-up did.
        retryable: always ``False``.
    """

    retryable = False

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.status = 422 if (sqlstate or "")[:2] in ("22", "23", "54") else 500


@dataclass(frozen=True)
class WriteResult:
    """What writing one batch did: every row is inserted, a duplicate or a conflict.

    Attributes:
        inserted: rows stored.
        duplicates: rows whose (experiment_id, event_id) was stored (or came earlier in the batch) with
            the same content: a harmless re-send.
        conflicts: rows whose key was stored with *other* content; the stored row is kept (first write
            wins), so a sender that reuses ids learns about it here instead of losing events silently.
        replays: rows of a replayed batch (its producer tag was stored before) found stored with the
            same content; counted here instead of under ``duplicates``.
        sequence: for a batch tagged with a producer and sequence, how it relates to the producer's
            earlier batches (see ``storage/_producers.py``).
    """

    inserted: int
    duplicates: int = 0
    conflicts: int = 0
    replays: int = 0
    sequence: SequenceCheck | None = None


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
    from battleground._xxh64 import xxh64_strings

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
    raise ValueError(f"event store URL must start with 'duckdb:///' or 'postgresql://', got {redact_url(events_url)!r}")


# per store URL: (the state it was read at, events per experiment), see EventStore.experiment_counts
_COUNTS: dict[str, tuple[Hashable, dict[int, int]]] = {}
_COUNTS_LOCK = threading.Lock()


class EventStore(abc.ABC):
    """Append-only storage of experiment events with per-variant sums computed in SQL.

    Subclasses implement the primitives :meth:`_write`, :meth:`_fetch` and :meth:`to_arrow`; the queries are shared (``storage/_events_sql.py``). Connections are opened per
    operation, so a store holds no resources between calls and needs no closing.

    Attributes:
        url: the store's URL.
        registry_url: the registry used to validate batches and to look metrics up.
    """

    backend: str = ""
    # The sqlglot dialect the shared queries are compiled to (``storage/_compile.py``).
    dialect: str = "duckdb"

    def __init__(self, url: str, registry_url: str | None = None) -> None:
        self.url = url
        self.registry_url = registry_url or registry_url_for(url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.url)!r})"

    # ------------------------------------------------------------------ primitives
    @abc.abstractmethod
    def _write(self, table: pa.Table, producer: ProducerBatch | None = None) -> WriteResult:
        """Insert a validated batch in one transaction, skipping keys ``(experiment_id, event_id)`` already
        stored (or repeated within the batch: the first occurrence wins); say what became of each row.
        ``producer``: the batch's producer tag, checked and recorded in the same transaction."""

    @abc.abstractmethod
    def _fetch(self, sql: str, params: dict[str, Any], *, scan: bool = False) -> list[tuple[Any, ...]]:
        """Run a shared query (``:name`` placeholders) and return all rows; ``scan``: the query aggregates
        a whole experiment (joins of all its events with its users), so hash joins are the right plan."""

    def _query(self, sql: str, params: dict[str, Any], *, scan: bool = False) -> list[tuple[Any, ...]]:
        """Run a shared query compiled for this store's :attr:`dialect` (placeholders bound by the driver)."""
        from battleground.storage._compile import compile_sql

        return self._fetch(compile_sql(sql, self.dialect), params, scan=scan)

    def count(self, experiment_id: int | None = None) -> int:
        """Number of stored events (of one experiment, or all)."""
        return sum(n for _, n in self.count_by_type(experiment_id))

    def state(self) -> Hashable:
        """A token that changes whenever the stored events do (readers key caches on it). The store is
        append-only with de-duplication, so the event count changes exactly when its data does."""
        return self.count()

    def experiment_counts(self) -> dict[int, int]:
        """Events stored per experiment id, from one query; kept per :meth:`state` of the store (in this
        process), so asking again while nothing was ingested costs no query. An experiment's sums read
        only its own events, so its count is a version of its sums: an ingest into one experiment leaves
        the others' counts, and what readers cached on them, as they were."""
        state = self.state()
        with _COUNTS_LOCK:
            known = _COUNTS.get(self.url)
        if known is not None and known[0] == state:
            return known[1]
        rows = self._query("SELECT experiment_id, COUNT(*) FROM events GROUP BY experiment_id", {})
        counts = {int(e): int(n) for e, n in rows}
        with _COUNTS_LOCK:
            _COUNTS[self.url] = (state, counts)
        return counts

    def count_by_type(self, experiment_id: int | None = None) -> list[tuple[str, int]]:
        """``(event_type, number of events)`` of one experiment (or all), by event type."""
        sql = "SELECT event_type, COUNT(*) FROM events"
        params: dict[str, Any] = {}
        if experiment_id is not None:
            sql += " WHERE experiment_id = :experiment"
            params["experiment"] = int(experiment_id)
        rows = self._query(sql + " GROUP BY event_type ORDER BY event_type", params)
        return [(str(t), int(n)) for t, n in rows]

    @abc.abstractmethod
    def to_arrow(self, experiment_id: int | None = None) -> pa.Table:
        """The stored events as an Arrow table (columns as in ``COLUMNS``), ordered by ts and event_id."""

    def write_batch(self, table: pa.Table, producer: ProducerBatch | None = None) -> WriteResult:
        """Store an already validated, normalised batch (see :func:`battleground.experiment.events.ingest`
        for the public, validating entry point); a tagged batch is checked and recorded even when empty."""
        if table.num_rows == 0 and producer is None:
            return WriteResult(0)
        return self._write(table, producer)

    # ------------------------------------------------------------------ sums of metric definitions
    def experiment_sums(
        self,
        experiment_id: int,
        metrics: Sequence[MetricQuery | MetricDefinition],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Sequence[str] = (),
        *,
        multiple_exposures: str = "exclude",
        attributes: Sequence[str] | None = None,
    ) -> ExperimentSums:
        """Per-variant sums over ``[start, end)`` of metric definitions (:class:`MetricQuery` or
        ``(kind, numerator, denominator)``) from one scan of the events, with the exposure check.

        ``variants`` lists variants to report even when they have no users yet (with zero sums), in that
        order; ``multiple_exposures`` says what to do with users exposed to several variants
        (``"exclude"``, ``"first"`` or ``"keep"``, see :class:`ExperimentSums`). ``attributes``: also the
        CUPED++ sums (:class:`~battleground.storage.sums.CovariateSums`, in ``covariates``) with every
        metric's pre-period value and these numeric user attributes (event types, up to 8) as
        covariates, from the same scan; ``None``: not asked.
        """
        defs = _definitions(metrics)
        attrs = _attributes(attributes)
        records = self.sums_records(experiment_id, defs, start, end, multiple_exposures, attributes=attrs)
        return decode_sums(records, len(defs), variants, multiple_exposures, attributes=attrs)

    def experiment_sums_batch(
        self,
        experiment_ids: Sequence[int],
        metrics: Sequence[MetricQuery | MetricDefinition],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Mapping[int, Sequence[str]] | None = None,
        *,
        multiple_exposures: str = "exclude",
    ) -> dict[int, ExperimentSums]:
        """:meth:`experiment_sums` of several experiments that share the metric definitions, from one
        scan grouped by experiment (``_sums_sql.metric_sums_many_sql(batch=…)``): each experiment's sums
        equal its own query's. ``variants`` per experiment id, as :meth:`experiment_sums` takes them. An
        experiment without events gets empty sums. Capped metrics are not batched (``ValueError``)."""
        from battleground.storage._sums_sql import metric_sums_many_sql

        defs = _definitions(metrics)
        ids = list(dict.fromkeys(int(i) for i in experiment_ids))
        variants = variants or {}
        names = ["experiment_id", *HEAD_COLUMNS, *_metric_names(len(defs))]
        out: dict[int, ExperimentSums] = {}
        for lo in range(0, len(ids), _BATCH_SIZES[-1]):
            chunk = ids[lo:lo + _BATCH_SIZES[-1]]
            # a few sizes of id list, padded with a repeat: few query texts to compile and plan
            size = next(n for n in _BATCH_SIZES if n >= len(chunk))
            params = _params(chunk[0], defs, start, end)
            del params["experiment"]
            params.update({f"x{i}": chunk[min(i, len(chunk) - 1)] for i in range(size)})
            rows = self._query(metric_sums_many_sql(defs, multiple_exposures, batch=size), params, scan=True)
            by_id: dict[int, list[dict[str, Any]]] = {i: [] for i in chunk}
            for r in rows:
                rec = dict(zip(names, r, strict=True))
                by_id[int(rec["experiment_id"])].append(rec)
            for i in chunk:
                out[i] = decode_sums(by_id[i], len(defs), variants.get(i, ()), multiple_exposures)
        return out

    def sums_records(
        self,
        experiment_id: int,
        defs: Sequence[MetricQuery],
        start: dt.datetime | None,
        end: dt.datetime | None,
        multiple_exposures: str = "exclude",
        *,
        shifts: dict[str, float] | None = None,
        active: tuple[dt.datetime, dt.datetime] | None = None,
        attributes: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The raw result rows of the metric-sums query (one per arm, keyed by column name); ``shifts``
        fixes the shifts (``kx<j>``, ``ky<j>``, ``kc<j>``), ``active`` keeps only users with an event in
        that range (see ``_incremental.py``); ``attributes`` adds the CUPED++ columns
        (:func:`~battleground.storage._sums_sql.covariate_columns`) with these attributes."""
        from battleground.storage._sums_sql import covariate_columns, metric_sums_many_sql

        params = _params(experiment_id, defs, start, end)
        if shifts is not None:
            params.update(shifts)
        if active is not None:
            params.update(active_from=active[0], active_to=active[1])
        covariates = None if attributes is None else len(attributes)
        params.update({f"at{i}": a for i, a in enumerate(attributes or ())})
        rows = self._query(metric_sums_many_sql(defs, multiple_exposures, fixed_shifts=shifts is not None,
                                                active=active is not None, covariates=covariates), params, scan=True)
        names = [*HEAD_COLUMNS, *_metric_names(len(defs)),
                 *(covariate_columns(len(defs), covariates) if covariates is not None else ())]
        return [dict(zip(names, r, strict=True)) for r in rows]

    def strata_sums(
        self,
        experiment_id: int,
        metrics: Sequence[MetricQuery | MetricDefinition],
        attributes: Sequence[str],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Sequence[str] = (),
        *,
        multiple_exposures: str = "exclude",
    ) -> tuple[tuple[tuple[float | None, ...], ExperimentSums], ...]:
        """:meth:`experiment_sums` per stratum of declared user attributes, from one scan (for
        post-stratification): ``((stratum values, sums), ...)`` ordered by stratum, a ``None`` value for
        users without the attribute. Attribute ``a`` is carried by events of type ``a`` whose ``value``
        codes the stratum, logged at or before the user's first exposure (the smallest value counts;
        see :func:`battleground.storage._sums_sql.metric_sums_many_sql`). The strata's sums add up to
        :meth:`experiment_sums`'s (the same shifts)."""
        from battleground.storage._sums_sql import metric_sums_many_sql

        defs = _definitions(metrics)
        attrs = [str(a) for a in attributes]
        if not attrs or len(set(attrs)) != len(attrs):
            raise ValueError(f"attributes must name one or more distinct event types, got {list(attributes)!r}")
        params = _params(experiment_id, defs, start, end)
        params.update({f"st{i}": a for i, a in enumerate(attrs)})
        rows = self._query(metric_sums_many_sql(defs, multiple_exposures, strata=len(attrs)), params, scan=True)
        names = [*HEAD_COLUMNS, *_metric_names(len(defs)), *(f"stratum{i}" for i in range(len(attrs)))]
        groups: dict[tuple[float | None, ...], list[dict[str, Any]]] = {}
        for r in rows:
            rec = dict(zip(names, r, strict=True))
            key = tuple(None if rec[f"stratum{i}"] is None else float(rec[f"stratum{i}"]) for i in range(len(attrs)))
            groups.setdefault(key, []).append(rec)
        order = sorted(groups, key=lambda k: tuple((v is None, v or 0.0) for v in k))
        return tuple((k, decode_sums(groups[k], len(defs), variants, multiple_exposures)) for k in order)

    def covariate_sums(self, experiment_id: int, metrics: Sequence[MetricQuery | MetricDefinition],
                       attributes: Sequence[str] = (), start: dt.datetime | None = None,
                       end: dt.datetime | None = None, variants: Sequence[str] = (), *,
                       multiple_exposures: str = "exclude") -> tuple[CovariateSums, ...]:
        """The CUPED++ sums of :meth:`experiment_sums` (``attributes`` given; the same one scan): one
        :class:`~battleground.storage.sums.CovariateSums` per arm, ``variants`` first."""
        found = self.experiment_sums(experiment_id, metrics, start, end, variants,
                                     multiple_exposures=multiple_exposures, attributes=tuple(attributes))
        return found.covariates or ()

    def quantile_sums(self, experiment_id: int, metrics: Sequence[MetricQuery | MetricDefinition],
                      quantiles: Mapping[int, float], start: dt.datetime | None = None,
                      end: dt.datetime | None = None, variants: Sequence[str] = (), *,
                      multiple_exposures: str = "exclude",
                      users: Sequence[int] | None = None) -> dict[int, tuple[Any, ...]]:
        """Per quantile metric (``{index into metrics: level ν}``) and arm: the sample ν-quantile of the
        per-user value and the order statistics of its 95 % interval (``storage/_quantile_sql.py``;
        ``users``: the arms' numbers of units when known, for exact bound levels)."""
        from battleground.storage._quantile_sql import quantile_sums

        return quantile_sums(self, experiment_id, _definitions(metrics), quantiles, start, end, variants,
                             multiple_exposures=multiple_exposures, users=users)

    def per_user_values(
        self,
        experiment_id: int,
        metrics: Sequence[MetricQuery | MetricDefinition],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        *,
        multiple_exposures: str = "exclude",
    ) -> PerUserValues:
        """Each analysed user's arm and metric values over ``[start, end)`` from one scan, by the rules of
        :meth:`experiment_sums` (summing them per arm gives its sums); for offline A/A re-splits."""
        import numpy as np

        from battleground.storage._sums_sql import per_user_values_sql

        defs = _definitions(metrics)
        rows = self._query(per_user_values_sql(defs, multiple_exposures), _params(experiment_id, defs, start, end),
                           scan=True)
        m = len(defs)
        if not rows:
            return PerUserValues(np.empty(0, dtype=object), np.empty((0, m)), np.empty((0, m)))
        variants = np.array([str(r[0]) for r in rows], dtype=object)
        values = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), m, 2)
        return PerUserValues(variants, np.nan_to_num(values[:, :, 0]), np.nan_to_num(values[:, :, 1]))

    def daily_experiment_sums(
        self,
        experiment_id: int,
        metrics: Sequence[MetricQuery | MetricDefinition],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Sequence[str] = (),
        *,
        multiple_exposures: str = "exclude",
        attributes: Sequence[str] | None = None,
    ) -> list[tuple[dt.date, ExperimentSums]]:
        """Cumulative :meth:`experiment_sums` at the end of each day (UTC) from the first day with data
        to the last (days without events repeat the previous day); the last day equals
        :meth:`experiment_sums`. A user enters on the day of their first exposure. ``attributes``: each
        day's CUPED++ sums too (``covariates``, as for :meth:`experiment_sums`), from the same scan."""
        from battleground.storage._sums_sql import (
            DAILY_COLUMNS,
            covariate_columns,
            daily_sums_many_sql,
        )

        defs = _definitions(metrics)
        attrs = _attributes(attributes)
        params = _params(experiment_id, defs, start, end)
        params.update({f"at{i}": a for i, a in enumerate(attrs or ())})
        rows = self._query(daily_sums_many_sql(defs, multiple_exposures,
                                               covariates=None if attrs is None else len(attrs)), params, scan=True)
        if not rows:
            return []
        pp = covariate_columns(len(defs), len(attrs)) if attrs is not None else ()
        pp_shifts = tuple(c for c in pp if c.startswith("pp_kz"))
        names = ["day", *HEAD_COLUMNS, *(f"m{j}_{c}" for j in range(len(defs)) for c in DAILY_COLUMNS),
                 *(c for c in pp if c not in pp_shifts),
                 *(f"m{j}_{c}" for j in range(len(defs)) for c in ("shift", "shift_y", "shift_c")), *pp_shifts]
        records = [dict(zip(names, r, strict=True)) for r in rows]
        shifts = {k: float(v or 0.0) for k, v in records[0].items()
                  if k.endswith(("_shift", "_shift_y", "_shift_c")) or k in pp_shifts}
        by_day: dict[dt.date, list[dict[str, Any]]] = {}
        for r in records:
            by_day.setdefault(_as_date(r["day"]), []).append(r)
        found = sorted({str(r["variant"]) for r in records if r["variant"] is not None} - set(variants))
        arm_names = [*variants, *found]
        totals = {v: dict.fromkeys((n for n in names[2:] if n not in shifts), 0.0) for v in arm_names}
        exposed = multiple = 0.0
        out: list[tuple[dt.date, ExperimentSums]] = []
        day, last = min(by_day), max(by_day)
        while day <= last:
            for r in by_day.get(day, []):
                exposed += float(r["exposed_users"] or 0.0)
                multiple += float(r["multiple_users"] or 0.0)
                if r["variant"] is None:
                    continue
                acc = totals[str(r["variant"])]
                for k in acc:
                    acc[k] += float(r[k] or 0.0)
            per_metric = tuple(
                tuple(_ordered({v: _sums_from(v, {**totals[v], **shifts}, j) for v in arm_names}, variants))
                for j in range(len(defs))
            )
            covariates = None
            if attrs is not None:
                names_z = covariate_names(len(defs), attrs)
                covariates = tuple(_covariates_from(v, {**totals[v], **shifts}, len(defs), names_z) for v in arm_names)
            out.append((day, ExperimentSums(per_metric, round(exposed), round(multiple), multiple_exposures,
                                            covariates)))
            day += dt.timedelta(days=1)
        return out

    def sums_many(
        self,
        experiment_id: int,
        metrics: Sequence[MetricQuery | MetricDefinition],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Sequence[str] = (),
        *,
        multiple_exposures: str = "exclude",
    ) -> list[list[MetricSums]]:
        """The per-metric lists of :meth:`experiment_sums`."""
        found = self.experiment_sums(experiment_id, metrics, start, end, variants,
                                     multiple_exposures=multiple_exposures)
        return [list(arms) for arms in found.metrics]

    def daily_sums_many(
        self,
        experiment_id: int,
        metrics: Sequence[MetricQuery | MetricDefinition],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Sequence[str] = (),
        *,
        multiple_exposures: str = "exclude",
    ) -> list[tuple[dt.date, list[list[MetricSums]]]]:
        """The per-metric lists of :meth:`daily_experiment_sums`."""
        series = self.daily_experiment_sums(experiment_id, metrics, start, end, variants,
                                            multiple_exposures=multiple_exposures)
        return [(day, [list(arms) for arms in found.metrics]) for day, found in series]

    def sums(
        self,
        experiment_id: int,
        kind: str,
        numerator: str,
        denominator: str | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Sequence[str] = (),
        **options: Any,
    ) -> list[MetricSums]:
        """:meth:`sums_many` of one metric definition (``options``: ``window_days``, ``lookback_days``,
        ``multiple_exposures``)."""
        query, multiple = _one(kind, numerator, denominator, options)
        return self.sums_many(experiment_id, [query], start, end, variants, multiple_exposures=multiple)[0]

    def daily_sums(
        self,
        experiment_id: int,
        kind: str,
        numerator: str,
        denominator: str | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        variants: Sequence[str] = (),
        **options: Any,
    ) -> list[tuple[dt.date, list[MetricSums]]]:
        """:meth:`daily_sums_many` of one metric definition (options as for :meth:`sums`)."""
        query, multiple = _one(kind, numerator, denominator, options)
        series = self.daily_sums_many(experiment_id, [query], start, end, variants, multiple_exposures=multiple)
        return [(day, per_metric[0]) for day, per_metric in series]


def decode_sums(records: list[dict[str, Any]], n_metrics: int, variants: Sequence[str],
                multiple_exposures: str, *, attributes: Sequence[str] | None = None) -> ExperimentSums:
    """:class:`ExperimentSums` from the rows of the metric-sums query (keyed by column name); with
    ``attributes``, the rows carry the CUPED++ columns of those attributes too."""
    exposed = round(sum(float(r["exposed_users"] or 0.0) for r in records))
    multiple = round(sum(float(r["multiple_users"] or 0.0) for r in records))
    arms = [r for r in records if r["variant"] is not None]
    per_metric = tuple(
        tuple(_ordered({str(r["variant"]): _sums_from(str(r["variant"]), r, j) for r in arms}, variants))
        for j in range(n_metrics)
    )
    covariates = None
    if attributes is not None:
        names = covariate_names(n_metrics, attributes)
        found = {str(r["variant"]): _covariates_from(str(r["variant"]), r, n_metrics, names) for r in arms}
        covariates = (*(found.get(v) or CovariateSums.empty(v, names, n_metrics) for v in variants),
                      *(found[v] for v in sorted(found) if v not in set(variants)))
    return ExperimentSums(per_metric, exposed, multiple, multiple_exposures, covariates)


def _covariates_from(variant: str, r: dict[str, Any], m: int, names: tuple[str, ...]) -> CovariateSums:
    """One arm's :class:`CovariateSums` from a result row (columns of ``covariate_columns``)."""
    p = len(names)

    def f(key: str) -> float:
        return float(r[key] or 0.0)

    return CovariateSums(
        variant=variant, users=round(f("users")), covariates=names,
        sum_y=tuple(f(f"m{j}_sum_x") for j in range(m)), sum_y2=tuple(f(f"m{j}_sum_x2") for j in range(m)),
        sum_z=tuple(f(f"pp_z{a}") for a in range(p)),
        sum_zz=tuple(tuple(f(f"pp_zz{min(a, b)}_{max(a, b)}") for b in range(p)) for a in range(p)),
        sum_yz=tuple(tuple(f(f"pp_yz{j}_{a}") for a in range(p)) for j in range(m)),
        shift_y=tuple(f(f"m{j}_shift") for j in range(m)), shift_z=tuple(f(f"pp_kz{a}") for a in range(p)))


def _attributes(attributes: Sequence[str] | None) -> tuple[str, ...] | None:
    """The CUPED++ attributes checked: up to 8 distinct event types other than the exposure."""
    if attributes is None:
        return None
    attrs = tuple(str(a) for a in ([attributes] if isinstance(attributes, str) else attributes))
    if len(set(attrs)) != len(attrs) or EXPOSURE in attrs or len(attrs) > 8:
        raise ValueError(f"attributes must be up to 8 distinct event types other than 'exposure', got {list(attrs)}; "
                         "name each numeric user attribute once")
    return attrs


def _one(kind: str, numerator: str, denominator: str | None, options: dict[str, Any]) -> tuple[MetricQuery, str]:
    unknown = set(options) - {"window_days", "lookback_days", "multiple_exposures"}
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; use window_days, lookback_days or multiple_exposures")
    multiple = str(options.pop("multiple_exposures", "exclude"))
    return MetricQuery(kind, numerator, denominator, **options), multiple


def _metric_names(n: int) -> list[str]:
    from battleground.storage._sums_sql import METRIC_COLUMNS

    return [f"m{j}_{c}" for j in range(n) for c in METRIC_COLUMNS]


def _definitions(metrics: Sequence[MetricQuery | MetricDefinition]) -> list[MetricQuery]:
    from battleground.storage._sums_sql import as_query

    defs = [as_query(m) for m in metrics]
    if not defs:
        raise ValueError("give at least one metric definition (kind, numerator, denominator)")
    return defs


def _params(experiment_id: int, defs: Sequence[MetricQuery], start: dt.datetime | None,
            end: dt.datetime | None) -> dict[str, Any]:
    from battleground.storage._sums_sql import max_lookback, sums_many_params

    start = start or _MIN_TS
    return {"experiment": int(experiment_id), "start": start, "end": end or _MAX_TS,
            "scan_start": start - max_lookback(defs), "exposure": EXPOSURE, **sums_many_params(defs)}


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _sums_from(variant: str, r: dict[str, Any], j: int) -> MetricSums:
    """The MetricSums of metric ``j`` from a result row keyed by column name."""
    from battleground.storage._sums_sql import METRIC_COLUMNS

    f: dict[str, float | None] = {c: float(r.get(f"m{j}_{c}") or 0.0) for c in METRIC_COLUMNS}
    for c in ("cap_x", "cap_c"):  # NULL: not capped
        f[c] = None if r.get(f"m{j}_{c}") is None else float(r[f"m{j}_{c}"])
    users = round(float(r.get("users") or 0.0))
    return MetricSums(variant=variant, users=users, **{**f, "events": round(f["events"])})  # type: ignore[arg-type]


def _ordered(found: dict[str, MetricSums], variants: Sequence[str]) -> list[MetricSums]:
    out = [found.get(v) or MetricSums(v, 0, 0, 0.0, 0.0) for v in variants]
    out.extend(found[v] for v in sorted(found) if v not in set(variants))
    return out


def open_event_store(url: Any = None, registry_url: str | None = None) -> EventStore:
    """The event store at ``url``: ``duckdb:///path/events.duckdb`` or ``postgresql://…``.

    ``url`` may also be a :class:`~battleground.settings.Settings` (its ``events_url`` and
    ``registry_url``) or anything :func:`~battleground.settings.resolve_client` accepts.
    ``registry_url`` defaults to the convention of :func:`registry_url_for`.
    """
    from battleground.settings import Settings, resolve_client

    timeout: float | None = None
    if not (isinstance(url, str) and url.startswith(("duckdb:", "postgresql", "postgres://"))):
        if not isinstance(url, Settings):
            url = resolve_client(url)
        registry_url = registry_url or url.registry_url
        timeout = url.statement_timeout
        url = url.events_url
    if url.startswith("duckdb:"):
        from battleground.storage._duckdb import DuckDBEventStore

        return DuckDBEventStore(url, registry_url)
    from battleground.storage._postgres import PostgresEventStore

    return PostgresEventStore(url, registry_url, statement_timeout=timeout)
