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

:func:`ingest` validates a whole batch before anything is written: required columns, no unknown
columns, types, NaN and infinities, unknown experiments or variants, archived experiments, and
timestamps outside the experiment's window. The first bad row raises :class:`EventValidationError`
naming the row (0-based), the field and the fix, and the store is unchanged. A NaN is never read as
"no value" (in pandas use ``None`` or the nullable ``Float64`` dtype's ``pd.NA``). A valid batch is
stored in one transaction; event ids already stored, or repeated in the batch, are skipped (the first
occurrence wins). See ``docs/experiments-data.md``.

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
    IngestResult(received=2, inserted=2, experiments=(1,), duplicates=0, conflicts=0)
    >>> ingest(store, batch).duplicates
    2
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground.errors import ExperimentError
from battleground.storage.events import EventStore, StoreUnavailableError, open_event_store
from battleground.storage.sums import MetricSums

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from battleground.experiment._records import ExperimentRecord

__all__ = [
    "EventStore",
    "EventValidationError",
    "IngestResult",
    "StoreUnavailableError",
    "count_events",
    "daily_metric_sums",
    "events_frame",
    "ingest",
    "metric_sums",
    "open_event_store",
    "read_events",
    "validate_events",
]

REQUIRED = ("event_id", "experiment", "variant", "user_id", "event_type", "timestamp")
OPTIONAL = ("value", "covariate")
_ALIASES = {"experiment_id": "experiment", "ts": "timestamp"}


class EventValidationError(ExperimentError, ValueError):
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
    """What one call to :func:`ingest` did: each received row was inserted, a duplicate or a conflict.

    Attributes:
        received, inserted: rows in the batch and rows stored.
        experiments: ids of the experiments the batch named.
        duplicates: rows whose (experiment, event_id) was already stored, or came earlier in the batch,
            with the same content: a harmless re-send.
        conflicts: rows whose (experiment, event_id) was already stored (or came earlier in the batch)
            with *different* content; the first version is kept. A sender that reuses ids sees it here.
    """

    received: int
    inserted: int
    experiments: tuple[int, ...] = ()
    duplicates: int = 0
    conflicts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"received": self.received, "inserted": self.inserted, "duplicates": self.duplicates,
                "conflicts": self.conflicts, "experiments": list(self.experiments)}


# ---------------------------------------------------------------------------------------------------
# Reading input
# ---------------------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    """A coarse type name of one Python value, for messages about mixed columns."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    return type(value).__name__


_TEXT_FIELDS = frozenset({"event_id", "experiment", "experiment_id", "variant", "user_id", "event_type"})


