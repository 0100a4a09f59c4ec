"""The experiment registry: the seed's ``experiment.register`` module.

Two layers: :class:`Registry` (a clean API over SQLAlchemy models whose schema Alembic migrates on first
use) and the seed's facade :class:`RegisterExperiment` on top of it.

Example (the seed's example; ``client=`` takes a folder, a database URL or a bare PostgreSQL host):

    >>> import tempfile
    >>> from battleground.experiment.register import RegisterExperiment
    >>> client = RegisterExperiment(client=tempfile.mkdtemp())  # or client='127.0.0.1' (PostgreSQL)
    >>> exp = client.add_experiment(meta={"name": "Galileo신규모델", "실험시작일": "2022-03-05"})
    >>> exp.status, exp.start_at.date().isoformat(), [v.name for v in exp.variants]
    ('draft', '2022-03-05', ['control', 'treatment'])
    >>> client.add_end_condition({"목표samplesize": 100}).end_conditions.target_sample_size
    100

Rules (each violation raises :class:`RegistryRuleError` naming the rule and the value, and changes
nothing): status moves draft → running → stopped → archived only; variants, weights, traffic and salt are
frozen once running; weights sum to 1; exactly one control; names unique; archived experiments are
read-only. Every status change and edit is appended to the audit log.
"""

from __future__ import annotations

import builtins
import datetime as dt
import math
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from battleground._redact import redact_url
from battleground.experiment._records import (
    DIRECTIONS,
    METRIC_KINDS,
    STATUSES,
    AuditEntry,
    EndConditions,
    ExperimentNotFoundError,
    ExperimentRecord,
    MetricRecord,
    RegistryError,
    RegistryRuleError,
    VariantRecord,
)
from battleground.settings import Settings, resolve_client  # resolve_client: the seed's path

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from battleground.storage._models import ExperimentRow

__all__ = [
    "AuditEntry",
    "EndConditions",
    "ExperimentNotFoundError",
    "ExperimentRecord",
    "MetricRecord",
    "RegisterExperiment",
    "Registry",
    "RegistryError",
    "RegistryRuleError",
    "VariantRecord",
    "parse_timestamp",
    "resolve_client",
]

_NEXT_STATUS = {"draft": "running", "running": "stopped", "stopped": "archived"}
_WEIGHT_TOLERANCE = 1e-9
_UNSET: Any = object()


# ---------------------------------------------------------------------------------------------------
# client= → Settings
# ---------------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------------------------------


def parse_timestamp(value: Any, field: str) -> dt.datetime | None:
    """A naive UTC datetime from a datetime, date or ISO string (aware values are converted to UTC)."""
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime.combine(value, dt.time())
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise RegistryError(
                f"{field} must be an ISO date or datetime like '2022-03-05', got {value!r}"
            ) from exc
    else:
        raise RegistryError(f"{field} must be a date, datetime or ISO string, got {value!r}")
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, VariantRecord | MetricRecord | EndConditions):
        return _jsonable(value.__dict__)
    return value


def _normalize_variants(variants: Any) -> list[VariantRecord]:
    """Variants from records, dicts, ``{name: weight}`` or plain names (equal weights, first = control)."""
    if variants is None:
        variants = ["control", "treatment"]
    if isinstance(variants, Mapping):
        return [
            VariantRecord(str(k), _as_float(w, f"weight of variant {k!r}"), i == 0)
            for i, (k, w) in enumerate(variants.items())
        ]
    if isinstance(variants, str) or not isinstance(variants, Iterable):
        raise RegistryError(
            f"variants must be a list of names, dicts or a {{name: weight}} mapping, got {variants!r}"
        )
    items = list(variants)
    if all(isinstance(v, str) for v in items):
        n = len(items)
        return [VariantRecord(v, 1.0 / n if n else 0.0, i == 0) for i, v in enumerate(items)]
    out = []
    # Control flags given for any variant are taken as given (so zero or two controls break the rule);
    # without any, the first variant is the control.
    explicit_control = any(
        isinstance(v, VariantRecord) or (isinstance(v, Mapping) and ("is_control" in v or "control" in v))
        for v in items
    )
    for i, v in enumerate(items):
        if isinstance(v, VariantRecord):
            out.append(v)
        elif isinstance(v, Mapping):
            unknown = set(v) - {"name", "weight", "is_control", "control"}
            if unknown:
                raise RegistryError(
                    f"variant {v!r} has unknown key(s) {sorted(unknown)}; use name, weight, is_control"
                )
            if "name" not in v:
                raise RegistryError(f"variant {v!r} needs a 'name'")
            weight = v.get("weight", 1.0 / len(items))
            control = bool(v.get("is_control", v.get("control", False))) if explicit_control else i == 0
            out.append(VariantRecord(str(v["name"]), _as_float(weight, f"weight of variant {v['name']!r}"), control))
        else:
            raise RegistryError(f"a variant must be a name, a dict or a VariantRecord, got {v!r}")
    return out


