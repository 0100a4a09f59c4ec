"""Event ingestion, validated against the registry, and metric sums by metric name.

An event is one row::

    event_id    str       unique; re-sending an event_id adds nothing (ingest is idempotent)
    experiment  str|int   the experiment's name or id (or ``experiment_id``; or pass ``experiment=``)
    variant     str       one of the experiment's variants
    user_id     str|int   the unit of analysis (integers are stored as their decimal text)
    event_type  str       ``exposure`` (written by :meth:`Assigner.expose`), ``click``, ``purchase``, …
    timestamp   datetime  or an ISO string; aware values are converted to UTC (``ts`` also accepted)
    value       float     optional (revenue, …); empty means 1 (a count)
    covariate   float     optional pre-period value of the user, for CUPED

:func:`ingest` validates a whole batch before anything is written: required columns, types, NaN and
infinities, unknown experiments or variants, archived experiments, and timestamps outside the
experiment's window. The first bad row raises :class:`EventValidationError` naming the row, the field
and the fix, and the store is unchanged. A valid batch is stored in one transaction.

Example:
    >>> import tempfile, pandas as pd
    >>> from battleground.experiment.register import Registry
    >>> home = tempfile.mkdtemp()
    >>> store = open_event_store(home)
    >>> _ = Registry(store.registry_url).create_experiment(
    ...     "demo", variants={"control": 0.5, "treatment": 0.5},
    ...     metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase"}])
    >>> batch = pd.DataFrame({"event_id": ["e1", "e2"], "experiment": "demo",
    ...     "variant": ["control", "treatment"], "user_id": [1, 2], "event_type": "exposure",
    ...     "timestamp": "2022-03-05T10:00:00"})
    >>> ingest(store, batch)
    IngestResult(received=2, inserted=2, experiments=(1,))
    >>> ingest(store, batch).duplicates
    2
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground.storage.events import EventStore, open_event_store
from battleground.storage.sums import MetricSums

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from battleground.experiment._records import ExperimentRecord

__all__ = [
    "EventStore",
    "EventValidationError",
    "IngestResult",
    "daily_metric_sums",
    "ingest",
    "metric_sums",
    "open_event_store",
    "read_events",
]

REQUIRED = ("event_id", "experiment", "variant", "user_id", "event_type", "timestamp")
OPTIONAL = ("value", "covariate")
_ALIASES = {"experiment_id": "experiment", "ts": "timestamp"}


class EventValidationError(ValueError):
    """A batch of events was rejected; nothing of it was written.

    Attributes:
        row: 0-based position of the first offending row in the batch (``None`` for batch-level
            problems such as a missing column).
        field: the offending column.
    """

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None) -> None:
        where = f"row {row}, " if row is not None else ""
        super().__init__(f"{where}field '{field}': {message}" if field else message)
        self.row = row
        self.field = field


@dataclass(frozen=True)
class IngestResult:
    """What one call to :func:`ingest` did."""

    received: int
    inserted: int
    experiments: tuple[int, ...] = ()

    @property
    def duplicates(self) -> int:
        """Rows skipped because their event_id was already stored (or repeated in the batch)."""
        return self.received - self.inserted

    def to_dict(self) -> dict[str, Any]:
        return {"received": self.received, "inserted": self.inserted, "duplicates": self.duplicates,
                "experiments": list(self.experiments)}


# ---------------------------------------------------------------------------------------------------
# Reading input
# ---------------------------------------------------------------------------------------------------


def read_events(source: Any) -> pa.Table:
    """An Arrow table from a DataFrame, an Arrow table, a Parquet/CSV/JSON-lines file, a list of dicts
    or a dict of columns."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    if isinstance(source, pd.DataFrame):
        return pa.Table.from_pandas(source, preserve_index=False)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise EventValidationError(f"no such file {str(path)!r}")
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            # Strings stay strings: ids like "007" must not become 7.
            opts = pacsv.ConvertOptions(column_types={c: pa.string() for c in
                                                      ("event_id", "experiment", "variant", "user_id",
                                                       "event_type", "timestamp", "ts")})
            return pacsv.read_csv(path, convert_options=opts)
        if suffix in (".json", ".jsonl", ".ndjson"):
            return pa.Table.from_pandas(pd.read_json(path, lines=suffix != ".json", dtype=False),
                                        preserve_index=False)
        raise EventValidationError(f"unknown file type {suffix!r} of {str(path)!r}; use .parquet, .csv, "
                                   ".json or .jsonl")
    if isinstance(source, Mapping):
        return pa.Table.from_pandas(pd.DataFrame(dict(source)), preserve_index=False)
    if isinstance(source, Sequence):
        if not all(isinstance(r, Mapping) for r in source):
            raise EventValidationError("a list of events must hold one dict per event")
        return pa.Table.from_pandas(pd.DataFrame.from_records(list(source)), preserve_index=False)
    raise EventValidationError(
        f"cannot read events from {type(source).__name__}; pass a DataFrame, an Arrow table, a file "
        "path, a list of dicts or a dict of columns"
    )


