"""Event rules: a read batch checked against the registry and normalised to the store's schema.

Every check is vectorised and names the first offending row (0-based), the field and the fix; the first
bad row raises :class:`EventValidationError` and nothing is written.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from battleground._contract import MAX_ABS_VALUE, MAX_ID, number_problem, text_problem
from battleground.experiment._event_input import (
    _ALIASES,
    OPTIONAL,
    REQUIRED,
    EventValidationError,
    RejectedRow,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from battleground.experiment._records import ExperimentRecord

__all__ = ["validate_batch", "validate_events"]

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
    from battleground._suggest import suggest

    cols: dict[str, Any] = {}
    for name in table.column_names:
        key = _ALIASES.get(name, name)
        if key in cols:
            raise EventValidationError(f"given twice (as {name!r} and an alias); keep one", field=key)
        if key not in REQUIRED + OPTIONAL:
            hint = suggest(name, [*REQUIRED, *OPTIONAL, *_ALIASES])
            raise EventValidationError(
                f"unknown column{hint}; expected {list(REQUIRED)} and optionally {list(OPTIONAL)}",
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
    problem = text_problem(col)
    if problem is not None:
        raise EventValidationError(problem[1], row=problem[0], field=field)
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
        # Like a nanosecond Arrow column (and a JSON body), nanoseconds are truncated to microseconds.
        col = pa.array(parsed.dt.tz_localize(None).dt.floor("us"), type=pa.timestamp("us"))
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
               or pa.types.is_decimal(col.type))  # True is not a number
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
    row = number_problem(col)
    if row is not None:
        raise EventValidationError(
            f"is {col[row].as_py():g}; numbers are bounded to ±{MAX_ABS_VALUE:g}", row=row, field=field
        )
    return col


def _experiments(col: Any, registry: Any, n: int, experiment: Any) -> tuple[Any, dict[int, ExperimentRecord]]:
    """Experiment ids per row, and the records of the experiments named in the batch."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from battleground.experiment._records import ExperimentNotFoundError

    def lookup(key: Any, row: int | None) -> ExperimentRecord:
        if isinstance(key, int) and not 1 <= key <= MAX_ID:
            raise EventValidationError(f"experiment ids are 1 to {MAX_ID}, got {key}", row=row, field="experiment")
        if isinstance(key, str):
            problem = text_problem(pa.array([key]))
            if problem is not None:
                raise EventValidationError(problem[1], row=row, field="experiment")
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
        from battleground._contract import ContractError, check_experiment_key

        try:
            experiment = check_experiment_key(experiment, "experiment=")
        except ContractError as exc:
            raise EventValidationError(str(exc), field="experiment") from None
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
        by_key.append(lookup(int(key) if key.strip().isdigit() and key.isascii() else key, row))
    ids = np.array([r.id for r in by_key], dtype=np.int32)[indices]
    return pa.array(ids), {r.id: r for r in by_key}


def _rule_rejections(ids: Any, variant: Any, ts: Any, records: dict[int, ExperimentRecord]
                     ) -> list[tuple[int, str, str, str]]:
    """Every row the experiments' rules refuse (a variant the experiment lacks, a time outside its
    window: before its start, at or after its planned end or its stop), as ``(row, field, reason,
    group)`` ordered by row (``group``: the reason without the row's value); a row refused for several
    reasons is listed once, for the first."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    found: dict[int, tuple[str, str, str]] = {}
    single = len(records) == 1

    def rows_of(mask: Any) -> Any:
        return np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False)) if pc.any(mask).as_py() else ()

    for exp_id, rec in records.items():
        mine = None if single else pc.equal(ids, pa.scalar(exp_id, pa.int32()))

        def only_mine(mask: Any, mine: Any = mine) -> Any:
            return mask if mine is None else pc.and_(mine, mask)

        stranger = only_mine(pc.invert(pc.is_in(variant, value_set=pa.array(rec.variant_names, pa.string()))))
        group = f"name a variant experiment {rec.name!r} lacks"
        for row in rows_of(stranger):
            found.setdefault(int(row), ("variant", f"{variant[int(row)].as_py()!r} is not a variant of experiment "
                                                   f"{rec.name!r}; its variants are {list(rec.variant_names)}", group))
        start, end = rec.window()
        stop = "its stop" if end is not None and end == rec.stopped_at else "its end"
        for bound, outside, words in ((start, pc.less, "before its start"),
                                      (end, pc.greater_equal, f"at or after {stop}")):
            if bound is None:
                continue
            group = f"are {words} ({bound.isoformat()}) of experiment {rec.name!r}"
            for row in rows_of(only_mine(outside(ts, pa.scalar(bound, pa.timestamp("us"))))):
                found.setdefault(int(row), ("timestamp", f"{ts[int(row)].as_py().isoformat()} is {words} "
                                                         f"({bound.isoformat()}) of experiment {rec.name!r}; "
                                                         "events must fall in its window", group))
    return [(row, *found[row]) for row in sorted(found)]


def _check_layered_exposures(ids: Any, variant: Any, user_id: Any, event_type: Any,
                             records: dict[int, ExperimentRecord]) -> None:
    """Refuses an exposure of a unit that a layered experiment's range or its project's holdout keeps out."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from battleground.storage._events_sql import EXPOSURE

    exposure = pc.equal(event_type, pa.scalar(EXPOSURE))
    for exp_id, rec in records.items():
        if rec.layer is not None or rec.holdout is not None or rec.is_holdout:
            mine = pc.equal(ids, pa.scalar(exp_id, pa.int32()))
            _check_exposed_units(rec, pc.and_(mine, exposure), user_id, variant)


