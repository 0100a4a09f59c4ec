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
    IngestResult(received=2, inserted=2, experiments=(1,), duplicates=0, conflicts=0, rejected=(), replays=0, sequence=None)
    >>> ingest(store, batch).duplicates
    2
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from battleground.experiment._event_input import (
    OPTIONAL,
    REQUIRED,
    EventText,
    EventValidationError,
    read_events,
)
from battleground.experiment._event_rules import validate_events
from battleground.experiment._ingest import IngestResult, ingest
from battleground.experiment._ingest import registry_of as _registry
from battleground.storage._sums_sql import MetricQuery
from battleground.storage.events import EventStore, StoreUnavailableError, open_event_store
from battleground.storage.sums import ExperimentSums, MetricSums

if TYPE_CHECKING:
    import pandas as pd

    from battleground.experiment._records import ExperimentRecord

__all__ = [
    "OPTIONAL",
    "REQUIRED",
    "EventStore",
    "EventText",
    "EventValidationError",
    "ExperimentSums",
    "IngestResult",
    "MetricQuery",
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


def _as_store(store: Any) -> EventStore:
    return store if isinstance(store, EventStore) else open_event_store(store)


def count_events(store: EventStore | Any, experiment: Any = None) -> tuple[int, list[tuple[str, int]]]:
    """The number of stored events (of one experiment, by id or name, or all) and the count per
    event type."""
    store = _as_store(store)
    exp_id = None if experiment is None else _registry(store).get(experiment).id
    by_type = store.count_by_type(exp_id)
    return sum(n for _, n in by_type), by_type


def _metric_query(store: EventStore, experiment: Any, metric: str) -> tuple[ExperimentRecord, MetricQuery]:
    from battleground.experiment._metric_sums import metric_query

    rec = _registry(store).get(experiment)
    return rec, metric_query(rec.metric(metric))


def metric_sums(
    store: EventStore | Any, experiment: Any, metric: str, *, start: Any = None, end: Any = None,
    multiple_exposures: str = "exclude", shifted: bool = False,
) -> list[MetricSums]:
    """Per-variant sums of a registered metric over ``[start, end)``, variants in registry order.

    ``start``/``end`` are datetimes, dates or ISO strings (UTC); ``None`` leaves that side open. Users
    count from their first exposure (and within the metric's conversion window); ``multiple_exposures``
    says what to do with users exposed to several variants (see :class:`ExperimentSums`). The sums are
    raw (Σx, Σx², …) unless ``shifted``: then they are taken around per-metric shifts (``MetricSums.shift``)
    and keep every digit of the variance even when the mean dwarfs the spread.
    """
    store = _as_store(store)
    rec, query = _metric_query(store, experiment, metric)
    arms = store.sums_many(rec.id, [query], _when(start, "start"), _when(end, "end"), rec.variant_names,
                           multiple_exposures=multiple_exposures)[0]
    return arms if shifted else [s.unshifted() for s in arms]


def daily_metric_sums(
    store: EventStore | Any, experiment: Any, metric: str, *, start: Any = None, end: Any = None,
    multiple_exposures: str = "exclude", shifted: bool = False,
) -> list[tuple[dt.date, list[MetricSums]]]:
    """Cumulative per-variant sums of a registered metric at the end of each day (UTC); the last day
    equals :func:`metric_sums` over the same window."""
    store = _as_store(store)
    rec, query = _metric_query(store, experiment, metric)
    series = store.daily_sums_many(rec.id, [query], _when(start, "start"), _when(end, "end"),
                                   rec.variant_names, multiple_exposures=multiple_exposures)
    return [(day, arms[0] if shifted else [s.unshifted() for s in arms[0]]) for day, arms in series]


def _when(value: Any, field: str) -> dt.datetime | None:
    from battleground.experiment.register import parse_timestamp

    return parse_timestamp(value, field)


def events_frame(store: EventStore | Any, experiment: Any = None) -> pd.DataFrame:
    """The stored events (of one experiment, or all) as a DataFrame, in time order."""
    store = _as_store(store)
    exp_id = None if experiment is None else _registry(store).get(experiment).id
    return store.to_arrow(exp_id).to_pandas()