# ---------------------------------------------------------------------------------------------------
# Validation: every check is vectorised and names the first offending row
# ---------------------------------------------------------------------------------------------------


def _first(mask: Any) -> int | None:
    """Position of the first true value of a boolean Arrow array (nulls count as false)."""
    import numpy as np

    values = mask.fill_null(False).to_numpy(zero_copy_only=False)
    hits = np.flatnonzero(values)
    return int(hits[0]) if hits.size else None


def _columns(table: pa.Table, experiment: Any) -> dict[str, Any]:
    cols: dict[str, Any] = {}
    for name in table.column_names:
        key = _ALIASES.get(name, name)
        if key in cols:
            raise EventValidationError(f"given twice (as {name!r} and an alias); keep one", field=key)
        if key not in REQUIRED + OPTIONAL:
            raise EventValidationError(
                f"unknown column; expected {list(REQUIRED)} and optionally {list(OPTIONAL)}", field=name
            )
        cols[key] = table.column(name).combine_chunks()
    if experiment is not None:
        import pyarrow as pa

        if "experiment" in cols:
            raise EventValidationError("given both as a column and as experiment=; keep one",
                                       field="experiment")
        cols["experiment"] = pa.array([str(experiment)] * table.num_rows, type=pa.string())
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise EventValidationError(
            f"missing column(s) {missing}; every event needs {list(REQUIRED)}", field=missing[0]
        )
    return cols


def _text(col: Any, field: str) -> Any:
    """A column as non-empty strings (integers become their decimal text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_integer(col.type) or pa.types.is_large_string(col.type):
        col = pc.cast(col, pa.string())
    elif not pa.types.is_string(col.type):
        bad = _first(pc.invert(pc.is_null(col)))
        raise EventValidationError(f"must be text or an integer, got type {col.type}", row=bad, field=field)
    row = _first(pc.is_null(col))
    if row is not None:
        raise EventValidationError("is empty; every event needs one", row=row, field=field)
    row = _first(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0))
    if row is not None:
        raise EventValidationError("is blank; every event needs one", row=row, field=field)
    return col


def _timestamps(col: Any) -> Any:
    """Naive UTC microsecond timestamps."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(col.type):
        if col.type.tz is not None:
            col = pc.cast(col, pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
        else:
            col = pc.cast(col, pa.timestamp("us"))
    elif pa.types.is_date(col.type):
        col = pc.cast(pc.cast(col, pa.date32()), pa.timestamp("us"))
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        raw = col.to_pandas()
        parsed = pd.to_datetime(raw, format="ISO8601", utc=True, errors="coerce")
        row = _first(pa.array(parsed.isna() & raw.notna()))
        if row is not None:
            raise EventValidationError(
                f"{raw.iloc[row]!r} is not an ISO date or datetime (like '2022-03-05T10:00:00')",
                row=row, field="timestamp",
            )
        col = pa.array(parsed.dt.tz_localize(None), type=pa.timestamp("us"))
    else:
        raise EventValidationError(f"must be a datetime or an ISO string, got type {col.type}",
                                   row=0, field="timestamp")
    row = _first(pc.is_null(col))
    if row is not None:
        raise EventValidationError("is empty; every event needs a time", row=row, field="timestamp")
    return col


def _floats(col: Any, field: str, *, nullable: bool = True) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(col.type):
        return pa.nulls(len(col), type=pa.float64())
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)):
        bad = _first(pc.invert(pc.is_null(col)))
        raise EventValidationError(f"must be a number, got type {col.type}", row=bad, field=field)
    col = pc.cast(col, pa.float64())
    row = _first(pc.invert(pc.is_finite(col)))
    if row is not None:
        raise EventValidationError(
            f"is {col[row].as_py()}; numbers must be finite (leave it empty instead of NaN)",
            row=row, field=field,
        )
    return col


