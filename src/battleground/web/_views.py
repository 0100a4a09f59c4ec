"""What the dashboard shows, read from the registry, the event store, MLflow and the bandit outputs.

Views only read: end conditions are evaluated through a read-only source, so looking at a page never
stops an experiment or appends to its audit log.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground._time import TimeInputError, parse_instant
from battleground.errors import WebError

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

__all__ = [
    "BanditFile",
    "ExperimentDetail",
    "ExperimentSummary",
    "LeaderboardRow",
    "ReadOnlySource",
    "audit_text",
    "bandit_files",
    "experiment_detail",
    "experiment_summary",
    "jsonable",
    "leaderboard",
    "read_csv_table",
]

CHAMPION_MODEL = "churn"
CHAMPION_ALIAS = "champion"
CSV_ROW_LIMIT = 500


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
            "error": self.error,
        }


def _end_report(monitor: Monitor, record: ExperimentRecord) -> EndConditionReport:
    monitor.experiment_id_ = record.id
    return monitor.check_end_conditions(stop=False)


def experiment_summary(monitor: Monitor, record: ExperimentRecord) -> ExperimentSummary:
    """The list line of one experiment; a failure to read its events is shown, not raised."""
    base: dict[str, Any] = {
        "id": record.id, "name": record.name, "status": record.status, "owner": record.owner,
        "created_at": record.created_at, "started_at": record.started_at,
        "stopped_at": record.stopped_at, "variants": record.variant_names,
    }
    try:
        report = _end_report(monitor, record)
    except (ValueError, LookupError) as exc:
        return ExperimentSummary(
            **base, users={v: 0 for v in record.variant_names}, srm_status="n/a",
            srm_p_value=math.nan, end_met=False, end_reasons=(), error=str(exc),
        )
    return ExperimentSummary(
        **base, users=dict(report.users_per_variant), srm_status=report.srm_status,
        srm_p_value=report.srm_p_value, end_met=report.met, end_reasons=report.reasons,
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


def experiment_detail(
    settings: Settings,
    registry: Registry,
    key: Any,
    *,
    start: Any = None,
    end: Any = None,
    charts: bool = True,
) -> ExperimentDetail:
    """Results, daily series, decision, sizes and audit log of one experiment (by id or name).

    Raises :class:`~battleground.experiment.register.ExperimentNotFoundError` for an unknown key and
    ``ValueError`` (``StatsInputError``) for a bad time window.
    """
    from battleground.experiment.report import lift_charts, needed_text, table_rows
    from battleground.stats import StatsInputError

    start, end = parse_window(start, end)
    record = registry.get(key)
    monitor = read_only_monitor(settings)
    monitor.experiment_id_ = record.id
    info = monitor.experiment()
    audit = registry.audit_log(record.id)
    try:
        result = monitor.result(start_dt=start, end_dt=end)
    except StatsInputError as exc:
        return ExperimentDetail(
            record=record, info=info, result=None, daily=None, srm=None, decision=None,
            end=_end_report(monitor, record), rows=[], sizes=_sizes(info, {}), charts=[], needed="",
            audit=audit, no_data=f"no results yet: {exc}",
        )
    if not result.rows or max(r.users for r in result.rows) == 0:
        return ExperimentDetail(
            record=record, info=info, result=None, daily=None, srm=None, decision=None,
            end=_end_report(monitor, record), rows=[], sizes=_sizes(info, {}), charts=[], needed="",
            audit=audit, no_data="no user has been exposed yet"
            + (" in this window" if start is not None or end is not None else "")
            + " (results appear once 'exposure' events arrive)",
        )
    daily = monitor.get_daily_result(start_dt=start, end_dt=end)
    decision = result.decision
    return ExperimentDetail(
        record=record, info=info, result=result, daily=daily, srm=result.srm, decision=decision,
        end=_end_report(monitor, record), rows=table_rows(result), sizes=_sizes(info, result.users),
        charts=lift_charts(info, daily) if charts else [],
        needed=needed_text(info, result.rows, decision, monitor.alpha), audit=audit,
    )


def result_records(result: MonitorResult | None) -> list[dict[str, Any]]:
    """A monitoring result's rows as JSON-ready records (the seed frame's columns)."""
    return frame_records(None if result is None else result.to_frame())


def frame_records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """A monitoring frame as JSON-ready records."""
    if frame is None or frame.empty:
        return []
    return [jsonable(r) for r in frame.to_dict("records")]


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
    d.pop("salt", None)  # the salt decides assignment; it is not for display
    return d


# ---------------------------------------------------------------------------------------------------
# Model leaderboard (MLflow)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaderboardRow:
    run_id: str
    run_name: str
    experiment: str
    model_type: str
    batch: str | None
    started: dt.datetime | None
    metrics: dict[str, float]
    score: float
    champion: bool

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "run_id": self.run_id, "run_name": self.run_name, "experiment": self.experiment,
            "model_type": self.model_type, "batch": self.batch, "started": self.started,
            "metrics": self.metrics, "score": self.score, "champion": self.champion,
        })


@dataclass(frozen=True)
class Leaderboard:
    rows: list[LeaderboardRow]
    metric_names: list[str]
    champion: dict[str, Any] | None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [r.to_dict() for r in self.rows], "metrics": list(self.metric_names),
            "champion": jsonable(self.champion), "message": self.message,
        }


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    return None


_LEAD_METRICS = ("validation_score", "valid_roc_auc", "valid_pr_auc", "valid_f1", "valid_accuracy")


def leaderboard(settings: Settings, *, model_name: str = CHAMPION_MODEL) -> Leaderboard:
    """Model runs of every MLflow experiment, best validation score first, the champion marked."""
    path = _sqlite_path(settings.mlflow_uri)
    if path is not None and not path.exists():
        return Leaderboard([], [], None, message=(
            "no MLflow store yet: train models with `battleground model train` (or `make demo`) and reload"
        ))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    runs: list[Any] = []
    if experiments:
        token = None
        while True:
            page = client.search_runs(list(experiments), max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                break
    champion: dict[str, Any] | None = None
    try:
        mv = client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
        champion = {"name": model_name, "alias": CHAMPION_ALIAS, "version": str(mv.version), "run_id": mv.run_id}
    except Exception:  # MlflowException when there is no such model or alias: no champion yet
        champion = None
    rows = []
    for run in runs:
        tags = run.data.tags
        if tags.get("battleground.kind") == "trial" or tags.get("mlflow.parentRunId"):
            continue
        metrics = {k: float(v) for k, v in run.data.metrics.items()}
        score = metrics.get("validation_score", math.nan)
        started = dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC) if run.info.start_time else None
        rows.append(LeaderboardRow(
            run_id=run.info.run_id, run_name=run.info.run_name or run.info.run_id[:8],
            experiment=experiments.get(run.info.experiment_id, run.info.experiment_id),
            model_type=tags.get("model_type") or run.data.params.get("model_type") or "—",
            batch=tags.get("battleground.batch"), started=started, metrics=metrics, score=score,
            champion=champion is not None and champion["run_id"] == run.info.run_id,
        ))
    rows.sort(key=lambda r: (not math.isfinite(r.score), -r.score if math.isfinite(r.score) else 0.0))
    present = {k for r in rows for k in r.metrics}
    names = [m for m in _LEAD_METRICS if m in present]
    names += sorted(k for k in present if k.startswith("valid_") and k not in names)
    names += [m for m in ("fit_seconds",) if m in present]
    message = None if rows else "the MLflow store has no model runs yet"
    return Leaderboard(rows, names, champion, message)


def leaderboard_chart(board: Leaderboard) -> str:
    """A bar chart of the validation score per run (champion highlighted), as an HTML div."""
    import plotly.graph_objects as go

    rows = [r for r in board.rows if math.isfinite(r.score)][:30]
    if not rows:
        return ""
    fig = go.Figure(go.Bar(
        x=[f"{r.model_type} · {r.run_name}" for r in rows], y=[r.score for r in rows],
        marker_color=["#1e8e3e" if r.champion else "#1a73e8" for r in rows],
        hovertext=[r.run_id for r in rows],
    ))
    fig.update_layout(
        title="validation score by run (green: champion)", height=320, template="plotly_white",
        margin={"l": 40, "r": 20, "t": 50, "b": 60},
    )
    from battleground._html import chart

    return chart(fig)


# ---------------------------------------------------------------------------------------------------
# Bandit battles and OPE tables (files under <home>/bandit)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BanditFile:
    """A summary found under ``<home>/bandit``: a CSV table, a JSON summary or an HTML report."""

    path: str  # relative to the bandit folder, with forward slashes
    kind: str  # "csv", "json" or "html"
    size: int
    modified: dt.datetime
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    total_rows: int = 0
    text: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "path": self.path, "kind": self.kind, "size": self.size, "modified": self.modified,
            "columns": self.columns, "rows": self.rows, "total_rows": self.total_rows,
            "text": self.text, "error": self.error,
        })


def bandit_root(settings: Settings) -> Path:
    return settings.home / "bandit"


def _walk(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and (
            path.suffix.lower() in (".csv", ".json") or path.name.lower() == "report.html"
        ):
            yield path


def read_csv_table(path: Path, limit: int = CSV_ROW_LIMIT) -> tuple[list[str], list[list[str]], int]:
    """Header, the first ``limit`` rows and the row count of a CSV file (numbers shortened)."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        rows: list[list[str]] = []
        total = 0
        for raw in reader:
            total += 1
            if len(rows) < limit:
                rows.append([_short_number(c) for c in raw])
    return header, rows, total


