"""Helpers every view shares: JSON-ready values, the read-only monitor and the results window.

Views only read: end conditions are evaluated through a read-only source, so looking at a page never
stops an experiment or appends to its audit log.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from battleground._time import TimeInputError, parse_instant
from battleground.errors import WebError

if TYPE_CHECKING:
    import pandas as pd

    from battleground.experiment.monitoring import ExperimentInfo, Monitor
    from battleground.settings import Settings

__all__ = [
    "ReadOnlySource", "SumsCache", "WindowError", "frame_records", "jsonable", "parse_window",
    "read_only_monitor",
]


def jsonable(value: Any) -> Any:
    """Plain JSON values: NaN and ±inf become ``None``, datetimes ISO strings, tuples lists."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    return str(value)


# ---------------------------------------------------------------------------------------------------
# Experiments
# ---------------------------------------------------------------------------------------------------


class SumsCache:
    """Sums read from the event store, shared by the requests of one dashboard process.

    Keys come from the source's ``sums_key`` (the store's state token, the metric definitions, the
    variants, the exposure policy) plus the window, so a page refresh with no new events reads nothing
    from the store, and any ingest (a new state) makes the next read scan again. Least recently used
    entries go first beyond ``size``.
    """

    def __init__(self, size: int = 512) -> None:
        import threading
        from collections import OrderedDict

        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self.size = size

    def get(self, key: Hashable, read: Callable[[], Any]) -> Any:
        """The value cached under ``key``, else ``read()`` (stored for next time)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = read()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key`` (a read made ahead, e.g. a batch for the list)."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def _sums_extra(info: ExperimentInfo) -> tuple[Any, ...]:
    """What besides the store's state and the window keys an experiment's one-scan sums: the declared
    CUPED++ attributes change what the scan returns (metadata is not in ``sums_key``)."""
    from battleground.experiment._source import cupedpp_attributes

    return (cupedpp_attributes(info),)


class ReadOnlySource:
    """An :class:`~battleground.experiment.monitoring.ExperimentSource` that never writes.

    It reads through ``inner`` and drops ``stop`` and ``record``: the dashboard evaluates end conditions
    and SRM without stopping experiments or appending alerts to the audit log on every page view. It
    offers what ``inner`` offers, so :class:`Monitor` reads the same sums as on the command line (the
    one scan with the multiple-exposure check and the CUPED covariates, strata for post-stratification).
    Within one source (one request) each experiment and each sums query is read once; with a
    :class:`SumsCache`, sums are also kept across requests while the store's state is unchanged.
    """

    def __init__(self, inner: Any, cache: SumsCache | None = None) -> None:
        self.inner = inner
        self.cache = cache
        # one page asks for the same sums several times (results, end conditions): query them once
        self._sums: dict[tuple[Any, ...], Any] = {}
        self._infos: dict[int, ExperimentInfo] = {}

    def resolve_id(self, key: Any) -> int:
        return int(self.inner.resolve_id(key))

    def running_ids(self) -> list[int]:
        return list(self.inner.running_ids())

    def all_ids(self) -> list[int]:
        return list(self.inner.all_ids())

    def experiment(self, experiment_id: int) -> ExperimentInfo:
        if experiment_id not in self._infos:
            self._infos[experiment_id] = self.inner.experiment(experiment_id)
        return self._infos[experiment_id]

    def sums_state(self, info: ExperimentInfo) -> Hashable | None:
        """The inner source's ``sums_key`` (equal keys: equal sums), ``None`` when it has none."""
        offer = getattr(self.inner, "sums_key", None)
        return offer(info) if offer is not None else None

    @staticmethod
    def _local(kind: str, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None,
               extra: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        return (kind, info.id, tuple(m.name for m in info.metrics), start, end, extra)

    def _read(self, kind: str, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None,
              read: Callable[[], Any], extra: tuple[Any, ...] = ()) -> Any:
        local = self._local(kind, info, start, end, extra)
        if local not in self._sums:
            shared = self.sums_state(info) if self.cache is not None else None
            if shared is None or self.cache is None:
                self._sums[local] = read()
            else:
                self._sums[local] = self.cache.get((kind, shared, start, end, extra), read)
        return self._sums[local]

    def remember(self, records: Sequence[Any]) -> None:
        """Hand the records this request has read to the inner source (it then skips re-reading them)."""
        offer = getattr(self.inner, "remember", None)
        if offer is not None:
            offer(records)

    def prefetch_sums(self, experiment_ids: Sequence[int], start: dt.datetime | None = None,
                      end: dt.datetime | None = None) -> int:
        """Read the sums of the experiments not read yet (here or in the cache) in batches, one scan per
        store and metric set (``experiment_sums_batch`` of the inner source), and keep them as if each
        had been read alone: what the list does first, so 100 experiments cost a few queries, not 100.
        Returns how many experiments were read."""
        batch = getattr(self.inner, "experiment_sums_batch", None)
        if batch is None:
            return 0
        todo = []
        for i in experiment_ids:
            info = self.experiment(int(i))
            shared = self.sums_state(info) if self.cache is not None else None
            extra = _sums_extra(info)
            if self._local("sums", info, start, end, extra) in self._sums or (
                    shared is not None and self.cache is not None and ("sums", shared, start, end, extra) in self.cache):
                continue
            todo.append((info, shared))
        if not todo:
            return 0
        found = batch([info for info, _ in todo], start, end)
        for info, shared in todo:
            if info.id not in found:  # not batchable (its own source, capped metrics): read alone later
                continue
            extra = _sums_extra(info)
            self._sums[self._local("sums", info, start, end, extra)] = found[info.id]
            if shared is not None and self.cache is not None:
                self.cache.put(("sums", shared, start, end, extra), found[info.id])
        return sum(info.id in found for info, _ in todo)

    @property
    def experiment_sums(self) -> Callable[..., Any] | None:
        """The inner source's one-scan sums (:class:`~battleground.storage.sums.ExperimentSums`), if it
        has them; ``None`` otherwise, as :class:`Monitor` expects of an optional method."""
        fetch = getattr(self.inner, "experiment_sums", None)
        if fetch is None:
            return None

        def experiment_sums(info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None) -> Any:
            return self._read("sums", info, start, end, lambda: fetch(info, start, end), _sums_extra(info))

        return experiment_sums

    @property
    def strata_sums(self) -> Callable[..., Any] | None:
        """The inner source's per-stratum sums (post-stratification), if it has them."""
        fetch = getattr(self.inner, "strata_sums", None)
        if fetch is None:
            return None

        def strata_sums(info: ExperimentInfo, attributes: tuple[str, ...], start: dt.datetime | None,
                        end: dt.datetime | None) -> Any:
            return self._read("strata", info, start, end, lambda: fetch(info, attributes, start, end),
                              tuple(attributes))

        return strata_sums

    def metric_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> dict[str, list[Any]]:
        one_scan = self.experiment_sums
        if one_scan is not None:  # the same scan the results read: one query for both
            from battleground.experiment._source import sums_by_metric

            return sums_by_metric(info, one_scan(info, start, end))
        return dict(self._read("metric", info, start, end, lambda: self.inner.metric_sums(info, start, end)))

    @property
    def daily_experiment_sums(self) -> Callable[..., Any] | None:
        """The inner source's daily one-scan sums (with the CUPED++ sums when declared), if it has them."""
        fetch = getattr(self.inner, "daily_experiment_sums", None)
        if fetch is None:
            return None

        def daily_experiment_sums(info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None) -> Any:
            from battleground.experiment._source import cupedpp_attributes

            return list(self._read("daily_sums", info, start, end, lambda: fetch(info, start, end),
                                   (cupedpp_attributes(info),)))

        return daily_experiment_sums

    def daily_metric_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[tuple[dt.date, dict[str, list[Any]]]]:
        one_scan = self.daily_experiment_sums
        if one_scan is not None:  # the same daily scan the series read
            from battleground.experiment._source import sums_by_metric

            return [(day, sums_by_metric(info, found)) for day, found in one_scan(info, start, end)]
        return list(self._read("daily", info, start, end, lambda: self.inner.daily_metric_sums(info, start, end)))

    def data_quality(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> tuple[Any, ...]:
        """The inner source's data-quality checks beyond SRM (e.g. multiple exposure), if it has any."""
        offer = getattr(self.inner, "data_quality", None)
        return tuple(offer(info, start, end)) if offer is not None else ()

    def stop(self, experiment_id: int, reason: str) -> None:
        """Views never stop experiments (``battleground experiment check`` does)."""

    def record(self, experiment_id: int, message: str) -> None:
        """Views never append to the audit log."""


def read_only_monitor(settings: Settings, cache: SumsCache | None = None) -> Monitor:
    """A :class:`Monitor` over the settings' registry and event store that cannot write; with ``cache``,
    sums are shared with the other requests while the store is unchanged."""
    from battleground.experiment.monitoring import Monitor

    return Monitor(source=ReadOnlySource(Monitor(client=settings).backend, cache))



class WindowError(TimeInputError, WebError):
    """A bad ``start``/``end`` of a results window; ``field`` names which."""


def _parse_bound(value: Any, name: str, *, end: bool = False) -> Any:
    if value is None or not str(value).strip():  # a blank form field: no bound
        return None
    return parse_instant(value, name, end=end, error=WindowError)


def parse_window(start: Any, end: Any) -> tuple[Any, Any]:
    """Check a results window (ISO dates or datetimes; aware ones are converted to naive UTC).

    Raises :class:`WindowError` naming the bad bound."""
    return _parse_bound(start, "start"), _parse_bound(end, "end", end=True)



def frame_records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """A monitoring frame as JSON-ready records."""
    if frame is None or frame.empty:
        return []
    return [jsonable(r) for r in frame.to_dict("records")]