def _array(name: str, values: Sequence[Any]) -> Any:
    """An Arrow array of one column of Python values; a value of the wrong kind names its row.

    Text columns may mix strings and integers (integers are ids written as their decimal text).
    """
    import pyarrow as pa

    if name in _TEXT_FIELDS:
        for i, v in enumerate(values):
            if v is not None and (isinstance(v, bool) or not isinstance(v, str | int)):
                raise EventValidationError(f"{v!r} is a {_kind(v)}; this column holds text or integers",
                                           row=i, field=name)
        if any(isinstance(v, int) for v in values) and any(isinstance(v, str) for v in values):
            values = [str(v) if isinstance(v, int) else v for v in values]
    elif name in OPTIONAL:
        for i, v in enumerate(values):
            if v is not None and not isinstance(v, int | float):
                raise EventValidationError(f"{v!r} is a {_kind(v)}; this column holds numbers", row=i, field=name)
    try:
        return pa.array(values, from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        kinds = [_kind(v) for v in values if v is not None]
        # The most common kind is the column's; a tie goes to the kind seen first.
        expected = max(dict.fromkeys(kinds), key=kinds.count) if kinds else "?"
        for i, v in enumerate(values):
            if v is not None and _kind(v) != expected:
                raise EventValidationError(
                    f"{v!r} is a {_kind(v)} but the column holds {expected} values", row=i, field=name
                ) from None
        raise EventValidationError(f"cannot be read: {exc}", field=name) from None


def _from_pandas(frame: pd.DataFrame) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    names = [str(c) for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise EventValidationError("given twice; keep one", field=repeated[0])
    arrays = []
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, np.dtype) and col.dtype.kind == "f":
            # Keep NaN as NaN (pandas' own conversion would silently turn it into "no value").
            arrays.append(pa.array(col.to_numpy(), from_pandas=False))
            continue
        if col.dtype == object and str(name) in OPTIONAL:
            # In an object column pandas' converter would also read NaN as "no value": only None and
            # pd.NA mean that; a NaN is rejected like everywhere else.
            nan = np.flatnonzero([isinstance(v, float) and v != v for v in col.tolist()])
            if nan.size:
                raise EventValidationError(
                    "is nan; numbers must be finite (leave it empty, None or pd.NA, when there is no value)",
                    row=int(nan[0]), field=str(name),
                )
        try:
            arrays.append(pa.Array.from_pandas(col))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            values = col.tolist()
            arrays.append(_array(str(name), [None if _is_missing(v) else v for v in values]))
    return pa.Table.from_arrays(arrays, names=names)


def _is_missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(value is None or (not isinstance(value, str | bytes) and pd.isna(value)))
    except (TypeError, ValueError):
        return False


def _from_columns(columns: Mapping[str, Sequence[Any]]) -> pa.Table:
    import pyarrow as pa

    arrays, names = [], []
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise EventValidationError(f"the columns have different lengths {sorted(lengths)}")
    for name, values in columns.items():
        names.append(str(name))
        if isinstance(values, pa.Array | pa.ChunkedArray):
            arrays.append(values)
        elif hasattr(values, "dtype") and getattr(values, "ndim", 1) == 1 and not isinstance(values, list):
            import pandas as pd

            frame = _from_pandas(pd.DataFrame({str(name): values}))
            arrays.append(frame.column(0))
        else:
            arrays.append(_array(str(name), list(values)))
    return pa.Table.from_arrays(arrays, names=names)


def _from_records(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    names: dict[str, None] = {}
    for r in records:
        for k in r:
            names.setdefault(str(k), None)
    return _from_columns({n: [r.get(n) for r in records] for n in names})


def _read_csv(path: Path) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # Text stays text (ids like "007" must not become 7); only an empty cell is "no value", so that a
    # literal NaN is read as NaN and rejected rather than silently dropped.
    text = ("event_id", "experiment", "experiment_id", "variant", "user_id", "event_type", "timestamp", "ts")
    opts = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in text}, null_values=[""], strings_can_be_null=True,
    )
    try:
        return pacsv.read_csv(path, convert_options=opts)
    except pa.ArrowInvalid as exc:
        raise EventValidationError(f"{path} is not a readable CSV file: {exc}") from None


def _read_json_lines(path: Path, *, lines: bool) -> pa.Table:
    import json

    records: list[Any] = []
    with path.open(encoding="utf-8") as f:
        if lines:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise EventValidationError(f"line {number} of {path} is not JSON: {exc}") from None
        else:
            try:
                loaded = json.load(f)
            except json.JSONDecodeError as exc:
                raise EventValidationError(f"{path} is not JSON: {exc}") from None
            records = loaded if isinstance(loaded, list) else [loaded]
    if not all(isinstance(r, Mapping) for r in records):
        raise EventValidationError(f"{path} must hold one JSON object per event")
    return _from_records(records)