def _as_float(value: Any, field: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{field} must be a number, got {value!r}") from exc


def _check_variants(variants: Sequence[VariantRecord]) -> None:
    names = [v.name for v in variants]
    if len(variants) < 2:
        raise RegistryRuleError(
            "at least two variants", names, "an A/B test needs a control and at least one treatment"
        )
    for v in variants:
        if not v.name.strip():
            raise RegistryRuleError("variant names non-empty", v.name, "give every variant a name")
        if not (math.isfinite(v.weight) and 0.0 < v.weight <= 1.0):
            raise RegistryRuleError(
                "weights in (0, 1]", v.weight, f"variant {v.name!r} needs a weight between 0 and 1"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RegistryRuleError("unique variant names", duplicates, "rename the duplicated variants")
    total = sum(v.weight for v in variants)
    if abs(total - 1.0) > _WEIGHT_TOLERANCE:
        raise RegistryRuleError(
            "weights sum to 1", total,
            f"weights {[v.weight for v in variants]} sum to {total:.12g}; make them sum to 1",
        )
    controls = [v.name for v in variants if v.is_control]
    if len(controls) != 1:
        raise RegistryRuleError(
            "exactly one control", controls, "mark exactly one variant with is_control=True"
        )


def _normalize_metric(metric: Any) -> MetricRecord:
    if isinstance(metric, MetricRecord):
        record = metric
    elif isinstance(metric, Mapping):
        allowed = {"name", "kind", "numerator", "denominator", "direction", "guardrail", "primary",
                   "conversion_window_days", "cuped_lookback_days",
                   "margin", "margin_relative"}
        unknown = set(metric) - allowed
        if unknown:
            raise RegistryError(f"metric {metric!r} has unknown key(s) {sorted(unknown)}; use {sorted(allowed)}")
        missing = {"name", "kind", "numerator"} - set(metric)
        if missing:
            raise RegistryError(f"metric {metric!r} needs {sorted(missing)}")
        record = MetricRecord(
            name=str(metric["name"]), kind=str(metric["kind"]), numerator=str(metric["numerator"]),
            denominator=None if metric.get("denominator") is None else str(metric["denominator"]),
            direction=str(metric.get("direction", "increase")),
            guardrail=bool(metric.get("guardrail", False)), primary=bool(metric.get("primary", False)),
            conversion_window_days=_days(metric, "conversion_window_days", None),
            cuped_lookback_days=_days(metric, "cuped_lookback_days", 14.0),
            margin=metric.get("margin"), margin_relative=metric.get("margin_relative", True),
        )
    else:
        raise RegistryError(f"a metric must be a dict or a MetricRecord, got {metric!r}")
    if not record.name.strip():
        raise RegistryRuleError("metric names non-empty", record.name, "give the metric a name")
    if record.kind not in METRIC_KINDS:
        raise RegistryRuleError("metric kind", record.kind, f"kind must be one of {list(METRIC_KINDS)}")
    if record.direction not in DIRECTIONS:
        raise RegistryRuleError(
            "metric direction", record.direction, f"direction must be one of {list(DIRECTIONS)}"
        )
    if not record.numerator.strip():
        raise RegistryRuleError("numerator event type", record.numerator, "name the numerator event type")
    if record.kind == "ratio" and not record.denominator:
        raise RegistryRuleError(
            "ratio metrics need a denominator", record.denominator,
            f"metric {record.name!r} is a ratio: give denominator= (e.g. 'impression' for CTR)",
        )
    if record.kind != "ratio" and record.denominator:
        raise RegistryRuleError(
            "only ratio metrics have a denominator", record.denominator,
            f"metric {record.name!r} is a {record.kind}: drop denominator= or use kind='ratio'",
        )
    window, lookback = record.conversion_window_days, record.cuped_lookback_days
    if window is not None and not (isinstance(window, int | float) and 0 < window <= 3650):
        raise RegistryRuleError(
            "conversion window in (0, 3650] days", window,
            f"metric {record.name!r}: give conversion_window_days > 0 (e.g. 7), or None for no window",
        )
    if lookback is not None and not (isinstance(lookback, int | float) and 0 <= lookback <= 3650):
        raise RegistryRuleError(
            "CUPED lookback in [0, 3650] days", lookback,
            f"metric {record.name!r}: give cuped_lookback_days >= 0 (default 14), or None for no covariate",
        )
    return _checked_margin(record)


def _checked_margin(record: MetricRecord) -> MetricRecord:
    """A guardrail's non-inferiority margin, validated (only guardrails have one)."""
    from battleground.experiment._decide import GuardrailMargin, MarginError

    if record.margin is None:
        if not isinstance(record.margin_relative, bool):
            raise MarginError(
                f"margin_relative of metric {record.name!r} must be True or False, got {record.margin_relative!r}"
            )
        return record
    if not record.guardrail:
        raise MarginError(
            f"metric {record.name!r} has margin={record.margin!r} but is not a guardrail; only guardrails "
            "have a non-inferiority margin: set guardrail=True or drop margin="
        )
    m = GuardrailMargin.checked(record.name, record.margin, record.margin_relative)
    return replace(record, margin=m.margin, margin_relative=m.relative)


def _days(metric: Mapping[str, Any], key: str, default: float | None) -> float | None:
    """A metric's optional number of days (``None`` stays ``None``)."""
    value = metric.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RegistryRuleError(f"{key} is a number of days", value, f"give {key} as a number (e.g. 7) or None")
    return float(value)


def _check_metrics(metrics: Sequence[MetricRecord]) -> None:
    names = [m.name for m in metrics]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RegistryRuleError("unique metric names", duplicates, "rename the duplicated metrics")


def _normalize_end_conditions(
    target_sample_size: Any, max_duration_days: Any, sequential: Any, current: EndConditions
) -> EndConditions:
    size = current.target_sample_size if target_sample_size is _UNSET else target_sample_size
    days = current.max_duration_days if max_duration_days is _UNSET else max_duration_days
    seq = current.sequential if sequential is _UNSET else sequential
    if size is not None:
        if isinstance(size, bool) or not float(size).is_integer() or int(size) <= 0:
            raise RegistryRuleError(
                "target sample size is a positive integer", size, "give the users per variant, e.g. 1000"
            )
        size = int(size)
    if days is not None:
        days = _as_float(days, "max_duration_days")
        if not (math.isfinite(days) and days > 0):
            raise RegistryRuleError("maximum duration is positive", days, "give a number of days > 0")
    if isinstance(seq, str):
        if seq.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise RegistryError(f"sequential must be true or false, got {seq!r}")
        seq = seq.strip().lower() in ("true", "1", "yes")
    return EndConditions(size, days, bool(seq))


# ---------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------


class Registry:
    """Experiments, their variants, metrics, end conditions and audit log, in SQLite or PostgreSQL.

    Args:
        url: ``sqlite:///path/registry.db`` or ``postgresql://…``; a :class:`Settings` or anything
            :func:`resolve_client` accepts works too. The schema is migrated on first use.

    Experiments are named by their integer id or their (unique) name wherever a ``key`` is asked for.
    """

    def __init__(self, url: Any = None) -> None:
        if not (isinstance(url, str) and url.startswith(("sqlite:", "postgresql", "postgres://"))):
            url = resolve_client(url).registry_url
        self.url: str = url
        from battleground.storage._db import registry_engine

        self._engine = registry_engine(url)

    def __repr__(self) -> str:
        return f"Registry({redact_url(self.url)!r})"

    # ------------------------------------------------------------------ sessions and lookups
    def _session(self) -> Session:
        from sqlalchemy.orm import Session

        return Session(self._engine, expire_on_commit=False)

    def _row(self, session: Session, key: Any, *, lock: bool = False) -> ExperimentRow:
        from sqlalchemy import select

        from battleground.storage._models import ExperimentRow

        if isinstance(key, ExperimentRecord):
            key = key.id
        query = select(ExperimentRow)
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise ExperimentNotFoundError(f"an experiment is named by its id or its name, got {key!r}")
        if isinstance(key, int) or key.strip().isdigit():
            query = query.where(ExperimentRow.id == int(key))
        else:
            query = query.where(ExperimentRow.name == key)
        if lock:
            query = query.with_for_update()
        row = session.scalars(query).first()
        if row is None:
            raise ExperimentNotFoundError(
                f"no experiment {key!r} in the registry at {redact_url(self.url)}; "
                "`battleground experiment list` shows the registered ones"
            )
        return row

    @staticmethod
    def _record(row: ExperimentRow) -> ExperimentRecord:
        ec = row.end_condition
        return ExperimentRecord(
            id=row.id, name=row.name, status=row.status, salt=row.salt, traffic=row.traffic,
            variants=tuple(VariantRecord(v.name, v.weight, v.is_control) for v in row.variants),
            metrics=tuple(
                MetricRecord(m.name, m.kind, m.numerator, m.denominator, m.direction, m.guardrail, m.primary,
                             conversion_window_days=m.conversion_window_days,
                             cuped_lookback_days=m.cuped_lookback_days,
                             margin=m.margin, margin_relative=bool(m.margin_relative))
                for m in row.metrics
            ),
            end_conditions=EndConditions(ec.target_sample_size, ec.max_duration_days, ec.sequential)
            if ec is not None else EndConditions(),
            description=row.description, hypothesis=row.hypothesis, owner=row.owner,
            start_at=row.start_at, end_at=row.end_at, started_at=row.started_at,
            stopped_at=row.stopped_at, archived_at=row.archived_at, stop_reason=row.stop_reason,
            metadata=dict(row.meta or {}), created_at=row.created_at, updated_at=row.updated_at,
        )

    @staticmethod
    def _audit(session: Session, row: ExperimentRow, action: str, detail: Mapping[str, Any], actor: str | None) -> None:
        from battleground.storage._models import AuditRow

        session.add(AuditRow(
            experiment_id=row.id, at=_now(), actor=actor or _default_actor(), action=action,
            detail=_jsonable(dict(detail)),
        ))

    @staticmethod
    def _require_editable(row: ExperimentRow) -> None:
        if row.status == "archived":
            raise RegistryRuleError(
                "archived experiments are read-only", row.name, "create a new experiment instead"
            )

    # ------------------------------------------------------------------ create and read
    def create_experiment(
        self,
        name: str,
        *,
        variants: Any = None,
        metrics: Iterable[Any] = (),
        description: str | None = None,
        hypothesis: str | None = None,
        owner: str | None = None,
        start_at: Any = None,
        end_at: Any = None,
        metadata: Mapping[str, Any] | None = None,
        salt: str | None = None,
        traffic: float = 1.0,
        end_conditions: EndConditions | Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> ExperimentRecord:
        """Register a new experiment in ``draft`` status.

        Args:
            name: unique name (not all digits, so it cannot be mistaken for an id).
            variants: names (equal weights, the first is the control), ``{name: weight}`` (first is the
                control) or dicts ``{"name", "weight", "is_control"}``; default control/treatment 50/50.
            metrics: dicts or :class:`MetricRecord` (name, kind, numerator, denominator, direction,
                guardrail, primary).
            start_at, end_at: the planned window (dates, datetimes or ISO strings; UTC).
            salt: assignment salt; default a random 16-hex-digit string.
            traffic: fraction of users in the experiment, in (0, 1].
            end_conditions: :class:`EndConditions` or a dict with its fields.
        """
        from sqlalchemy.exc import IntegrityError

        from battleground.storage._models import (
            EndConditionRow,
            ExperimentRow,
            MetricRow,
            VariantRow,
        )

        if not isinstance(name, str) or not name.strip():
            raise RegistryRuleError("experiment names non-empty", name, "give the experiment a name")
        name = name.strip()
        if name.isdigit():
            raise RegistryRuleError(
                "names are not all digits", name, "digits name experiment ids; add a letter to the name"
            )
        variant_records = _normalize_variants(variants)
        _check_variants(variant_records)
        metric_records = [_normalize_metric(m) for m in metrics]
        _check_metrics(metric_records)
        start = parse_timestamp(start_at, "start_at")
        end = parse_timestamp(end_at, "end_at")
        if start is not None and end is not None and end <= start:
            raise RegistryRuleError("end after start", end.isoformat(), f"end_at must be after start_at {start.isoformat()}")
        traffic = _as_float(traffic, "traffic")
        if not (0.0 < traffic <= 1.0):
            raise RegistryRuleError("traffic in (0, 1]", traffic, "give the fraction of users to include")
        if salt is not None and (not isinstance(salt, str) or not salt or len(salt) > 64):
            raise RegistryRuleError("salt is 1-64 characters", salt, "give a short string or leave it out")
        if isinstance(end_conditions, Mapping):
            ec = _normalize_end_conditions(
                end_conditions.get("target_sample_size"), end_conditions.get("max_duration_days"),
                end_conditions.get("sequential", False), EndConditions(),
            )
        else:
            ec = end_conditions or EndConditions()
            ec = _normalize_end_conditions(ec.target_sample_size, ec.max_duration_days, ec.sequential, ec)
        now = _now()
        with self._session() as session:
            row = ExperimentRow(
                name=name, description=description, hypothesis=hypothesis, owner=owner, status="draft",
                start_at=start, end_at=end, meta=_jsonable(dict(metadata or {})),
                salt=salt or secrets.token_hex(8), traffic=traffic, created_at=now, updated_at=now,
            )
            row.variants = [
                VariantRow(name=v.name, weight=v.weight, is_control=v.is_control, position=i)
                for i, v in enumerate(variant_records)
            ]
            row.metrics = [
                MetricRow(
                    name=m.name, kind=m.kind, numerator=m.numerator, denominator=m.denominator,
                    direction=m.direction, guardrail=m.guardrail, primary=m.primary, position=i,
                    conversion_window_days=m.conversion_window_days, cuped_lookback_days=m.cuped_lookback_days, margin=m.margin,
                    margin_relative=m.margin_relative,
                )
                for i, m in enumerate(metric_records)
            ]
            row.end_condition = EndConditionRow(
                target_sample_size=ec.target_sample_size, max_duration_days=ec.max_duration_days,
                sequential=ec.sequential,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:
                session.rollback()
                raise RegistryRuleError(
                    "unique experiment name", name, "an experiment with this name exists; choose another"
                ) from exc
            record = self._record(row)
            self._audit(session, row, "create", {"experiment": record.to_dict()}, actor)
            session.commit()
            return record

    def get(self, key: Any) -> ExperimentRecord:
        """The experiment with this id or name (:class:`ExperimentNotFoundError` when there is none)."""
        with self._session() as session:
            return self._record(self._row(session, key))

    def list(self, status: str | None = None) -> list[ExperimentRecord]:
        """All experiments (optionally only those with ``status``), oldest first."""
        from sqlalchemy import select

        from battleground.storage._models import ExperimentRow

        if status is not None and status not in STATUSES:
            raise RegistryError(f"status must be one of {list(STATUSES)}, got {status!r}")
        query = select(ExperimentRow).order_by(ExperimentRow.id)
        if status is not None:
            query = query.where(ExperimentRow.status == status)
        with self._session() as session:
            return [self._record(r) for r in session.scalars(query)]

    # ------------------------------------------------------------------ status changes
    def _transition(self, key: Any, to: str, actor: str | None, reason: str | None = None,
                    at: Any = None) -> ExperimentRecord:
        with self._session() as session:
            row = self._row(session, key, lock=True)
            if _NEXT_STATUS.get(row.status) != to:
                raise RegistryRuleError(
                    "status moves draft → running → stopped → archived only", f"{row.status} → {to}",
                    f"experiment {row.name!r} is {row.status}"
                    + (f"; it can only become {_NEXT_STATUS[row.status]}" if row.status in _NEXT_STATUS else ""),
                )
            if to == "running":
                _check_variants([VariantRecord(v.name, v.weight, v.is_control) for v in row.variants])
            now = _now()
            when = now if at is None else parse_timestamp(at, "at")
            before = row.status
            row.status = to
            row.updated_at = now
            if to == "running":
                row.started_at = when
            elif to == "stopped":
                row.stopped_at = when
                row.stop_reason = reason
            else:
                row.archived_at = when
            detail: dict[str, Any] = {"from": before, "to": to}
            if reason is not None:
                detail["reason"] = reason
            self._audit(session, row, {"running": "start", "stopped": "stop", "archived": "archive"}[to], detail, actor)
            session.commit()
            return self._record(row)

    def start(self, key: Any, *, actor: str | None = None, at: Any = None) -> ExperimentRecord:
        """draft → running; variants, weights, traffic and salt are frozen from now on. ``at`` (UTC)
        records another start time than now, e.g. a simulation's calendar."""
        return self._transition(key, "running", actor, at=at)

    def stop(self, key: Any, reason: str, *, actor: str | None = None, at: Any = None) -> ExperimentRecord:
        """running → stopped, with the reason in the audit log; ``at`` as for :meth:`start`."""
        if not isinstance(reason, str) or not reason.strip():
            raise RegistryError("stop needs a reason (it goes to the audit log), e.g. reason='target reached'")
        return self._transition(key, "stopped", actor, reason.strip(), at=at)

    def archive(self, key: Any, *, actor: str | None = None) -> ExperimentRecord:
        """stopped → archived; the experiment becomes read-only."""
        return self._transition(key, "archived", actor)

    # ------------------------------------------------------------------ edits
    def update(
        self,
        key: Any,
        *,
        name: Any = _UNSET,
        description: Any = _UNSET,
        hypothesis: Any = _UNSET,
        owner: Any = _UNSET,
        start_at: Any = _UNSET,
        end_at: Any = _UNSET,
        metadata: Any = _UNSET,
        traffic: Any = _UNSET,
        salt: Any = _UNSET,
        actor: str | None = None,
    ) -> ExperimentRecord:
        """Edit descriptive fields (``metadata`` is merged). ``traffic`` and ``salt`` only in draft."""
        from sqlalchemy.exc import IntegrityError

        with self._session() as session:
            row = self._row(session, key, lock=True)
            self._require_editable(row)
            changes: dict[str, Any] = {}

            def change(field: str, new: Any) -> None:
                old = getattr(row, field)
                if old != new:
                    changes[field] = {"old": old, "new": new}
                    setattr(row, field, new)

            if name is not _UNSET:
                if not isinstance(name, str) or not name.strip() or name.strip().isdigit():
                    raise RegistryRuleError("experiment names non-empty and not all digits", name, "choose another name")
                change("name", name.strip())
            for field, value in (("description", description), ("hypothesis", hypothesis), ("owner", owner)):
                if value is not _UNSET:
                    change(field, value)
            new_start = row.start_at if start_at is _UNSET else parse_timestamp(start_at, "start_at")
            new_end = row.end_at if end_at is _UNSET else parse_timestamp(end_at, "end_at")
            if new_start is not None and new_end is not None and new_end <= new_start:
                raise RegistryRuleError("end after start", new_end.isoformat(), f"end_at must be after start_at {new_start.isoformat()}")
            change("start_at", new_start)
            change("end_at", new_end)
            if metadata is not _UNSET:
                if not isinstance(metadata, Mapping):
                    raise RegistryError(f"metadata must be a mapping, got {metadata!r}")
                change("meta", {**(row.meta or {}), **_jsonable(dict(metadata))})
            for field, value in (("traffic", traffic), ("salt", salt)):
                if value is _UNSET:
                    continue
                if row.status != "draft":
                    raise RegistryRuleError(
                        f"{field} frozen once running", value, f"experiment {row.name!r} is {row.status}"
                    )
                if field == "traffic":
                    value = _as_float(value, "traffic")
                    if not (0.0 < value <= 1.0):
                        raise RegistryRuleError("traffic in (0, 1]", value, "give the fraction of users to include")
                elif not isinstance(value, str) or not value or len(value) > 64:
                    raise RegistryRuleError("salt is 1-64 characters", value, "give a short string")
                change(field, value)
            if not changes:
                return self._record(row)
            row.updated_at = _now()
            self._audit(session, row, "edit", changes, actor)
            try:
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                raise RegistryRuleError(
                    "unique experiment name", name, "an experiment with this name exists; choose another"
                ) from exc
            return self._record(row)

    def set_variants(self, key: Any, variants: Any, *, actor: str | None = None) -> ExperimentRecord:
        """Replace the variants (draft only: they are frozen once running)."""
        from battleground.storage._models import VariantRow

        records = _normalize_variants(variants)
        with self._session() as session:
            row = self._row(session, key, lock=True)
            if row.status != "draft":
                raise RegistryRuleError(
                    "variants and weights frozen once running", [v.name for v in records],
                    f"experiment {row.name!r} is {row.status}; create a new experiment to change them",
                )
            _check_variants(records)
            old = [VariantRecord(v.name, v.weight, v.is_control) for v in row.variants]
            row.variants = []
            session.flush()
            row.variants = [
                VariantRow(name=v.name, weight=v.weight, is_control=v.is_control, position=i)
                for i, v in enumerate(records)
            ]
            row.updated_at = _now()
            self._audit(session, row, "set_variants", {"old": old, "new": records}, actor)
            session.commit()
            return self._record(row)

    def add_metric(
        self,
        key: Any,
        name: str | Mapping[str, Any] | MetricRecord,
        kind: str = "proportion",
        numerator: str | None = None,
        denominator: str | None = None,
        *,
        direction: str = "increase",
        guardrail: bool = False,
        primary: bool = False,
        conversion_window_days: float | None = None,
        cuped_lookback_days: float | None = 14.0,
        margin: float | None = None,
        margin_relative: bool = True,
        actor: str | None = None,
    ) -> ExperimentRecord:
        """Add a metric (allowed until archived; the sums are computed from events at query time).

        A guardrail may declare ``margin`` (relative to control unless ``margin_relative=False``): the
        largest harm still called non-inferior by the decision rule."""
        from battleground.storage._models import MetricRow

        if isinstance(name, Mapping | MetricRecord):
            record = _normalize_metric(name)
        else:
            record = _normalize_metric({
                "name": name, "kind": kind, "numerator": numerator if numerator is not None else name,
                "denominator": denominator, "direction": direction, "guardrail": guardrail, "primary": primary,
                "conversion_window_days": conversion_window_days, "cuped_lookback_days": cuped_lookback_days,
                "margin": margin, "margin_relative": margin_relative,
            })
        with self._session() as session:
            row = self._row(session, key, lock=True)
            self._require_editable(row)
            _check_metrics([*(MetricRecord(m.name, m.kind, m.numerator) for m in row.metrics), record])
            row.metrics.append(MetricRow(
                name=record.name, kind=record.kind, numerator=record.numerator,
                denominator=record.denominator, direction=record.direction,
                guardrail=record.guardrail, primary=record.primary, position=len(row.metrics),
                conversion_window_days=record.conversion_window_days,
                cuped_lookback_days=record.cuped_lookback_days,
                margin=record.margin, margin_relative=record.margin_relative,
            ))
            row.updated_at = _now()
            self._audit(session, row, "add_metric", {"metric": record}, actor)
            session.commit()
            return self._record(row)

    def remove_metric(self, key: Any, name: str, *, actor: str | None = None) -> ExperimentRecord:
        """Remove a metric (draft only, so results already seen cannot silently lose a metric)."""
        with self._session() as session:
            row = self._row(session, key, lock=True)
            if row.status != "draft":
                raise RegistryRuleError(
                    "metrics removable only in draft", name, f"experiment {row.name!r} is {row.status}"
                )
            keep = [m for m in row.metrics if m.name != name]
            if len(keep) == len(row.metrics):
                raise ExperimentNotFoundError(f"experiment {row.name!r} has no metric {name!r}")
            row.metrics = keep
            row.updated_at = _now()
            self._audit(session, row, "remove_metric", {"metric": name}, actor)
            session.commit()
            return self._record(row)

    def set_end_conditions(
        self,
        key: Any,
        *,
        target_sample_size: Any = _UNSET,
        max_duration_days: Any = _UNSET,
        sequential: Any = _UNSET,
        actor: str | None = None,
    ) -> ExperimentRecord:
        """Set some end conditions (the others keep their values; ``None`` clears one)."""
        from battleground.storage._models import EndConditionRow

        with self._session() as session:
            row = self._row(session, key, lock=True)
            self._require_editable(row)
            ec_row = row.end_condition
            current = (
                EndConditions(ec_row.target_sample_size, ec_row.max_duration_days, ec_row.sequential)
                if ec_row is not None else EndConditions()
            )
            new = _normalize_end_conditions(target_sample_size, max_duration_days, sequential, current)
            if new == current:
                return self._record(row)
            if ec_row is None:
                row.end_condition = EndConditionRow(
                    target_sample_size=new.target_sample_size, max_duration_days=new.max_duration_days,
                    sequential=new.sequential,
                )
            else:
                ec_row.target_sample_size = new.target_sample_size
                ec_row.max_duration_days = new.max_duration_days
                ec_row.sequential = new.sequential
            row.updated_at = _now()
            self._audit(session, row, "set_end_conditions", {"old": current, "new": new}, actor)
            session.commit()
            return self._record(row)

    # ------------------------------------------------------------------ audit log
    def record(self, key: Any, action: str, message: str, *, actor: str | None = None) -> None:
        """Append a note (e.g. an SRM alert) to the experiment's audit log."""
        if not isinstance(action, str) or not action.strip():
            raise RegistryError("action must be a short non-empty word such as 'srm_alert'")
        with self._session() as session:
            row = self._row(session, key)
            self._audit(session, row, action.strip()[:64], {"message": message}, actor)
            session.commit()

    def audit_log(self, key: Any) -> builtins.list[AuditEntry]:
        """Every status change, edit and note of an experiment, oldest first."""
        from sqlalchemy import select

        from battleground.storage._models import AuditRow

        with self._session() as session:
            row = self._row(session, key)
            entries = session.scalars(
                select(AuditRow).where(AuditRow.experiment_id == row.id).order_by(AuditRow.id)
            )
            return [AuditEntry(e.id, e.experiment_id, e.at, e.actor, e.action, dict(e.detail)) for e in entries]


def _default_actor() -> str:
    try:
        return os.environ.get("BATTLEGROUND_ACTOR") or os.getlogin()
    except OSError:
        return os.environ.get("USER", "unknown")


# ---------------------------------------------------------------------------------------------------
# The seed's facade
# ---------------------------------------------------------------------------------------------------

def _key(text: str) -> str:
    return re.sub(r"[\s_\-]", "", text).lower()


# Accepted ``meta`` keys of add_experiment: English names and the seed's Korean ones.
META_KEYS: dict[str, tuple[str, ...]] = {
    "name": ("name", "experiment", "실험명", "실험이름", "이름"),
    "description": ("description", "설명", "실험설명"),
    "hypothesis": ("hypothesis", "가설"),
    "owner": ("owner", "담당자", "소유자"),
    "start_at": ("start_at", "start", "start_dt", "start_date", "실험시작일", "시작일"),
    "end_at": ("end_at", "end", "end_dt", "end_date", "실험종료일", "종료일"),
    "variants": ("variants", "실험군", "그룹"),
    "metrics": ("metrics", "지표"),
    "traffic": ("traffic", "트래픽"),
    "salt": ("salt",),
}
# Accepted keys of add_end_condition.
END_CONDITION_KEYS: dict[str, tuple[str, ...]] = {
    "target_sample_size": (
        "target_sample_size", "sample_size", "목표samplesize", "목표샘플사이즈", "목표표본크기", "목표표본수",
    ),
    "max_duration_days": ("max_duration_days", "max_days", "duration_days", "최대기간", "최대실험기간", "최대일수"),
    "sequential": ("sequential", "순차검정", "조기종료"),
}
_META_LOOKUP = {_key(alias): field for field, aliases in META_KEYS.items() for alias in aliases}
_END_LOOKUP = {_key(alias): field for field, aliases in END_CONDITION_KEYS.items() for alias in aliases}

DEFAULT_METRICS: tuple[MetricRecord, ...] = (
    MetricRecord("conversion", "proportion", "conversion", primary=True),
)


class RegisterExperiment:
    """The seed's registration facade over :class:`Registry`.

    Args:
        client: where the registry lives: a folder, a database URL, a bare PostgreSQL host, a
            :class:`Settings` or ``None`` (see :func:`resolve_client`).
        actor: who is registering (goes to the audit log); default ``$BATTLEGROUND_ACTOR`` or the login.

    ``add_experiment(meta=...)`` accepts the keys in :data:`META_KEYS` (English or Korean; other keys are
    kept verbatim in the experiment's metadata). Without ``variants`` the experiment gets control and
    treatment at 50/50; without ``metrics`` one primary proportion metric ``conversion`` counted from
    ``conversion`` events. ``add_end_condition`` accepts the keys in :data:`END_CONDITION_KEYS`.
    """

    def __init__(self, client: Any = None, *, actor: str | None = None) -> None:
        self.client = client
        self.actor = actor
        self.settings: Settings = resolve_client(client)
        self.registry = Registry(self.settings.registry_url)
        self.experiment_id_: int | None = None

    def add_experiment(self, meta: Mapping[str, Any] | None = None, **fields: Any) -> ExperimentRecord:
        """Register an experiment (draft) from a ``meta`` dict; it becomes this client's experiment."""
        given = {**dict(meta or {}), **fields}
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in given.items():
            field = _META_LOOKUP.get(_key(str(k)))
            if field is None:
                extra[str(k)] = v
            elif field in known:
                raise RegistryError(f"meta gives {field!r} twice (as {k!r} and another alias); keep one")
            else:
                known[field] = v
        if "name" not in known:
            raise RegistryError(
                "meta needs a name, e.g. meta={'name': 'Galileo신규모델', '실험시작일': '2022-03-05'}; "
                f"accepted keys: {sorted(a for aliases in META_KEYS.values() for a in aliases)}"
            )
        record = self.registry.create_experiment(
            str(known["name"]),
            variants=known.get("variants"),
            metrics=known.get("metrics", DEFAULT_METRICS),
            description=known.get("description"), hypothesis=known.get("hypothesis"),
            owner=known.get("owner"), start_at=known.get("start_at"), end_at=known.get("end_at"),
            metadata=extra, salt=known.get("salt"), traffic=known.get("traffic", 1.0), actor=self.actor,
        )
        self.experiment_id_ = record.id
        return record

    def put_experiment_id(self, experiment_id: Any) -> RegisterExperiment:
        """Work on an already registered experiment (by id or name)."""
        self.experiment_id_ = self.registry.get(experiment_id).id
        return self

    def _require(self) -> int:
        if self.experiment_id_ is None:
            raise RegistryError(
                "no experiment chosen: call add_experiment(meta=...) or put_experiment_id(...) first"
            )
        return self.experiment_id_

    def add_end_condition(self, condition: Mapping[str, Any] | None = None, **fields: Any) -> ExperimentRecord:
        """Set end conditions, e.g. ``{"목표samplesize": 100}`` or ``{"max_duration_days": 14}``."""
        given = {**dict(condition or {}), **fields}
        values: dict[str, Any] = {}
        for k, v in given.items():
            field = _END_LOOKUP.get(_key(str(k)))
            if field is None:
                raise RegistryError(
                    f"unknown end condition {k!r}; accepted: "
                    + ", ".join(f"{f} (or {', '.join(a for a in aliases if a != f)})" for f, aliases in END_CONDITION_KEYS.items())
                )
            values[field] = v
        return self.registry.set_end_conditions(self._require(), actor=self.actor, **values)

    def add_metric(self, metric: Mapping[str, Any] | None = None, **fields: Any) -> ExperimentRecord:
        """Add a metric: ``{"name", "kind", "numerator", "denominator", "direction", "guardrail", "primary",
        "conversion_window_days", "cuped_lookback_days"}``."""
        return self.registry.add_metric(self._require(), {**dict(metric or {}), **fields}, actor=self.actor)

    def set_variants(self, variants: Any) -> ExperimentRecord:
        return self.registry.set_variants(self._require(), variants, actor=self.actor)

    def start(self) -> ExperimentRecord:
        return self.registry.start(self._require(), actor=self.actor)

    def stop(self, reason: str) -> ExperimentRecord:
        return self.registry.stop(self._require(), reason, actor=self.actor)

    def get_experiment(self) -> ExperimentRecord:
        return self.registry.get(self._require())
