"""The registry's public operations: :class:`Registry` (create, read, status changes, edits, metrics,
end conditions, audit log) over the SQLAlchemy repository of ``_registry_repo``, with every input checked
by the one rule set of ``_registry_rules``. ``experiment.register`` is the seed-era facade re-exporting it.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from battleground.experiment._records import (
    BUCKETS,
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
    _check_metrics,
    _check_variants,
    _jsonable,
    _normalize_end_conditions,
    _normalize_metric,
    _normalize_variants,
    _now,
    check_holdout_fraction,
    check_layer,
    check_layer_buckets,
    check_layer_range,
    check_name,
    check_project,
    check_prose,
    check_salt,
    check_traffic,
    end_conditions_from,
    free_range,
    overlaps,
    parse_timestamp,
)

__all__ = ["Registry"]


def _metric_row(m: MetricRecord, position: int) -> Any:
    from battleground.storage._models import MetricRow

    return MetricRow(
        name=m.name, kind=m.kind, numerator=m.numerator, denominator=m.denominator, direction=m.direction,
        guardrail=m.guardrail, primary=m.primary, position=position,
        conversion_window_days=m.conversion_window_days, cuped_lookback_days=m.cuped_lookback_days,
        margin=m.margin, margin_relative=m.margin_relative, cap_quantile=m.cap_quantile, cap_value=m.cap_value,
        quantile=m.quantile,
    )


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
        project: str | None = None,
        layer: str | None = None,
        layer_range: Any = None,
        layer_buckets: int | None = None,
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
            project: the project (default "default"); its running holdout, if any, is linked when the
                experiment starts (:meth:`create_holdout`).
            layer: the layer of mutually exclusive experiments it joins (``None``: none).
            layer_range: the half-open range ``(start, end)`` (or ``"start-end"``) of the layer's 10,000
                buckets it owns; it may not overlap a running experiment of the layer.
            layer_buckets: instead of ``layer_range``, how many buckets the registry allocates: the
                lowest free range not owned by a draft or running experiment of the layer.
        """
        name = check_name(name)
        description, hypothesis = check_prose(description, "description"), check_prose(hypothesis, "hypothesis")
        owner = check_prose(owner, "owner")
        variant_records = _normalize_variants(variants)
        _check_variants(variant_records)
        metric_records = [_normalize_metric(m) for m in metrics]
        _check_metrics(metric_records)
        _check_post_stratify(metadata, metric_records)
        start, end = _window(start_at, end_at)
        traffic = check_traffic(traffic)
        if salt is not None:
            salt = check_salt(salt)
        ec = end_conditions_from(end_conditions, EndConditions())
        project = check_project(project)
        layer = check_layer(layer)
        wanted: tuple[int, int] | int | None = None
        if layer is None:
            if layer_range is not None or layer_buckets is not None:
                raise RegistryRuleError(
                    "a layer range needs a layer", layer_range if layer_range is not None else layer_buckets,
                    "name the layer (layer='checkout') the range belongs to, or drop the range",
                )
        elif (layer_range is None) == (layer_buckets is None):
            raise RegistryRuleError(
                "a layered experiment owns one range", (layer_range, layer_buckets),
                f"give layer_range=(start, end) or layer_buckets=N (the registry allocates the lowest free "
                f"range of layer {layer!r}), not both and not neither",
            )
        else:
            wanted = check_layer_range(layer_range) if layer_range is not None else check_layer_buckets(layer_buckets)
        return self._insert(
            name=name, description=description, hypothesis=hypothesis, owner=owner, start=start, end=end,
            metadata=metadata, salt=salt, traffic=traffic, variants=variant_records, metrics=metric_records,
            end_conditions=ec, project=project, kind="experiment", layer=layer, wanted=wanted, actor=actor,
        )

    def create_holdout(
        self,
        name: str,
        *,
        fraction: float,
        project: str | None = None,
        metrics: Iterable[Any] = (),
        description: str | None = None,
        owner: str | None = None,
        start_at: Any = None,
        end_at: Any = None,
        metadata: Mapping[str, Any] | None = None,
        salt: str | None = None,
        actor: str | None = None,
    ) -> ExperimentRecord:
        """Register a project's global holdout in ``draft`` status.

        Once started, the holdout keeps ``fraction`` of the project's units (those whose bucket in the
        holdout's namespace is below ``fraction × 10000``) out of every experiment of the project that
        starts while it runs; stopping it ends the period (experiments already behind it keep it).
        A holdout is a registry row like an experiment, with the variants ``holdout`` (the control,
        weight ``fraction``) and ``shipped`` (everyone else): expose every unit of the project to it
        (:class:`~battleground.experiment.assign.Assigner`) and log its metric events under it, and
        ``Monitor``, the report and the dashboard measure the cumulative impact of everything shipped
        (shipped vs holdout) with the usual statistics.

        Args:
            name: unique name, as for experiments.
            fraction: the share held out, in (0, 1), a multiple of 0.0001 (e.g. 0.05).
            project: the project it holds out from (default "default"); one running holdout per project.
            metrics: the metrics the cumulative impact is measured on (as for experiments).
            start_at, end_at: the planned period (UTC).
        """
        name = check_name(name)
        description, owner = check_prose(description, "description"), check_prose(owner, "owner")
        buckets = check_holdout_fraction(fraction)
        metric_records = [_normalize_metric(m) for m in metrics]
        _check_metrics(metric_records)
        _check_post_stratify(metadata, metric_records)
        start, end = _window(start_at, end_at)
        if salt is not None:
            salt = check_salt(salt)
        share = buckets / BUCKETS
        variant_records = [VariantRecord("holdout", share, True), VariantRecord("shipped", 1.0 - share, False)]
        return self._insert(
            name=name, description=description, hypothesis=None, owner=owner, start=start, end=end,
            metadata=metadata, salt=salt, traffic=1.0, variants=variant_records, metrics=metric_records,
            end_conditions=EndConditions(), project=check_project(project), kind="holdout", layer=None,
            wanted=(0, buckets), actor=actor,
        )

    def _insert(
        self, *, name: str, description: str | None, hypothesis: str | None, owner: str | None,
        start: dt.datetime | None, end: dt.datetime | None, metadata: Mapping[str, Any] | None,
        salt: str | None, traffic: float, variants: list[VariantRecord], metrics: list[MetricRecord],
        end_conditions: EndConditions, project: str, kind: str, layer: str | None,
        wanted: tuple[int, int] | int | None, actor: str | None,
    ) -> ExperimentRecord:
        from sqlalchemy.exc import IntegrityError

        from battleground.storage._models import EndConditionRow, ExperimentRow, VariantRow

        ec = end_conditions
        now = _now()
        with self._session() as session:
            rng: tuple[int, int] | None = wanted if isinstance(wanted, tuple) else None
            if layer is not None:
                _lock(session, f"layer:{layer}")
                if isinstance(wanted, tuple):
                    self._check_layer_free(session, layer, wanted, None)
                else:
                    rng = self._allocate(session, layer, int(wanted or 0))
            row = ExperimentRow(
                name=name, description=description, hypothesis=hypothesis, owner=owner, status="draft",
                start_at=start, end_at=end, meta=_jsonable(dict(metadata or {})),
                salt=salt or secrets.token_hex(8), traffic=traffic, created_at=now, updated_at=now,
                project=project, layer=layer, range_start=None if rng is None else rng[0],
                range_end=None if rng is None else rng[1], kind=kind,
            )
            row.variants = [
                VariantRow(name=v.name, weight=v.weight, is_control=v.is_control, position=i)
                for i, v in enumerate(variants)
            ]
            row.metrics = [_metric_row(m, i) for i, m in enumerate(metrics)]
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

    # ------------------------------------------------------------------ layers and holdouts
    def _edit_placement(self, session: Any, row: Any, project: Any, layer: Any, layer_range: Any,
                        change: Any) -> None:
        """A draft's project, layer and range (see :meth:`update`)."""
        if row.status != "draft":
            field, value = next((f, v) for f, v in (("project", project), ("layer", layer),
                                                     ("layer_range", layer_range)) if v is not _UNSET)
            raise RegistryRuleError(f"{field} frozen once running", value, f"experiment {row.name!r} is {row.status}")
        if row.kind == "holdout" and (layer is not _UNSET or layer_range is not _UNSET):
            raise RegistryRuleError("a holdout is in no layer", row.name, "a holdout's range is its fraction")
        if project is not _UNSET:
            change("project", check_project(project))
        new_layer = row.layer if layer is _UNSET else check_layer(layer)
        if new_layer is None:
            if layer_range is not _UNSET and layer_range is not None:
                raise RegistryRuleError("a layer range needs a layer", layer_range,
                                        "name the layer (layer='checkout') the range belongs to")
            for field in ("layer", "range_start", "range_end"):
                change(field, None)
            return
        if layer_range is _UNSET and row.range_start is None:
            raise RegistryRuleError("a layered experiment owns one range", new_layer,
                                    "give layer_range=(start, end) with the layer")
        rng = (row.range_start, row.range_end) if layer_range is _UNSET else check_layer_range(layer_range)
        _lock(session, f"layer:{new_layer}")
        self._check_layer_free(session, new_layer, rng, row.id)
        change("layer", new_layer)
        change("range_start", rng[0])
        change("range_end", rng[1])

    @staticmethod
    def _layer_rows(session: Any, layer: str, statuses: tuple[str, ...]) -> builtins.list[Any]:
        from sqlalchemy import select

        from battleground.storage._models import ExperimentRow

        query = (select(ExperimentRow).where(ExperimentRow.layer == layer, ExperimentRow.status.in_(statuses))
                 .order_by(ExperimentRow.range_start, ExperimentRow.id))
        return [r for r in session.scalars(query) if r.range_start is not None and r.range_end is not None]

    def _check_layer_free(self, session: Any, layer: str, rng: tuple[int, int], own_id: int | None) -> None:
        """Refuse ``rng`` when a running experiment of ``layer`` owns a bucket of it."""
        running = [r for r in self._layer_rows(session, layer, ("running",)) if r.id != own_id]
        for r in running:
            if overlaps(rng, (r.range_start, r.range_end)):
                free = _gaps([(o.range_start, o.range_end) for o in running])
                raise RegistryRuleError(
                    "running experiments of a layer own disjoint ranges", f"{layer}[{rng[0]}, {rng[1]})",
                    f"in layer {layer!r} the range [{rng[0]}, {rng[1]}) overlaps [{r.range_start}, {r.range_end}) "
                    f"of running experiment {r.name!r} (id {r.id}); choose a free range ("
                    + (", ".join(f"[{a}, {b})" for a, b in free) or "none is free")
                    + f") or stop {r.name!r} first",
                )

    def _allocate(self, session: Any, layer: str, size: int) -> tuple[int, int]:
        taken = [(r.range_start, r.range_end) for r in self._layer_rows(session, layer, ("draft", "running"))]
        rng = free_range(taken, size)
        if rng is None:
            free = _gaps(taken)
            raise RegistryRuleError(
                "a free range of the layer", f"{layer}: {size} buckets",
                f"layer {layer!r} has no {size} free contiguous buckets (free: "
                + (", ".join(f"[{a}, {b})" for a, b in free) or "none")
                + "); ask for fewer, or stop or archive an experiment of the layer",
            )
        return rng

    def holdout_of(self, key: Any) -> builtins.list[ExperimentRecord]:
        """The experiments started behind holdout ``key``, oldest first."""
        from sqlalchemy import select

        from battleground.storage._models import ExperimentRow

        with self._session() as session:
            row = self._row(session, key)
            if row.kind != "holdout":
                raise RegistryRuleError("a holdout", row.name, f"{row.name!r} is an experiment, not a holdout")
            rows = session.scalars(select(ExperimentRow).where(ExperimentRow.holdout_id == row.id)
                                   .order_by(ExperimentRow.id))
            return [self._record(r) for r in rows]

    def _on_start(self, session: Any, row: Any, when: dt.datetime) -> None:
        """The layer and holdout rules of draft → running: a layered experiment's range is free among
        the layer's running experiments; an experiment is linked to its project's running holdout; a
        holdout starts alone in its project, before the experiments it holds out from."""
        from sqlalchemy import select

        from battleground.storage._models import ExperimentRow

        _lock(session, f"project:{row.project}", *([f"layer:{row.layer}"] if row.layer else []))
        running = select(ExperimentRow).where(
            ExperimentRow.project == row.project, ExperimentRow.status == "running", ExperimentRow.id != row.id
        )
        if row.kind == "holdout":
            others = builtins.list(session.scalars(running.order_by(ExperimentRow.id)))
            holdouts = [r for r in others if r.kind == "holdout"]
            if holdouts:
                raise RegistryRuleError(
                    "one running holdout per project", row.project,
                    f"project {row.project!r} already has running holdout {holdouts[0].name!r} "
                    f"(id {holdouts[0].id}); stop it first",
                )
            if others:
                names = ", ".join(repr(r.name) for r in others[:5]) + (" …" if len(others) > 5 else "")
                raise RegistryRuleError(
                    "a holdout starts before the experiments it holds out from", row.project,
                    f"project {row.project!r} has running experiments ({names}) that would keep their "
                    "held-out units; start the holdout when none runs, or put it in another project",
                )
            return
        if row.layer is not None and row.range_start is not None and row.range_end is not None:
            self._check_layer_free(session, row.layer, (row.range_start, row.range_end), row.id)
        holdout = session.scalars(
            running.where(ExperimentRow.kind == "holdout").order_by(ExperimentRow.id)
        ).first()
        if holdout is not None and (holdout.end_at is None or when < holdout.end_at):
            row.holdout_id = holdout.id
            session.flush()
            session.expire(row, ["holdout"])

    def get(self, key: Any) -> ExperimentRecord:
        """The experiment with this id or name (:class:`ExperimentNotFoundError` when there is none)."""
        with self._session() as session:
            return self._record(self._row(session, key))

    def list(self, status: str | None = None) -> list[ExperimentRecord]:
        """All experiments (optionally only those with ``status``), oldest first: four queries however
        many there are (variants, metrics and end conditions are loaded for all rows at once)."""
        from sqlalchemy import select
        from sqlalchemy.orm import selectinload

        from battleground.storage._models import ExperimentRow

        if status is not None and status not in STATUSES:
            raise RegistryError(f"status must be one of {list(STATUSES)}, got {status!r}")
        query = select(ExperimentRow).order_by(ExperimentRow.id).options(
            selectinload(ExperimentRow.variants), selectinload(ExperimentRow.metrics),
            selectinload(ExperimentRow.end_condition),
        )
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
            if to == "running":
                self._on_start(session, row, when or now)
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
        """running → stopped, with the reason in the audit log; ``at`` as for :meth:`start`.

        Every stop (CLI, API, dashboard, a monitor's end condition) comes here, so this is where the
        experiment's open entries in the agreement ledger are closed with the online values observed
        (:func:`battleground.decisions._ledger.close_on_stop`; an ``close_ledger`` audit entry says
        what was closed). A store that is busy or down leaves them open and the stop stands.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise RegistryError("stop needs a reason (it goes to the audit log), e.g. reason='target reached'")
        record = self._transition(key, "stopped", actor, reason.strip(), at=at)
        self._close_ledger(record, actor)
        return record

    def _close_ledger(self, record: ExperimentRecord, actor: str | None) -> None:
        from sqlalchemy import func, select

        from battleground.storage._models import LedgerRow

        with self._session() as session:
            pending = session.scalar(select(func.count()).select_from(LedgerRow).where(
                LedgerRow.experiment_id == record.id, LedgerRow.online_value.is_(None)))
        if not pending:  # the common case: no offline estimate waits for this experiment
            return
        # the ledger reads the decision log and the deployed policies' reward rules, above the registry:
        # imported here, only for experiments that have ledger entries
        from battleground.decisions._ledger import close_on_stop

        detail = close_on_stop(self.settings, record.id)
        with self._session() as session:
            self._audit(session, self._row(session, record.id), "close_ledger", detail, actor)
            session.commit()

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
        project: Any = _UNSET,
        layer: Any = _UNSET,
        layer_range: Any = _UNSET,
        actor: str | None = None,
    ) -> ExperimentRecord:
        """Edit descriptive fields (``metadata`` is merged). ``traffic``, ``salt``, ``project``, ``layer``
        and ``layer_range`` only in draft (``layer=None`` takes the experiment out of its layer; a new
        range may not overlap a running experiment of the layer)."""
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
                change("name", check_name(name))
            for field, value in (("description", description), ("hypothesis", hypothesis), ("owner", owner)):
                if value is not _UNSET:
                    change(field, check_prose(value, field))
            new_start = row.start_at if start_at is _UNSET else parse_timestamp(start_at, "start_at")
            new_end = row.end_at if end_at is _UNSET else parse_timestamp(end_at, "end_at")
            if new_start is not None and new_end is not None and new_end <= new_start:
                raise RegistryRuleError("end after start", new_end.isoformat(), f"end_at must be after start_at {new_start.isoformat()}")
            change("start_at", new_start)
            change("end_at", new_end)
            if metadata is not _UNSET:
                if not isinstance(metadata, Mapping):
                    raise RegistryError(f"metadata must be a mapping, got {metadata!r}")
                _check_post_stratify(metadata, row.metrics)
                change("meta", {**(row.meta or {}), **_jsonable(dict(metadata))})
            for field, value in (("traffic", traffic), ("salt", salt)):
                if value is _UNSET:
                    continue
                if row.status != "draft":
                    raise RegistryRuleError(
                        f"{field} frozen once running", value, f"experiment {row.name!r} is {row.status}"
                    )
                change(field, check_traffic(value) if field == "traffic" else check_salt(value))
            if any(v is not _UNSET for v in (project, layer, layer_range)):
                self._edit_placement(session, row, project, layer, layer_range, change)
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
        cap_quantile: float | None = None,
        cap_value: float | None = None,
        quantile: float | None = None,
        actor: str | None = None,
    ) -> ExperimentRecord:
        """Add a metric (allowed until archived; the sums are computed from events at query time).

        A guardrail may declare ``margin`` (relative to control unless ``margin_relative=False``): the
        largest harm still called non-inferior by the decision rule."""
        if isinstance(name, Mapping | MetricRecord):
            record = _normalize_metric(name)
        else:
            record = _normalize_metric({
                "name": name, "kind": kind, "numerator": numerator if numerator is not None else name,
                "denominator": denominator, "direction": direction, "guardrail": guardrail, "primary": primary,
                "conversion_window_days": conversion_window_days, "cuped_lookback_days": cuped_lookback_days,
                "margin": margin, "margin_relative": margin_relative,
                "cap_quantile": cap_quantile, "cap_value": cap_value, "quantile": quantile,
            })
        with self._session() as session:
            row = self._row(session, key, lock=True)
            self._require_editable(row)
            _check_metrics([
                *(MetricRecord(m.name, m.kind, m.numerator, primary=m.primary) for m in row.metrics), record
            ])
            row.metrics.append(_metric_row(record, len(row.metrics)))
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

    def update_metric(self, key: Any, name: str, changes: Mapping[str, Any], *,
                      actor: str | None = None) -> ExperimentRecord:
        """Change a metric in place (draft only, as removing one is): ``changes`` holds any of the
        metric's fields (``kind``, ``numerator``, ``denominator``, ``direction``, ``guardrail``,
        ``primary``, windows, ``margin``/``margin_relative``, caps; ``name`` renames it). The edited
        metric passes the same rules as one added, its position is kept, and the audit log records
        the old and new definitions under ``actor``."""
        from dataclasses import asdict

        with self._session() as session:
            row = self._row(session, key, lock=True)
            if row.status != "draft":
                raise RegistryRuleError(
                    "metrics editable only in draft", name, f"experiment {row.name!r} is {row.status}; "
                    "results already seen would change: create a new experiment instead")
            records = list(self._record(row).metrics)
            at = next((i for i, m in enumerate(records) if m.name == name), None)
            if at is None:
                raise ExperimentNotFoundError(f"experiment {row.name!r} has no metric {name!r}")
            old = records[at]
            new = _normalize_metric({**asdict(old), **dict(changes)})
            records[at] = new
            _check_metrics(records)
            if new == old:
                return self._record(row)
            target = row.metrics[at]
            fresh = _metric_row(new, target.position)
            for column in ("name", "kind", "numerator", "denominator", "direction", "guardrail", "primary",
                           "conversion_window_days", "cuped_lookback_days", "margin", "margin_relative",
                           "cap_quantile", "cap_value"):
                setattr(target, column, getattr(fresh, column))
            row.updated_at = _now()
            self._audit(session, row, "edit_metric", {"metric": name, "old": old, "new": new}, actor)
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
            new = _normalize_end_conditions(
                target_sample_size, max_duration_days, sequential, current, design, mde
            )
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


def _window(start_at: Any, end_at: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    start = parse_timestamp(start_at, "start_at")
    end = parse_timestamp(end_at, "end_at")
    if start is not None and end is not None and end <= start:
        raise RegistryRuleError("end after start", end.isoformat(), f"end_at must be after start_at {start.isoformat()}")
    return start, end


def _gaps(taken: Iterable[tuple[int, int]]) -> builtins.list[tuple[int, int]]:
    """The free half-open ranges of [0, 10000) between ``taken`` ones."""
    out, start = [], 0
    for lo, hi in sorted(taken):
        if lo > start:
            out.append((start, lo))
        start = max(start, hi)
    if start < BUCKETS:
        out.append((start, BUCKETS))
    return out


def _lock(session: Any, *names: str) -> None:
    """On PostgreSQL, transaction-scoped advisory locks on ``names`` (in the order given), so two
    concurrent starts in one layer or project check and write one after the other. SQLite serialises
    writers by itself."""
    if session.get_bind().dialect.name != "postgresql":
        return
    from sqlalchemy import text

    for n in names:
        key = int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _check_post_stratify(metadata: Mapping[str, Any] | None, metrics: Iterable[Any]) -> None:
    """A declared ``post_stratify_by`` must name attribute event types that no metric counts (an
    attribute event's value is a stratum code, not a metric value)."""
    from battleground.experiment._metric_sums import (
        POST_STRATIFY_KEY,
        SourceSettingError,
        post_stratify_by,
    )

    try:
        attributes = post_stratify_by(dict(metadata or {}))
    except SourceSettingError as exc:
        raise RegistryRuleError("post_stratify_by names attributes", (metadata or {}).get(POST_STRATIFY_KEY),
                                str(exc)) from None
    counted = {et for m in metrics for et in (m.numerator, m.denominator) if et}
    clash = sorted(set(attributes) & counted)
    if clash:
        raise RegistryRuleError(
            "post_stratify_by names attributes", clash,
            f"post_stratify_by {clash} are event types a metric counts; declare the attribute as its own "
            "event type (e.g. 'country') whose value codes the stratum",
        )
    _check_regression_adjustment(metadata, counted)
    _check_breakdown(metadata, counted)


def _check_breakdown(metadata: Mapping[str, Any] | None, counted: set[str]) -> None:
    """A declared ``breakdown_by`` must parse and name attribute event types that no metric counts."""
    from battleground.experiment._metric_sums import BREAKDOWN_KEY, SourceSettingError, breakdown_by

    try:
        attributes = breakdown_by(dict(metadata or {}))
    except SourceSettingError as exc:
        raise RegistryRuleError("breakdown_by names attributes", (metadata or {}).get(BREAKDOWN_KEY),
                                str(exc)) from None
    clash = sorted(set(attributes) & counted)
    if clash:
        raise RegistryRuleError(
            "breakdown_by names attributes", clash,
            f"breakdown_by {clash} are event types a metric counts; declare the attribute as its own event "
            "type (e.g. 'country') whose value codes the user's slice",
        )


def _check_regression_adjustment(metadata: Mapping[str, Any] | None, counted: set[str]) -> None:
    """A declared ``regression_adjustment`` (CUPED++) must parse and name attribute event types that no
    metric counts (an attribute event's value is the user's attribute, not a metric value)."""
    from battleground.experiment._cupedpp import REGRESSION_KEY, regression_adjustment
    from battleground.experiment._metric_sums import SourceSettingError

    try:
        spec = regression_adjustment(dict(metadata or {}))
    except SourceSettingError as exc:
        raise RegistryRuleError("regression_adjustment is valid", (metadata or {}).get(REGRESSION_KEY),
                                str(exc)) from None
    clash = sorted(set(spec.attributes if spec else ()) & counted)
    if clash:
        raise RegistryRuleError(
            "regression_adjustment names attributes", clash,
            f"regression_adjustment attributes {clash} are event types a metric counts; declare the attribute "
            "as its own event type (e.g. 'age') whose value is the user's attribute",
        )