def _short_number(text: str) -> str:
    try:
        x = float(text)
    except ValueError:
        return text
    if text.strip().lstrip("+-").isdigit() or not math.isfinite(x):
        return text
    return f"{x:.6g}"


def bandit_files(settings: Settings, *, with_content: bool = True) -> list[BanditFile]:
    """Every ``*.csv``, ``*.json`` and ``report.html`` under ``<home>/bandit`` (recursively)."""
    root = bandit_root(settings)
    out = []
    for path in _walk(root):
        stat = path.stat()
        rel = path.relative_to(root).as_posix()
        kind = "html" if path.suffix.lower() == ".html" else path.suffix.lower().lstrip(".")
        modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
        info: dict[str, Any] = {"path": rel, "kind": kind, "size": stat.st_size, "modified": modified}
        if with_content:
            try:
                if kind == "csv":
                    columns, rows, total = read_csv_table(path)
                    info.update(columns=columns, rows=rows, total_rows=total)
                elif kind == "json":
                    data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
                    info["text"] = json.dumps(data, indent=2, ensure_ascii=False, default=str)[:20000]
            except (OSError, ValueError, csv.Error) as exc:
                # the error names the file by its place under <home>/bandit, never by its full path
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                info["error"] = f"could not read {rel}: {reason}"
        out.append(BanditFile(**info))
    return out


def bandit_file_path(settings: Settings, relative: str) -> Path | None:
    """The file ``relative`` names under ``<home>/bandit`` if it is one the page lists, else ``None``
    (no way out of the folder: ``..``, absolute paths and links are refused)."""
    root = bandit_root(settings).resolve()
    try:
        candidate = (root / relative).resolve()
    except (OSError, ValueError):
        return None
    if root not in candidate.parents or not candidate.is_file():
        return None
    if candidate.suffix.lower() not in (".csv", ".json") and candidate.name.lower() != "report.html":
        return None
    return candidate