def read_events(source: Any) -> pa.Table:
    """An Arrow table from a DataFrame, an Arrow table, a Parquet/CSV/JSON(-lines) file, a list of dicts
    or a dict of columns. Nothing is validated here except that the input can be read."""
    import sys

    import pyarrow as pa

    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    pandas = sys.modules.get("pandas")  # a DataFrame means pandas is imported already
    if pandas is not None and isinstance(source, pandas.DataFrame):
        return _from_pandas(source)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise EventValidationError(f"no such file {str(path)!r}")
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            try:
                return pq.read_table(path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise EventValidationError(f"{path} is not a readable Parquet file: {exc}") from None
        if suffix == ".csv":
            return _read_csv(path)
        if suffix in (".json", ".jsonl", ".ndjson"):
            return _read_json_lines(path, lines=suffix != ".json")
        raise EventValidationError(
            f"unknown file type {suffix!r} of {str(path)!r}; use .parquet, .csv, .json or .jsonl"
        )
    if isinstance(source, Mapping):
        return _from_columns(source)
    if isinstance(source, Sequence):
        if not all(isinstance(r, Mapping) for r in source):
            raise EventValidationError("a list of events must hold one dict per event")
        return _from_records(source)
    raise EventValidationError(
        f"cannot read events from {type(source).__name__}; pass a DataFrame, an Arrow table, a file "
        "path, a list of dicts or a dict of columns"
    )


# ---------------------------------------------------------------------------------------------------
# Validation: every check is vectorised and names the first offending row
# ---------------------------------------------------------------------------------------------------

# Timestamps must lie in this range (the sums' open window is [1900, 9999-12-31)).
_TS_MIN = dt.datetime(1900, 1, 1)
_TS_MAX = dt.datetime(9999, 12, 31)


def _first(mask: Any) -> int | None:
    """Position of the first true value of a boolean Arrow array (nulls count as false)."""
    import numpy as np
    import pyarrow.compute as pc

    if not pc.any(mask).as_py():
        return None
    values = mask.fill_null(False).to_numpy(zero_copy_only=False)
    hits = np.flatnonzero(values)
    return int(hits[0]) if hits.size else None


def _columns(table: pa.Table, experiment: Any) -> dict[str, Any]:
    import difflib

    cols: dict[str, Any] = {}
    for name in table.column_names:
        key = _ALIASES.get(name, name)
        if key in cols:
            raise EventValidationError(f"given twice (as {name!r} and an alias); keep one", field=key)
        if key not in REQUIRED + OPTIONAL:
            close = difflib.get_close_matches(name, [*REQUIRED, *OPTIONAL, *_ALIASES], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise EventValidationError(
                f"unknown column; {hint}expected {list(REQUIRED)} and optionally {list(OPTIONAL)}",
                field=name,
            )
        cols[key] = table.column(name)
    if experiment is not None and "experiment" in cols:
        raise EventValidationError("given both as a column and as experiment=; keep one", field="experiment")
    missing = [c for c in REQUIRED if c not in cols and not (c == "experiment" and experiment is not None)]
    if missing:
        raise EventValidationError(
            f"missing column(s) {missing}; every event needs {list(REQUIRED)}", field=missing[0]
        )
    return cols


def _decoded(col: Any) -> Any:
    """A dictionary-encoded column as its plain values."""
    import pyarrow as pa

    if pa.types.is_dictionary(col.type):
        return col.cast(col.type.value_type)
    return col


def _text(col: Any, field: str) -> Any:
    """A column as non-empty strings (integers become their decimal text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = _decoded(col)
    if pa.types.is_integer(col.type) or pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type):
        col = pc.cast(col, pa.string())
    elif pa.types.is_null(col.type):
        raise EventValidationError("is empty; every event needs one", row=0, field=field)
    elif not pa.types.is_string(col.type):
        bad = _first(pc.invert(pc.is_null(col)))
        raise EventValidationError(
            f"must be text or an integer, got type {col.type} (value {col[bad or 0].as_py()!r})",
            row=bad, field=field,
        )
    if col.null_count:
        raise EventValidationError("is empty; every event needs one", row=_first(pc.is_null(col)), field=field)
    # Blank: empty, or only whitespace (utf8_is_space is false for "", hence the length test).
    row = _first(pc.or_(pc.equal(pc.binary_length(col), 0), pc.utf8_is_space(col)))
    if row is not None:
        raise EventValidationError("is blank; every event needs one", row=row, field=field)
    return col


def _timestamps(col: Any) -> Any:
    """Naive UTC microsecond timestamps."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = _decoded(col)
    field = "timestamp"
    if pa.types.is_timestamp(col.type):
        if col.type.tz is not None:
            col = pc.cast(col, pa.timestamp(col.type.unit, tz="UTC")).cast(pa.timestamp(col.type.unit))
        try:
            # Nanoseconds are truncated to microseconds; coarser units must fit.
            col = col.cast(pa.timestamp("us"), safe=col.type.unit != "ns")
        except pa.ArrowInvalid as exc:
            raise EventValidationError(f"is out of range: {exc}", field=field) from None
    elif pa.types.is_date(col.type):
        col = pc.cast(pc.cast(col, pa.date32()), pa.timestamp("us"))
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        import pandas as pd

        raw = col.to_pandas()
        parsed = pd.to_datetime(raw, format="ISO8601", utc=True, errors="coerce")
        row = _first(pa.array(parsed.isna().to_numpy() & raw.notna().to_numpy()))
        if row is not None:
            raise EventValidationError(
                f"{raw.iloc[row]!r} is not an ISO date or datetime (like '2022-03-05T10:00:00')",
                row=row, field=field,
            )
        col = pa.array(parsed.dt.tz_localize(None), type=pa.timestamp("us"))
    elif pa.types.is_null(col.type):
        raise EventValidationError("is empty; every event needs a time", row=0, field=field)
    else:
        bad = _first(pc.invert(pc.is_null(col)))
        raise EventValidationError(
            f"must be a datetime or an ISO string, got type {col.type} (value {col[bad or 0].as_py()!r})",
            row=bad, field=field,
        )
    if col.null_count:
        raise EventValidationError("is empty; every event needs a time", row=_first(pc.is_null(col)), field=field)
    low, high = pa.scalar(_TS_MIN, pa.timestamp("us")), pa.scalar(_TS_MAX, pa.timestamp("us"))
    row = _first(pc.or_(pc.less(col, low), pc.greater_equal(col, high)))
    if row is not None:
        raise EventValidationError(
            f"{col[row].as_py().isoformat()} is outside the supported range [1900-01-01, 9999-12-31)",
            row=row, field=field,
        )
    return col


def _floats(col: Any, field: str) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = _decoded(col)
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), type=pa.float64())
    numeric = (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)
               or pa.types.is_boolean(col.type) or pa.types.is_decimal(col.type))
    if not numeric:
        bad = _first(pc.invert(pc.is_null(col)))
        raise EventValidationError(
            f"must be a number, got type {col.type} (value {col[bad or 0].as_py()!r})", row=bad, field=field
        )
    col = pc.cast(col, pa.float64())
    row = _first(pc.invert(pc.is_finite(col)))
    if row is not None:
        raise EventValidationError(
            f"is {col[row].as_py()}; numbers must be finite (leave it empty, None or pd.NA, when there is no value)",
            row=row, field=field,
        )
    return col