def _check_exposed_units(rec: ExperimentRecord, exposures: Any, user_id: Any, variant: Any) -> None:
    """An exposure to a layered experiment, or one behind a holdout, must be of a unit the assignment
    lets in: a unit outside the layer range or held out is never exposed (whoever assigned it). An
    exposure to a holdout itself must name the unit's side ("holdout" or "shipped")."""
    import numpy as np
    import pyarrow.compute as pc

    from battleground.experiment.assign import Assigner

    rows = np.flatnonzero(np.asarray(pc.fill_null(exposures, False)))
    if rows.size == 0:
        return
    assigner = Assigner(rec)
    units = pc.take(user_id, rows)
    if rec.is_holdout:
        claimed = np.asarray(pc.take(variant, rows).to_pylist(), dtype=object)
        wrong = np.flatnonzero(assigner.assign_many(units) != claimed)
        if wrong.size:
            unit = units[int(wrong[0])].as_py()
            raise EventValidationError(
                f"user {unit!r} is exposed to holdout {rec.name!r} as {claimed[wrong[0]]!r} but the holdout "
                f"assigns it {assigner.assign(unit)!r}; expose with battleground.experiment.Assigner",
                row=int(rows[wrong[0]]), field="variant",
            )
        return
    bad = np.flatnonzero(~assigner.eligible(units))
    if bad.size:
        row = int(rows[bad[0]])
        unit = units[int(bad[0])].as_py()
        why = assigner.exclusion(unit)
        raise EventValidationError(
            f"user {unit!r} is exposed to experiment {rec.name!r} but "
            + ("is held out by its project's holdout" if why == "holdout" else
               f"its bucket in layer {rec.layer!r} is outside the experiment's range {list(rec.layer_range or ())}")
            + "; assign with battleground.experiment.Assigner (or /decide), which gives such units no variant",
            row=row, field="user_id",
        )


def validate_events(table: pa.Table, registry: Any, *, experiment: Any = None) -> pa.Table:
    """The batch normalised to the store's schema, or :class:`EventValidationError` on the first bad row.

    Args:
        table: the raw batch (see :func:`read_events`).
        registry: the :class:`~battleground.experiment.register.Registry` to check experiments against.
        experiment: the experiment of every row, instead of an ``experiment`` column.
    """
    return validate_batch(table, registry, experiment=experiment)[0]


def validate_batch(table: pa.Table, registry: Any, *, experiment: Any = None, partial: bool = False
                   ) -> tuple[pa.Table, tuple[RejectedRow, ...]]:
    """:func:`validate_events`, and the rows refused by the experiments' rules.

    A row that breaks the input contract (a missing field, a wrong type, an unknown experiment) always
    refuses the whole batch: the producer has a bug. A well-formed row the experiment refuses (a time
    after its stop or outside its window, a variant it lacks) refuses the whole batch too, naming every
    such row and why, unless ``partial``: then those rows are left out, the rest is returned, and the
    refused rows are listed (0-based ``row`` of the batch, the field and the reason).
    """
    import pyarrow as pa

    from battleground.storage._arrow import EVENT_SCHEMA

    n = table.num_rows
    cols = _columns(table, experiment)
    if n == 0:
        return EVENT_SCHEMA.empty_table(), ()
    event_id = _text(cols["event_id"], "event_id")
    ids, records = _experiments(cols.get("experiment"), registry, n, experiment)
    variant = _text(cols["variant"], "variant")
    user_id = _text(cols["user_id"], "user_id")
    event_type = _text(cols["event_type"], "event_type")
    ts = _timestamps(cols["timestamp"])
    value = _floats(cols["value"], "value") if "value" in cols else pa.nulls(n, type=pa.float64())
    covariate = _floats(cols["covariate"], "covariate") if "covariate" in cols else pa.nulls(n, type=pa.float64())
    _check_layered_exposures(ids, variant, user_id, event_type, records)
    out = pa.Table.from_arrays(
        [event_id, ids, variant, user_id, event_type, ts, value, covariate], schema=EVENT_SCHEMA
    )
    found = _rule_rejections(ids, variant, ts, records)
    if not found:
        return out, ()
    rejected = [RejectedRow(row, field, reason, event_id[row].as_py()) for row, field, reason, _ in found]
    if not partial:
        raise EventValidationError.refused(tuple(rejected), tuple(group for *_, group in found), n)
    import numpy as np

    keep = np.ones(n, dtype=bool)
    keep[[r.row for r in rejected]] = False
    return out.filter(pa.array(keep)), tuple(rejected)
