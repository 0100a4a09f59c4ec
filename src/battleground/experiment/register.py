"""The experiment registry: the seed's ``experiment.register`` module.

Two layers: :class:`Registry` (a clean API over SQLAlchemy models whose schema Alembic migrates on first
use) and the seed's facade :class:`RegisterExperiment` on top of it. The input rules live in
``_registry_rules`` (pure functions over records) and the SQLAlchemy repository (sessions, rows ↔ records,
audit log) in ``_registry_repo``; this module keeps the public operations and re-exports the seed's names.

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
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from battleground.experiment._records import (
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
from battleground.experiment._registry_repo import RegistryRepo
from battleground.experiment._registry_rules import (
    _NEXT_STATUS,
    _UNSET,
    _as_float,
    _check_metrics,
    _check_variants,
    _jsonable,
    _normalize_end_conditions,
    _normalize_metric,
    _normalize_variants,
    _now,
    parse_timestamp,
)
from battleground.settings import Settings, resolve_client  # resolve_client: the seed's path

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

# ---------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------


class Registry(RegistryRepo):
    """Experiments, their variants, metrics, end conditions and audit log, in SQLite or PostgreSQL.

    Args:
        url: ``sqlite:///path/registry.db`` or ``postgresql://…``; a :class:`Settings` or anything
            :func:`resolve_client` accepts works too. The schema is migrated on first use.

    Experiments are named by their integer id or their (unique) name wherever a ``key`` is asked for.
    """

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
                end_conditions.get("design", _UNSET), end_conditions.get("mde", _UNSET),
            )
        else:
            ec = end_conditions or EndConditions()
            ec = _normalize_end_conditions(ec.target_sample_size, ec.max_duration_days, ec.sequential, ec,
                                           ec.design, ec.mde)
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
                sequential=ec.sequential, design=ec.design, mde=ec.mde,
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
        design: Any = _UNSET,
        mde: Any = _UNSET,
        actor: str | None = None,
    ) -> ExperimentRecord:
        """Set some end conditions (the others keep their values; ``None`` clears one); ``design`` is
        the sequential design (:data:`~battleground.experiment._records.DESIGNS`), ``mde`` the planned
        relative MDE."""
        from battleground.storage._models import EndConditionRow

        with self._session() as session:
            row = self._row(session, key, lock=True)
            self._require_editable(row)
            ec_row = row.end_condition
            current = (
                EndConditions(ec_row.target_sample_size, ec_row.max_duration_days, ec_row.sequential,
                              ec_row.design or "msprt", ec_row.mde)
                if ec_row is not None else EndConditions()
            )
            new = _normalize_end_conditions(target_sample_size, max_duration_days, sequential, current, design, mde)
            if new == current:
                return self._record(row)
            if ec_row is None:
                row.end_condition = EndConditionRow(
                    target_sample_size=new.target_sample_size, max_duration_days=new.max_duration_days,
                    sequential=new.sequential, design=new.design, mde=new.mde,
                )
            else:
                ec_row.target_sample_size = new.target_sample_size
                ec_row.max_duration_days = new.max_duration_days
                ec_row.sequential = new.sequential
                ec_row.design = new.design
                ec_row.mde = new.mde
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
    "design": ("design", "sequential_design", "순차설계"),
    "mde": ("mde", "planned_mde", "최소검출효과"),
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