def _experiments(col: Any, registry: Any, n: int, experiment: Any) -> tuple[Any, dict[int, ExperimentRecord]]:
    """Experiment ids per row, and the records of the experiments named in the batch."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from battleground.experiment._records import ExperimentNotFoundError

    def lookup(key: Any, row: int | None) -> ExperimentRecord:
        try:
            rec: ExperimentRecord = registry.get(key)
        except ExperimentNotFoundError:
            known = [e.name for e in registry.list()]
            raise EventValidationError(
                f"no experiment {key!r}; register it first (known: {known[:20]})", row=row, field="experiment"
            ) from None
        if rec.status == "archived":
            raise EventValidationError(
                f"experiment {rec.name!r} is archived and takes no more events", row=row, field="experiment"
            )
        return rec

    if experiment is not None:
        rec = lookup(experiment, None)
        return pa.array(np.full(n, rec.id, dtype=np.int32)), {rec.id: rec}
    col = _decoded(col)
    if pa.types.is_integer(col.type):
        if col.null_count:
            raise EventValidationError("is empty; every event needs one", row=_first(pc.is_null(col)),
                                       field="experiment")
        values = np.asarray(col.to_numpy() if isinstance(col, pa.Array) else col.combine_chunks().to_numpy())
        found = {}
        for key in np.unique(values).tolist():
            rec = lookup(int(key), int(np.flatnonzero(values == key)[0]))
            found[rec.id] = rec
        return pa.array(values.astype(np.int32)), found
    text = _text(col, "experiment")
    encoded = pc.dictionary_encode(text)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    keys = encoded.dictionary.to_pylist()
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    by_key: list[ExperimentRecord] = []
    for code, key in enumerate(keys):
        row = int(np.flatnonzero(indices == code)[0])
        by_key.append(lookup(int(key) if key.strip().isdigit() else key, row))
    ids = np.array([r.id for r in by_key], dtype=np.int32)[indices]
    return pa.array(ids), {r.id: r for r in by_key}


def _check_rows(ids: Any, variant: Any, ts: Any, records: dict[int, ExperimentRecord]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    single = len(records) == 1
    for exp_id, rec in records.items():
        mine = None if single else pc.equal(ids, pa.scalar(exp_id, pa.int32()))

        def only_mine(mask: Any, mine: Any = mine) -> Any:
            return mask if mine is None else pc.and_(mine, mask)

        stranger = only_mine(pc.invert(pc.is_in(variant, value_set=pa.array(rec.variant_names, pa.string()))))
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
            row = _first(only_mine(outside(ts, pa.scalar(bound, pa.timestamp("us")))))
            if row is not None:
                raise EventValidationError(
                    f"{ts[row].as_py().isoformat()} is {words} ({bound.isoformat()}) of experiment "
                    f"{rec.name!r}; events must fall in its window", row=row, field="timestamp",
                )


def validate_events(table: pa.Table, registry: Any, *, experiment: Any = None) -> pa.Table:
    """The batch normalised to the store's schema, or :class:`EventValidationError` on the first bad row.

    Args:
        table: the raw batch (see :func:`read_events`).
        registry: the :class:`~battleground.experiment.register.Registry` to check experiments against.
        experiment: the experiment of every row, instead of an ``experiment`` column.
    """
    import pyarrow as pa

    from battleground.storage._arrow import EVENT_SCHEMA

    n = table.num_rows
    cols = _columns(table, experiment)
    if n == 0:
        return EVENT_SCHEMA.empty_table()
    event_id = _text(cols["event_id"], "event_id")
    ids, records = _experiments(cols.get("experiment"), registry, n, experiment)
    variant = _text(cols["variant"], "variant")
    user_id = _text(cols["user_id"], "user_id")
    event_type = _text(cols["event_type"], "event_type")
    ts = _timestamps(cols["timestamp"])
    value = _floats(cols["value"], "value") if "value" in cols else pa.nulls(n, type=pa.float64())
    covariate = _floats(cols["covariate"], "covariate") if "covariate" in cols else pa.nulls(n, type=pa.float64())
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
        StoreUnavailableError: the database server cannot be reached; re-send the batch later.
        StoreLockedError: another process held the embedded store for longer than the wait allows.
    """
    if not isinstance(store, EventStore):
        store = open_event_store(store)
    raw = read_events(data)
    try:
        table = validate_events(raw, _registry(store), experiment=experiment)
    except Exception as exc:  # the registry's server went away while checking the batch
        if type(exc).__module__.startswith(("sqlalchemy", "psycopg")) and "Operational" in type(exc).__name__:
            raise StoreUnavailableError(
                f"the registry at {store.registry_url.rpartition('@')[2]} is unavailable while checking the "
                f"batch ({str(exc).strip().splitlines()[0]}); nothing was stored: re-send it once the server "
                "is back"
            ) from exc
        raise
    written = store.write_batch(table)
    import pyarrow.compute as pc

    exps = tuple(sorted(int(x) for x in pc.unique(table.column("experiment_id")).to_pylist()))
    return IngestResult(received=table.num_rows, inserted=written.inserted, experiments=exps,
                        duplicates=written.duplicates, conflicts=written.conflicts)


