"""The experiment views: the list line, the experiment page's detail and the audit log in words."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from battleground.web._results_table import ResultsTable, results_table
from battleground.web._view_common import frame_records, jsonable, parse_window, read_only_monitor

if TYPE_CHECKING:
    import pandas as pd

    from battleground.experiment._decide import Decision
    from battleground.experiment.monitoring import (
        EndConditionReport,
        ExperimentInfo,
        Monitor,
        MonitorResult,
    )
    from battleground.experiment.register import AuditEntry, ExperimentRecord, Registry
    from battleground.settings import Settings
    from battleground.stats import SrmResult
    from battleground.web._view_common import SumsCache

__all__ = [
    "VIEWS", "ExperimentDetail", "ExperimentSummary", "audit_dicts", "audit_text", "experiment_detail",
    "experiment_summary", "record_dict", "result_records",
]


@dataclass(frozen=True)
class ExperimentSummary:
    """One line of the experiment list: status, users per variant and the two badges."""

    id: int
    name: str
    status: str
    owner: str | None
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    stopped_at: dt.datetime | None
    variants: tuple[str, ...]
    users: dict[str, int]
    srm_status: str
    srm_p_value: float
    end_met: bool
    end_reasons: tuple[str, ...]
    error: str | None = None
    target_sample_size: int | None = None
    verdict: str | None = None  # the decision rule's verdict (``Decision.verdict``); None before any data
    headline: str = ""  # the decision in words, e.g. "ship treatment"
    primary_metric: str | None = None
    lift_variant: str | None = None  # the variant whose primary-metric lift is shown
    lift: float | None = None  # its relative lift of the primary metric vs control
    lift_significant: bool = False
    lift_good: bool | None = None  # whether the lift goes the metric's good way (None: no lift)

    @property
    def progress(self) -> float | None:
        """The smallest variant's users over the planned users per variant (``None`` without a plan)."""
        if not self.target_sample_size:
            return None
        return min((self.users.get(v, 0) for v in self.variants), default=0) / self.target_sample_size

    @property
    def srm_alert(self) -> bool:
        return self.srm_status == "alert"

    @property
    def total_users(self) -> int:
        return sum(self.users.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "status": self.status, "owner": self.owner,
            "created_at": jsonable(self.created_at), "started_at": jsonable(self.started_at),
            "stopped_at": jsonable(self.stopped_at), "variants": list(self.variants),
            "users": dict(self.users), "srm_status": self.srm_status,
            "srm_p_value": jsonable(self.srm_p_value), "srm_alert": self.srm_alert,
            "end_condition_met": self.end_met, "end_reasons": list(self.end_reasons),
            "error": self.error, "target_sample_size": self.target_sample_size, "progress": self.progress,
            "decision": self.verdict, "decision_headline": self.headline, "primary_metric": self.primary_metric,
            "lift_variant": self.lift_variant, "primary_lift": jsonable(self.lift),
            "primary_lift_significant": self.lift_significant,
        }


def _end_report(monitor: Monitor, record: ExperimentRecord, *, sequential_srm: bool = True) -> EndConditionReport:
    monitor.experiment_id_ = record.id
    return monitor.check_end_conditions(stop=False, sequential_srm=sequential_srm)


def _primary_lift(result: MonitorResult) -> dict[str, Any]:
    """The primary metric's relative lift for the list: of the variant the decision ships, else of the
    treatment with the largest lift in the metric's good direction."""
    if not result.rows:
        return {}
    primary = next((r.metric for r in result.rows if r.primary), result.rows[0].metric)
    rows = [r for r in result.rows if r.metric == primary and not r.is_control and math.isfinite(r.rel_lift)]
    if not rows:
        return {"primary_metric": primary}
    best = result.decision.best
    row = next((r for r in rows if r.variant == best), None) or max(
        rows, key=lambda r: r.rel_lift if r.higher_is_better else -r.rel_lift)
    return {"primary_metric": primary, "lift_variant": row.variant, "lift": float(row.rel_lift),
            "lift_significant": bool(row.significant),
            "lift_good": (row.rel_lift > 0) == row.higher_is_better if row.rel_lift != 0 else None}


def _decision_fields(monitor: Monitor) -> dict[str, Any]:
    """Verdict and primary lift from :meth:`Monitor.result`: the decision the experiment page shows."""
    try:
        result = monitor.result()
    except (ValueError, LookupError):  # no exposure yet, a control without users, ...
        return {}
    if not result.rows or max(r.users for r in result.rows) == 0:
        return {}
    return {"verdict": result.decision.verdict, "headline": result.decision.headline, **_primary_lift(result)}


