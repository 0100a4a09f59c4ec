"""The registry's repository: SQLAlchemy sessions, row lookup, rows → records and the audit log.

:class:`RegistryRepo` is the base of :class:`~battleground.experiment.register.Registry`; it owns the
engine and the translation between ORM rows (``battleground.storage._models``) and the frozen records of
``_records``. The public operations (create, start, stop, edit, …) live on ``Registry``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from battleground._redact import redact_url
from battleground.experiment._records import (
    EndConditions,
    ExperimentNotFoundError,
    ExperimentRecord,
    HoldoutRef,
    MetricRecord,
    RegistryRuleError,
    VariantRecord,
)
from battleground.experiment._registry_rules import _jsonable, _now
from battleground.settings import Settings, resolve_client

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from battleground.storage._models import ExperimentRow


class RegistryRepo:
    """The SQLAlchemy side of the registry (see :class:`~battleground.experiment.register.Registry`)."""

    def __init__(self, url: Any = None) -> None:
        self._settings: Settings | None = None
        if not (isinstance(url, str) and url.startswith(("sqlite:", "postgresql", "postgres://"))):
            self._settings = resolve_client(url)
            url = self._settings.registry_url
        self.url: str = url
        from battleground.storage._db import registry_engine

        self._engine = registry_engine(url)

    def __repr__(self) -> str:
        return f"Registry({redact_url(self.url)!r})"

    @property
    def settings(self) -> Settings:
        """The settings the registry was opened with; from a bare registry URL, those of the convention
        (:func:`resolve_client`: the event store beside ``registry.db``, or the same PostgreSQL database)."""
        if self._settings is None:
            self._settings = resolve_client(self.url)
        return self._settings

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
        from battleground._contract import MAX_ID, text_reason

        if isinstance(key, str) and text_reason(key):  # NUL, 10 MB names …: no experiment has them
            raise ExperimentNotFoundError(f"no experiment named {key[:60]!r}: {text_reason(key)}")
        if isinstance(key, int) or (key.strip().isdigit() and key.strip().isascii()):
            if not 1 <= int(key) <= MAX_ID:
                raise ExperimentNotFoundError(f"no experiment with id {str(key).strip()[:20]}: ids are 1 to {MAX_ID}")
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
                             margin=m.margin, margin_relative=bool(m.margin_relative),
                             cap_quantile=m.cap_quantile, cap_value=m.cap_value, quantile=m.quantile)
                for m in row.metrics
            ),
            end_conditions=EndConditions(ec.target_sample_size, ec.max_duration_days, ec.sequential,
                                         ec.design or "msprt", ec.mde)
            if ec is not None else EndConditions(),
            description=row.description, hypothesis=row.hypothesis, owner=row.owner,
            start_at=row.start_at, end_at=row.end_at, started_at=row.started_at,
            stopped_at=row.stopped_at, archived_at=row.archived_at, stop_reason=row.stop_reason,
            metadata=dict(row.meta or {}), created_at=row.created_at, updated_at=row.updated_at,
            project=row.project, layer=row.layer,
            layer_range=(row.range_start, row.range_end)
            if row.range_start is not None and row.range_end is not None else None,
            kind=row.kind or "experiment",
            holdout=RegistryRepo._holdout_ref(row.holdout),
        )

    @staticmethod
    def _holdout_ref(row: ExperimentRow | None) -> HoldoutRef | None:
        if row is None or row.range_end is None:
            return None
        return HoldoutRef(row.id, row.name, row.salt, int(row.range_end) - int(row.range_start or 0))

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


def _default_actor() -> str:
    """Who acts when no actor is given: ``$BATTLEGROUND_ACTOR``, else the OS user (``getpass.getuser``:
    LOGNAME, USER, ... then the password database, so it works without a terminal), else "unknown"."""
    import getpass

    named = os.environ.get("BATTLEGROUND_ACTOR", "").strip()
    if named:
        return named
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # KeyError/OSError: no such user in the password database
        return "unknown"