def _as_store(store: Any) -> EventStore:
    return store if isinstance(store, EventStore) else open_event_store(store)


def count_events(store: EventStore | Any, experiment: Any = None) -> tuple[int, list[tuple[str, int]]]:
    """The number of stored events (of one experiment, by id or name, or all) and the count per
    event type."""
    store = _as_store(store)
    exp_id = None if experiment is None else _registry(store).get(experiment).id
    by_type = store.count_by_type(exp_id)
    return sum(n for _, n in by_type), by_type


def _metric_args(store: EventStore, experiment: Any, metric: str) -> tuple[ExperimentRecord, dict[str, Any]]:
    rec = _registry(store).get(experiment)
    m = rec.metric(metric)
    return rec, {"kind": m.kind, "numerator": m.numerator, "denominator": m.denominator,
                 "variants": rec.variant_names}


def metric_sums(
    store: EventStore | Any, experiment: Any, metric: str, *, start: Any = None, end: Any = None,
) -> list[MetricSums]:
    """Per-variant sums of a registered metric over ``[start, end)``, variants in registry order.

    ``start``/``end`` are datetimes, dates or ISO strings (UTC); ``None`` leaves that side open.
    """
    store = _as_store(store)
    rec, args = _metric_args(store, experiment, metric)
    return store.sums(rec.id, start=_when(start, "start"), end=_when(end, "end"), **args)


def daily_metric_sums(
    store: EventStore | Any, experiment: Any, metric: str, *, start: Any = None, end: Any = None,
) -> list[tuple[dt.date, list[MetricSums]]]:
    """Cumulative per-variant sums of a registered metric at the end of each day (UTC); the last day
    equals :func:`metric_sums` over the same window."""
    store = _as_store(store)
    rec, args = _metric_args(store, experiment, metric)
    return store.daily_sums(rec.id, start=_when(start, "start"), end=_when(end, "end"), **args)


def _when(value: Any, field: str) -> dt.datetime | None:
    from battleground.experiment.register import parse_timestamp

    return parse_timestamp(value, field)


def events_frame(store: EventStore | Any, experiment: Any = None) -> pd.DataFrame:
    """The stored events (of one experiment, or all) as a DataFrame, in time order."""
    store = _as_store(store)
    exp_id = None if experiment is None else _registry(store).get(experiment).id
    return store.to_arrow(exp_id).to_pandas()
