"""The experiment list's search, filters and sort (pure functions over registry records and summaries).

Search and the owner filter run on the records, before any event is read, so a narrowed list is also a
cheaper one; sorting runs on the summaries (users and progress come from the event store).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from battleground.experiment.register import ExperimentRecord
    from battleground.web._experiment_views import ExperimentSummary

__all__ = [
    "DECISIONS", "SORTS", "SummaryCache", "decision_label", "filter_records", "owners", "record_version",
    "sort_summaries",
]

# the decision rule's verdicts (``experiment._decide.VERDICTS``) as the list says them, in sort order
DECISIONS: dict[str, str] = {
    "ship": "ship", "dont_ship": "no-ship", "inconclusive": "keep running", "collecting": "keep running",
    "data_quality": "check data",
}
_DECISION_ORDER = tuple(DECISIONS)


def decision_label(verdict: str | None, status: str = "running") -> str:
    """What the list's decision column says for a verdict (``—`` before any data); an experiment that
    no longer runs cannot "keep running": it ended inconclusive."""
    label = DECISIONS.get(verdict or "", "—")
    return "inconclusive" if label == "keep running" and status != "running" else label


def _by_decision(s: Any) -> tuple[int, float, int]:
    rank = _DECISION_ORDER.index(s.verdict) if s.verdict in _DECISION_ORDER else len(_DECISION_ORDER)
    return rank, -abs(s.lift) if s.lift is not None else 0.0, -s.id


def _by_lift(s: Any) -> tuple[bool, float]:
    """Largest lift first; experiments without one last (``reverse=True`` sorts on this)."""
    return s.lift is not None, s.lift if s.lift is not None else 0.0

# key → (label, sort key, newest/largest first)
SORTS: dict[str, tuple[str, Any, bool]] = {
    "newest": ("newest first", lambda s: s.id, True),
    "name": ("name", lambda s: s.name.casefold(), False),
    "status": ("status", lambda s: (["running", "draft", "stopped", "archived"].index(s.status)
                                    if s.status in ("running", "draft", "stopped", "archived") else 9, -s.id), False),
    "users": ("most users", lambda s: s.total_users, True),
    "progress": ("progress against plan", lambda s: -1.0 if s.progress is None else s.progress, True),
    "decision": ("decision (ship first)", _by_decision, False),
    "lift": ("primary-metric lift", _by_lift, True),
    "started": ("started", lambda s: (s.started_at is not None, s.started_at.isoformat() if s.started_at else ""), True),
}


def filter_records(records: Sequence[ExperimentRecord], *, q: str | None = None, owner: str | None = None) -> list[ExperimentRecord]:
    """The records whose name, hypothesis, description or owner contains ``q`` (case-insensitive), of
    ``owner`` when given (``"-"``: no owner)."""
    needle = (q or "").strip().casefold()
    out = []
    for r in records:
        if owner and (r.owner or "-") != owner:
            continue
        if needle and not any(needle in (t or "").casefold() for t in (r.name, r.hypothesis, r.description, r.owner)):
            continue
        out.append(r)
    return out


def owners(records: Sequence[ExperimentRecord]) -> list[str]:
    """The owners to filter by, sorted (``"-"`` for experiments without one)."""
    return sorted({r.owner or "-" for r in records}, key=str.casefold)


def sort_summaries(summaries: Sequence[ExperimentSummary], sort: str) -> list[ExperimentSummary]:
    _, key, reverse = SORTS.get(sort, SORTS["newest"])
    return sorted(summaries, key=key, reverse=reverse)


def record_version(record: ExperimentRecord) -> tuple[Any, ...]:
    """What identifies a registry record as stored: the registry stamps ``updated_at`` on every change
    (edits, variants, metrics, end conditions, status), so (status, updated_at) names one version;
    cheap to build for a list of hundreds (no deep copy of the record)."""
    return (record.status, record.updated_at, record.name)


class SummaryCache:
    """List lines computed once per state of the data, so a revisit of the list reads no event sums.

    A line depends on its registry record, the stored events and (for a maximum duration) the clock.
    The key is (the record's version, :func:`record_version`, the experiment's number of stored events (``EventStore.experiment_counts``:
    it changes exactly when the experiment's events do, and is read once per state of the store, so a
    revisit without new events costs no query), the current minute when the record has a maximum
    duration or an end date). An ingest into one experiment recomputes that experiment's line only.
    """

    def __init__(self, size: int = 2000) -> None:
        import threading

        self._lock = threading.Lock()
        self._items: dict[tuple[Any, ...], ExperimentSummary] = {}
        self._size = size

    def summaries(self, monitor: Any, records: Sequence[ExperimentRecord]) -> list[ExperimentSummary]:
        import datetime as dt

        from battleground.web._experiment_views import experiment_summary

        store = getattr(getattr(monitor.backend, "inner", None), "store", None)
        counts = store.experiment_counts() if store is not None and records else None
        minute = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M")
        keys = {r.id: None if counts is None else (
            r.id, record_version(r), counts.get(r.id, 0),
            minute if r.end_conditions.max_duration_days or r.end_at else None) for r in records}
        with self._lock:
            missing = [r.id for r in records if keys[r.id] is None or keys[r.id] not in self._items]
        remember = getattr(monitor.backend, "remember", None)
        if remember is not None:  # the records are at hand: computing a line reads no registry row again
            todo = set(missing)
            remember([r for r in records if r.id in todo])
        prefetch = getattr(monitor.backend, "prefetch_sums", None)
        if prefetch is not None and len(missing) > 1:  # the lines to compute read their sums in one batch
            prefetch(missing)
        out = []
        for r in records:
            key = keys[r.id]
            if key is None:
                out.append(experiment_summary(monitor, r))
                continue
            with self._lock:
                hit = self._items.get(key)
            if hit is None:
                hit = experiment_summary(monitor, r)
                if hit.error is None:  # a failure to read is shown now and retried next time
                    with self._lock:
                        if len(self._items) >= self._size:
                            self._items.clear()
                        self._items[key] = hit
            out.append(hit)
        return out