def experiment_summary(monitor: Monitor, record: ExperimentRecord) -> ExperimentSummary:
    """The list line of one experiment; a failure to read its events is shown, not raised."""
    base: dict[str, Any] = {
        "id": record.id, "name": record.name, "status": record.status, "owner": record.owner,
        "created_at": record.created_at, "started_at": record.started_at,
        "stopped_at": record.stopped_at, "variants": record.variant_names,
        "target_sample_size": record.end_conditions.target_sample_size,
    }
    try:
        # the list shows the totals' SRM only: no daily scan for the sequential one
        report = _end_report(monitor, record, sequential_srm=False)
    except (ValueError, LookupError) as exc:
        return ExperimentSummary(
            **base, users={v: 0 for v in record.variant_names}, srm_status="n/a",
            srm_p_value=math.nan, end_met=False, end_reasons=(), error=str(exc),
        )
    return ExperimentSummary(
        **base, users=dict(report.users_per_variant), srm_status=report.srm_status,
        srm_p_value=report.srm_p_value, end_met=report.met, end_reasons=report.reasons,
        **_decision_fields(monitor),
    )


@dataclass(frozen=True)
class ExperimentDetail:
    """Everything the experiment page shows (and ``/api/experiments/{key}/results`` returns)."""

    record: ExperimentRecord
    info: ExperimentInfo
    result: MonitorResult | None
    daily: pd.DataFrame | None
    srm: SrmResult | None
    decision: Decision | None
    end: EndConditionReport | None
    rows: list[dict[str, Any]]
    sizes: list[dict[str, Any]]
    charts: list[str]
    needed: str
    audit: list[AuditEntry]
    no_data: str | None = None
    view: str = "cumulative"  # which charts: "cumulative" lift or "daily" values
    window: tuple[str, str] = ("", "")  # the start and end the reader asked for, as typed
    sample_chart: str = ""  # users per variant by day against the plan (with the charts only)
    breakdowns: tuple[Any, ...] = ()  # ExperimentBreakdown per declared ``breakdown_by`` attribute

    @property
    def breakdown_rows(self) -> list[dict[str, Any]]:
        """The breakdowns as rows of text: one per attribute × metric × slice × treatment variant."""
        from battleground.experiment.report import breakdown_rows

        return breakdown_rows(self.breakdowns)

    @functools.cached_property
    def table(self) -> ResultsTable | None:
        """The results table (one row per metric × variant, CI bars on a shared axis)."""
        if self.result is None:
            return None
        return results_table(self.result, alpha=self.decision.alpha if self.decision is not None else 0.05)

    @property
    def audit_lines(self) -> list[dict[str, Any]]:
        """The audit log newest first, each entry with a readable ``text``."""
        return list(reversed(audit_dicts(self.audit)))

    @property
    def decided_by(self) -> str:
        """The clause of the decision rule that decided, in words."""
        from battleground.experiment._decide import clause_text

        return clause_text(self.decision.clause) if self.decision is not None else ""

    @property
    def p_adj(self) -> str:
        """The label of the p-value the decision uses, e.g. ``p (Holm)``."""
        from battleground.experiment._decide import p_label

        return p_label(self.decision.correction if self.decision is not None else "holm")

    @staticmethod
    def clause_text(clause: str) -> str:
        from battleground.experiment._decide import clause_text

        return clause_text(clause)

    @property
    def methods(self) -> str:
        """The tests behind the lifts (e.g. ``welch``, ``msprt``)."""
        return ", ".join(sorted({r["method"] for r in self.rows if r["method"]}))


def _sizes(info: ExperimentInfo, users: Mapping[str, int]) -> list[dict[str, Any]]:
    planned = info.target_sample_size
    out = []
    for v in info.variants:
        actual = int(users.get(v.name, 0))
        share = min(actual / planned, 1.0) if planned else None
        out.append({
            "variant": v.name, "weight": v.weight, "is_control": v.is_control, "actual": actual,
            "planned": planned, "share": share,
            "progress": f"{actual / planned:.0%}" if planned else "—",
        })
    return out



VIEWS = ("cumulative", "daily")