def _experiments(col: Any, registry: Any) -> tuple[Any, dict[int, ExperimentRecord]]:
    """Experiment ids per row, and the records of the experiments named in the batch."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from battleground.experiment._records import ExperimentNotFoundError

    if pa.types.is_integer(col.type):
        col = pc.cast(col, pa.string())
    text = _text(col, "experiment")
    keys = pc.unique(text).to_pylist()
    records: dict[str, ExperimentRecord] = {}
    for key in keys:
        try:
            records[key] = registry.get(int(key) if key.strip().isdigit() else key)
        except ExperimentNotFoundError:
            known = [e.name for e in registry.list()]
            row = _first(pc.equal(text, key))
            raise EventValidationError(
                f"no experiment {key!r}; register it first (known: {known[:20]})", row=row, field="experiment"
            ) from None
    for key, rec in records.items():
        if rec.status == "archived":
            raise EventValidationError(f"experiment {rec.name!r} is archived and takes no more events",
                                       row=_first(pc.equal(text, key)), field="experiment")
    index = pc.index_in(text, value_set=pa.array(keys, type=pa.string())).to_numpy(zero_copy_only=False)
    ids = np.array([records[k].id for k in keys], dtype=np.int32)[index]
    return pa.array(ids, type=pa.int32()), {r.id: r for r in records.values()}


def _check_rows(ids: Any, variant: Any, ts: Any, records: dict[int, ExperimentRecord]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    for exp_id, rec in records.items():
        mine = pc.equal(ids, pa.scalar(exp_id, pa.int32()))
        stranger = pc.and_(mine, pc.invert(pc.is_in(variant, value_set=pa.array(rec.variant_names))))
        row = _first(stranger)
        if row is not None:
            raise EventValidationError(
                f"{variant[row].as_py()!r} is not a variant of experiment {rec.name!r}; "
                f"its variants are {list(rec.variant_names)}", row=row, field="variant",
            )
        start, end = rec.window()
        for bound, outside, words in ((start, pc.less, "before its start"), (end, pc.greater_equal, "at or after its end")):
            if bound is None:
                continue
            row = _first(pc.and_(mine, outside(ts, pa.scalar(bound, pa.timestamp("us")))))
            if row is not None:
                raise EventValidationError(
                    f"{ts[row].as_py().isoformat()} is {words} ({bound.isoformat()}) of experiment "
                    f"{rec.name!r}; events must fall in its window", row=row, field="timestamp",
                )


def validate_events(table: pa.Table, registry: Any, *, experiment: Any = None) -> pa.Table:
    """The batch normalised to the store's schema, or :class:`EventValidationError` on the first bad row."""
    import pyarrow as pa

    from battleground.storage._arrow import EVENT_SCHEMA

    n = table.num_rows
    cols = _columns(table, experiment)
    if n == 0:
        return EVENT_SCHEMA.empty_table()
    event_id = _text(cols["event_id"], "event_id")
    user_id = _text(cols["user_id"], "user_id")
    event_type = _text(cols["event_type"], "event_type")
    variant = _text(cols["variant"], "variant")
    ts = _timestamps(cols["timestamp"])
    value = _floats(cols["value"], "value") if "value" in cols else pa.nulls(n, type=pa.float64())
    covariate = _floats(cols["covariate"], "covariate") if "covariate" in cols else pa.nulls(n, type=pa.float64())
    ids, records = _experiments(cols["experiment"], registry)
    _check_rows(ids, variant, ts, records)
    return pa.Table.from_arrays(
        [event_id, ids, variant, user_id, event_type, ts, value, covariate], schema=EVENT_SCHEMA
    )


# ---------------------------------------------------------------------------------------------------
# The public entry points
# ---------------------------------------------------------------------------------------------------


def _registry(store: EventStore) -> Any:
    from battleground.experiment.register import Registry

    return Registry(store.registry_url)


def ingest(store: EventStore | Any, data: Any, *, experiment: Any = None) -> IngestResult:
    """Validate a batch of events and store it in one transaction, skipping known event_ids.

    Args:
        store: an :class:`EventStore`, or anything :func:`open_event_store` accepts (a Settings, a
            folder, a database URL).
        data: a pandas DataFrame, an Arrow table, a Parquet/CSV/JSON-lines file path, a list of dicts
            or a dict of columns (columns as in this module's docstring).
        experiment: the experiment (name or id) of every row, instead of an ``experiment`` column.

    Raises:
        EventValidationError: on the first bad row; nothing is written.
    """
    if not isinstance(store, EventStore):
        store = open_event_store(store)
    table = validate_events(read_events(data), _registry(store), experiment=experiment)
    inserted = store.write_batch(table)
    import pyarrow.compute as pc

    exps = tuple(sorted(int(x) for x in pc.unique(table.column("experiment_id")).to_pylist()))
    return IngestResult(received=table.num_rows, inserted=inserted, experiments=exps)


def _metric_args(store: EventStore, experiment: Any, metric: str) -> tuple[ExperimentRecord, dict[str, Any]]:
    rec = _registry(store).get(experiment)
    m = rec.metric(metric)
    return rec, {"kind": m.kind, "numerator": m.numerator, "denominator": m.denominator,
                 "variants": rec.variant_names}


def metric_sums(
    store: EventStore, experiment: Any, metric: str, *, start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> list[MetricSums]:
    """Per-variant sums of a registered metric over ``[start, end)``, variants in registry order."""
    rec, args = _metric_args(store, experiment, metric)
    return store.sums(rec.id, start=start, end=end, **args)


def daily_metric_sums(
    store: EventStore, experiment: Any, metric: str, *, start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> list[tuple[dt.date, list[MetricSums]]]:
    """Cumulative per-variant sums of a registered metric at the end of each day."""
    rec, args = _metric_args(store, experiment, metric)
    return store.daily_sums(rec.id, start=start, end=end, **args)


def events_frame(store: EventStore, experiment: Any = None) -> pd.DataFrame:
    """The stored events (of one experiment, or all) as a DataFrame, in time order."""
    exp_id = None if experiment is None else _registry(store).get(experiment).id
    return store.to_arrow(exp_id).to_pandas()
