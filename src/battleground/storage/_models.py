"""SQLAlchemy 2 models of the experiment registry.

The schema itself is created by the Alembic migrations in ``storage/migrations`` (applied automatically on
first use by :func:`battleground.storage._db.registry_engine`); a test checks that these models and the
migrations agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class ExperimentRow(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    hypothesis: Mapped[str | None] = mapped_column(Text, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    # Planned window (what the seed calls 실험시작일); events outside it are rejected at ingest.
    start_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    end_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # Actual status changes.
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    archived_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # "metadata" is reserved on declarative classes, hence the attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)
    salt: Mapped[str] = mapped_column(String(64), nullable=False)
    traffic: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    # layers and holdouts (migration 0014): the project, the layer and the half-open range of its
    # 10,000 buckets the experiment owns (a holdout: its held-out buckets), the kind, and the holdout an
    # experiment was started behind (NULL: none)
    project: Mapped[str] = mapped_column(String(200), nullable=False, default="default", index=True)
    layer: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    range_start: Mapped[int | None] = mapped_column(Integer, nullable=True)
    range_end: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="experiment")
    holdout_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    variants: Mapped[list[VariantRow]] = relationship(
        back_populates="experiment", cascade="all, delete-orphan", order_by="VariantRow.position"
    )
    metrics: Mapped[list[MetricRow]] = relationship(
        back_populates="experiment", cascade="all, delete-orphan", order_by="MetricRow.position"
    )
    end_condition: Mapped[EndConditionRow | None] = relationship(
        back_populates="experiment", cascade="all, delete-orphan", uselist=False
    )
    holdout: Mapped[ExperimentRow | None] = relationship(
        primaryjoin="foreign(ExperimentRow.holdout_id) == remote(ExperimentRow.id)", viewonly=True, uselist=False
    )


class VariantRow(Base):
    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("experiment_id", "name", name="uq_variants_experiment_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    weight: Mapped[float] = mapped_column(Float, nullable=False)
    is_control: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    experiment: Mapped[ExperimentRow] = relationship(back_populates="variants")


class MetricRow(Base):
    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("experiment_id", "name", name="uq_metrics_experiment_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    numerator: Mapped[str] = mapped_column(String(200), nullable=False)
    denominator: Mapped[str | None] = mapped_column(String(200), nullable=True)
    direction: Mapped[str] = mapped_column(String(16), nullable=False, default="increase")
    guardrail: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    primary: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    conversion_window_days: Mapped[float | None] = mapped_column(Float, nullable=True)
    cuped_lookback_days: Mapped[float | None] = mapped_column(Float, nullable=True)
    # a guardrail's non-inferiority margin (migration 0004); NULL = none declared
    margin: Mapped[float | None] = mapped_column(Float, nullable=True)
    margin_relative: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # winsorisation (migration 0011): a quantile cap or a fixed cap of the per-user value; NULL = none
    cap_quantile: Mapped[float | None] = mapped_column(Float, nullable=True)
    cap_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    # a quantile metric's level (migration 0015); NULL for every other kind
    quantile: Mapped[float | None] = mapped_column(Float, nullable=True)

    experiment: Mapped[ExperimentRow] = relationship(back_populates="metrics")


class EndConditionRow(Base):
    __tablename__ = "end_conditions"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    target_sample_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_duration_days: Mapped[float | None] = mapped_column(Float, nullable=True)
    sequential: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # the sequential design and the planned relative MDE (migration 0006); NULL = mSPRT / none
    design: Mapped[str | None] = mapped_column(String(32), nullable=True)
    mde: Mapped[float | None] = mapped_column(Float, nullable=True)

    experiment: Mapped[ExperimentRow] = relationship(back_populates="end_condition")


class AuditRow(Base):
    """Append-only: the registry only ever inserts here (an ORM guard refuses updates and deletes)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False, index=True
    )
    at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class LedgerRow(Base):
    """The agreement ledger (migration 0005): one candidate's offline estimate by one estimator, beside
    the online value its experiment observed (NULL until the experiment is closed in the ledger)."""

    __tablename__ = "ope_ledger"
    __table_args__ = (UniqueConstraint("experiment_id", "candidate", "estimator", name="uq_ope_ledger_entry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False, index=True
    )
    candidate: Mapped[str] = mapped_column(String(200), nullable=False)
    estimator: Mapped[str] = mapped_column(String(64), nullable=False)
    offline_value: Mapped[float] = mapped_column(Float, nullable=False)
    offline_low: Mapped[float] = mapped_column(Float, nullable=False)
    offline_high: Mapped[float] = mapped_column(Float, nullable=False)
    alpha: Mapped[float] = mapped_column(Float, nullable=False)
    n_rounds: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    online_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    online_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    online_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    online_n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class SourceRow(Base):
    """Where an experiment's events live when they are read in place (migration 0007)."""

    __tablename__ = "experiment_sources"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)


class ProjectSourceRow(Base):
    """A named source of the whole project: experiments without a source of their own read it (0012)."""

    __tablename__ = "project_sources"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)


class SumsCacheRow(Base):
    """The cumulative sums of an experiment at the end of one day, per metric-definition hash (0007)."""

    __tablename__ = "metric_sums_cache"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    definition: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    sums: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


def _refuse_audit_changes(session: Any, _context: Any, _instances: Any) -> None:
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, AuditRow):
            raise PermissionError("the audit log is append-only: entries cannot be changed or deleted")


def _install_audit_guard() -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    if not event.contains(Session, "before_flush", _refuse_audit_changes):
        event.listen(Session, "before_flush", _refuse_audit_changes)


_install_audit_guard()