def experiment_detail(
    settings: Settings,
    registry: Registry,
    key: Any,
    *,
    start: Any = None,
    end: Any = None,
    charts: bool = True,
    view: str = "cumulative",
    cache: SumsCache | None = None,
) -> ExperimentDetail:
    """Results, daily series, decision, sizes and audit log of one experiment (by id or name), over the
    window ``start``..``end`` (either may be blank; parsed by :func:`battleground._time.parse_instant`).

    ``view`` picks the charts: ``"cumulative"`` lift with its interval, or ``"daily"`` values. With
    ``cache``, the sums and the computed page are kept for the next request while the record and the
    event store are unchanged (the audit log is read each time).
    Raises :class:`~battleground.experiment.register.ExperimentNotFoundError` for an unknown key and
    ``ValueError`` (``StatsInputError``, ``WindowError``) for a bad time window or view.
    """
    from battleground.web._view_common import WindowError

    if view not in VIEWS:
        raise WindowError("view", f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    typed = ("" if start is None else str(start), "" if end is None else str(end))
    start, end = parse_window(start, end)
    record = registry.get(key)
    monitor = read_only_monitor(settings, cache)
    monitor.experiment_id_ = record.id
    info = monitor.experiment()
    audit = registry.audit_log(record.id)  # read each time: notes are appended without editing the record
    offer = getattr(monitor.backend, "sums_state", None)
    state = offer(info) if cache is not None and offer is not None else None
    if cache is None or state is None:
        return _detail(monitor, record, info, audit, start, end, typed, charts, view)
    # what the page shows depends on the record, the events and, for a plan with an end date, a
    # duration or a planned MDE, the clock: the computed page is kept per minute for those
    ec = record.end_conditions
    timed = record.end_at is not None or bool(ec.max_duration_days) or ec.mde is not None
    minute = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M") if timed else None
    from battleground.web._experiment_list import record_version

    key = ("detail", record.id, record_version(record), state, start, end, charts, view, minute)
    found: ExperimentDetail = cache.get(key, lambda: _detail(monitor, record, info, audit, start, end, typed,
                                                             charts, view))
    return dataclasses.replace(found, audit=audit, window=typed)


def _detail(monitor: Monitor, record: ExperimentRecord, info: ExperimentInfo, audit: list[AuditEntry],
            start: Any, end: Any, typed: tuple[str, str], charts: bool, view: str) -> ExperimentDetail:
    from battleground.experiment.report import (
        declared_breakdowns,
        lift_charts,
        needed_text,
        table_rows,
    )
    from battleground.stats import StatsInputError
    from battleground.web._experiment_charts import daily_charts, sample_size_chart

    try:
        result = monitor.result(start_dt=start, end_dt=end)
    except StatsInputError as exc:
        return ExperimentDetail(
            record=record, info=info, result=None, daily=None, srm=None, decision=None,
            end=_end_report(monitor, record), rows=[], sizes=_sizes(info, {}), charts=[], needed="",
            audit=audit, no_data=f"no results yet: {exc}", view=view, window=typed,
        )
    if not result.rows or max(r.users for r in result.rows) == 0:
        return ExperimentDetail(
            record=record, info=info, result=None, daily=None, srm=None, decision=None,
            end=_end_report(monitor, record), rows=[], sizes=_sizes(info, {}), charts=[], needed="",
            audit=audit, no_data="no user has been exposed yet"
            + (" in this window" if start is not None or end is not None else "")
            + " (results appear once 'exposure' events arrive)", view=view, window=typed,
        )
    daily = monitor.get_daily_result(start_dt=start, end_dt=end)
    decision = result.decision
    return ExperimentDetail(
        sample_chart=sample_size_chart(info, daily) if charts else "",
        record=record, info=info, result=result, daily=daily, srm=result.srm, decision=decision,
        end=_end_report(monitor, record), rows=table_rows(result), sizes=_sizes(info, result.users),
        charts=([] if not charts else lift_charts(info, daily) if view == "cumulative" else daily_charts(info, daily)),
        needed=needed_text(info, result.rows, decision, monitor.alpha), audit=audit,
        view=view, window=typed, breakdowns=declared_breakdowns(monitor, info, start, end),
    )


def result_records(result: MonitorResult | None) -> list[dict[str, Any]]:
    """A monitoring result's rows as JSON-ready records (the seed frame's columns)."""
    return frame_records(None if result is None else result.to_frame())



def _without_salt(value: Any) -> Any:
    """The salt decides assignment; it is not for display."""
    if isinstance(value, Mapping):
        return {k: _without_salt(v) for k, v in value.items() if k != "salt"}
    if isinstance(value, list | tuple):
        return [_without_salt(v) for v in value]
    return value


def audit_dicts(entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    return [
        {"id": e.id, "at": jsonable(e.at), "actor": e.actor, "action": e.action,
         "detail": jsonable(_without_salt(e.detail)), "text": audit_text(e)}
        for e in entries
    ]


def _names(items: Any) -> str:
    if not isinstance(items, list | tuple):
        return "—"
    return ", ".join(str(i.get("name", i)) if isinstance(i, Mapping) else str(i) for i in items)


def audit_text(entry: AuditEntry) -> str:
    """One readable line for an audit entry (status changes, edits, notes)."""
    d = entry.detail or {}
    if "message" in d:
        return str(d["message"])
    if "from" in d and "to" in d:
        text = f"{d['from']} → {d['to']}"
        return f"{text}: {d['reason']}" if d.get("reason") else text
    if "reason" in d:
        return str(d["reason"])
    if entry.action == "create" and isinstance(d.get("experiment"), Mapping):
        e = d["experiment"]
        return f"registered with variants {_names(e.get('variants'))}; metrics {_names(e.get('metrics'))}"
    if "old" in d and "new" in d and isinstance(d["old"], Mapping) and isinstance(d["new"], Mapping):
        changed = [f"{k}: {d['old'].get(k)!r} → {v!r}" for k, v in d["new"].items() if d["old"].get(k) != v]
        return "; ".join(changed) or "no change"
    text = json.dumps(jsonable(_without_salt(d)), ensure_ascii=False, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def record_dict(record: ExperimentRecord) -> dict[str, Any]:
    d = jsonable(record.to_dict())
    # the salts (the experiment's and its holdout's) decide assignment; they are not for display
    return dict(_without_salt(d))

