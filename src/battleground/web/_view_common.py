"""Helpers every view shares: JSON-ready values, the read-only monitor and the results window.

Views only read: end conditions are evaluated through a read-only source, so looking at a page never
stops an experiment or appends to its audit log.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from battleground._time import TimeInputError, parse_instant
from battleground.errors import WebError

if TYPE_CHECKING:
    import pandas as pd

    from battleground.experiment.monitoring import ExperimentInfo, Monitor
    from battleground.settings import Settings

__all__ = [
    "ReadOnlySource", "WindowError", "frame_records", "jsonable", "parse_window", "read_only_monitor",
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


class ReadOnlySource:
    """An :class:`~battleground.experiment.monitoring.ExperimentSource` that never writes.

    It reads through ``inner`` and drops ``stop`` and ``record``: the dashboard evaluates end conditions
    and SRM without stopping experiments or appending alerts to the audit log on every page view.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        # one page asks for the same sums several times (results, end conditions): query them once
        self._sums: dict[tuple[Any, ...], Any] = {}

    def resolve_id(self, key: Any) -> int:
        return int(self.inner.resolve_id(key))

    def running_ids(self) -> list[int]:
        return list(self.inner.running_ids())

    def all_ids(self) -> list[int]:
        return list(self.inner.all_ids())

    def experiment(self, experiment_id: int) -> ExperimentInfo:
        return self.inner.experiment(experiment_id)

    def metric_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> dict[str, list[Any]]:
        key = ("sums", info.id, tuple(m.name for m in info.metrics), start, end)
        if key not in self._sums:
            self._sums[key] = self.inner.metric_sums(info, start, end)
        return dict(self._sums[key])

    def daily_metric_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[tuple[dt.date, dict[str, list[Any]]]]:
        key = ("daily", info.id, tuple(m.name for m in info.metrics), start, end)
        if key not in self._sums:
            self._sums[key] = self.inner.daily_metric_sums(info, start, end)
        return list(self._sums[key])

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


def read_only_monitor(settings: Settings) -> Monitor:
    """A :class:`Monitor` over the settings' registry and event store that cannot write."""
    from battleground.experiment.monitoring import Monitor

    return Monitor(source=ReadOnlySource(Monitor(client=settings).backend))



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

