"""Where :class:`~battleground.experiment.monitoring.Monitor` reads experiments and sums from: the
:class:`ExperimentSource` seam and its default implementation over the registry and the event store."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from battleground.stats import MetricSpec, Result

if TYPE_CHECKING:
    from battleground.experiment._records import ExperimentRecord, GuardrailMargin
    from battleground.settings import Settings
    from battleground.storage._sums_sql import MetricQuery
    from battleground.storage.sums import ExperimentSums

__all__ = ["ExperimentInfo", "ExperimentSource", "VariantInfo", "settings_of", "sums_by_metric"]


@dataclass(frozen=True)
class VariantInfo(Result):
    name: str
    weight: float
    is_control: bool


@dataclass(frozen=True)
class ExperimentInfo(Result):
    """What monitoring and reports need to know about a registered experiment."""

    id: int
    name: str
    status: str
    description: str | None
    hypothesis: str | None
    owner: str | None
    start_at: dt.datetime | None
    end_at: dt.datetime | None
    started_at: dt.datetime | None
    variants: tuple[VariantInfo, ...]
    metrics: tuple[MetricSpec, ...]
    target_sample_size: int | None = None
    max_duration_days: float | None = None
    sequential: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    guardrail_margins: dict[str, GuardrailMargin] = field(default_factory=dict)
    stopped_at: dt.datetime | None = None
    design: str = "msprt"  # the sequential design (EndConditions.design)
    mde: float | None = None  # the planned relative MDE (mid-experiment power)
    kind: str = "experiment"  # or "holdout": shipped vs holdout, the impact of what shipped

    @property
    def control(self) -> str:
        return next(v.name for v in self.variants if v.is_control)


# ---------------------------------------------------------------------------------------------------
# The seam to the registry and the event store (battleground.experiment.register / .events).
# ---------------------------------------------------------------------------------------------------


@runtime_checkable
class ExperimentSource(Protocol):
    """Where :class:`Monitor` reads experiments and sums, and where it stops and records.

    The default implementation reads battleground's registry and event store; any object with these
    methods (e.g. precomputed sums in memory) works too.
    """

    def resolve_id(self, key: Any) -> int: ...

    def running_ids(self) -> list[int]: ...

    def all_ids(self) -> list[int]: ...

    def experiment(self, experiment_id: int) -> ExperimentInfo: ...

    def metric_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> dict[str, list[Any]]: ...

    # Optional (the default source has it): ``experiment_sums(info, start, end) -> ExperimentSums``, the
    # exact shifted sums with the exposure check and CUPED covariates, from the same scan; and
    # ``strata_sums(info, attributes, start, end)``, the same per stratum of declared user attributes
    # (post-stratification; ``None`` when the source cannot group by them); and
    # ``covariate_sums(info, attributes, start, end)``, the per-arm sums of CUPED++ (``None``: not offered)
    # for a source whose ``experiment_sums`` does not carry them (``ExperimentSums.covariates``);
    # ``quantile_sums(info, start, end)``, ``{metric name: per-arm QuantileSums}`` of the quantile metrics.

    def daily_metric_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[tuple[dt.date, dict[str, list[Any]]]]: ...

    def stop(self, experiment_id: int, reason: str) -> None: ...

    def record(self, experiment_id: int, message: str) -> None: ...


class _Backend:
    """Reads experiments from the registry and sums from the event store; stops and records.

    All metrics of an experiment come from one SQL scan (``experiment_sums``/``daily_experiment_sums``);
    ``multiple_exposures`` is the policy for users exposed to several variants.
    """

    def __init__(self, client: Any, *, multiple_exposures: str = "exclude", store: Any = None) -> None:
        from battleground.experiment._metric_sums import check_multiple_exposures
        from battleground.settings import Settings

        self.multiple_exposures = check_multiple_exposures(multiple_exposures)

        if isinstance(client, Settings):
            self.settings = client
        else:
            from battleground.experiment.register import resolve_client

            self.settings = resolve_client(client)
        self._registry: Any = None
        self._store: Any = store
        self._given = store  # an event store given (e.g. a warehouse source) serves every experiment
        self._sources: dict[int, Any] = {}
        self._records: dict[int, ExperimentRecord] = {}
        self._known: dict[int, ExperimentRecord] = {}  # records handed over by remember()
        self._state: dict[int, int] | None = None  # events per experiment, read once per source (sums_key)

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from battleground.experiment.register import Registry

            self._registry = Registry(self.settings)
        return self._registry

    @property
    def store(self) -> Any:
        if self._store is None:
            from battleground.experiment.events import open_event_store

            self._store = open_event_store(self.settings)
        return self._store

    def store_for(self, experiment_id: int) -> Any:
        """Where the experiment's events are read: the store given, its registered source (read in place,
        see ``storage/_sources.py``), or battleground's event store."""
        if self._given is not None:
            return self._given
        if experiment_id not in self._sources:
            from battleground.storage._sources import load_source, open_source

            spec = load_source(self.settings.registry_url, experiment_id)
            if spec is None:
                self._sources[experiment_id] = self.store
            else:
                log = None
                if spec.exposures == "assignment_log":
                    log = _assignment_log(self.store, experiment_id)
                self._sources[experiment_id] = open_source(spec, experiment_id, assignment_log=log,
                                                           registry_url=self.settings.registry_url)
        return self._sources[experiment_id]

    def resolve_id(self, key: Any) -> int:
        return int(self.registry.get(key).id)

    def running_ids(self) -> list[int]:
        return [int(e.id) for e in self.registry.list("running")]

    def all_ids(self) -> list[int]:
        return [int(e.id) for e in self.registry.list()]

    def experiment(self, experiment_id: int) -> ExperimentInfo:
        rec = self._known.pop(int(experiment_id), None) or self.registry.get(experiment_id)
        self._records[rec.id] = rec
        return _info_from_registry(rec)

    def remember(self, records: Sequence[ExperimentRecord]) -> None:
        """Records the caller has just read (e.g. the dashboard's list, 100 at once): the next
        :meth:`experiment` of each serves it instead of reading the registry again (once; later calls
        read the registry)."""
        self._known.update({int(r.id): r for r in records})

    def _definitions(self, info: ExperimentInfo) -> tuple[ExperimentRecord, list[MetricQuery]]:
        from battleground.experiment._metric_sums import metric_query

        rec = self._records.get(info.id) or self.registry.get(info.id)
        return rec, [metric_query(m) for m in rec.metrics]

    def experiment_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> ExperimentSums:
        """The exact (shifted) sums of every metric, the exposure check and the CUPED covariates; when
        the experiment declares ``regression_adjustment``, the CUPED++ sums too (the same scan)."""
        rec, defs = self._definitions(info)
        if not defs:
            from battleground.storage.sums import ExperimentSums

            return ExperimentSums((), multiple_exposures=self.multiple_exposures)
        return self.store_for(rec.id).experiment_sums(rec.id, defs, start, end, rec.variant_names,
                                                      multiple_exposures=self.multiple_exposures,
                                                      attributes=cupedpp_attributes(info))

    def metric_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> dict[str, list[Any]]:
        return sums_by_metric(info, self.experiment_sums(info, start, end))

    def experiment_sums_batch(
        self, infos: Sequence[ExperimentInfo], start: dt.datetime | None, end: dt.datetime | None
    ) -> dict[int, ExperimentSums]:
        """:meth:`experiment_sums` of many experiments over one window, one scan per event store and set
        of metric definitions (``EventStore.experiment_sums_batch``): experiments with the same metrics
        (in any order) share a query. Experiments read in place from a registered source, with capped
        metrics or declaring CUPED++ are left out (the caller reads them one by one), as are those without
        metrics."""
        groups: dict[tuple[Any, ...], list[tuple[ExperimentRecord, list[MetricQuery]]]] = {}
        for info in infos:
            rec, defs = self._definitions(info)
            store = self.store_for(rec.id)
            if (not defs or store is not self.store or any(d.capped for d in defs)
                    or cupedpp_attributes(info) is not None):  # CUPED++ sums come from its own scan
                continue
            groups.setdefault((id(store), frozenset(defs)), []).append((rec, defs))
        out: dict[int, ExperimentSums] = {}
        for members in groups.values():
            shared = sorted(set(members[0][1]), key=repr)  # one order for the group's query
            found = self.store.experiment_sums_batch(
                [rec.id for rec, _ in members], shared, start, end, {rec.id: rec.variant_names for rec, _ in members},
                multiple_exposures=self.multiple_exposures)
            for rec, defs in members:
                s = found[rec.id]
                out[rec.id] = dataclasses.replace(s, metrics=tuple(s.metrics[shared.index(d)] for d in defs))
        return out

    def sums_key(self, info: ExperimentInfo) -> Hashable | None:
        """What the experiment's sums depend on besides the time window: the event store and the number
        of events it holds for the experiment (:meth:`~battleground.storage.events.EventStore.experiment_counts`,
        read once per source, so the reads of one page share it; the store is append-only with
        de-duplication, so the number changes exactly when the experiment's events do), the metric
        definitions, the variants and the exposure policy. Equal keys
        mean equal sums, so a reader may cache on it; ``None`` when the events are read in place from a
        registered source, whose changes this process cannot see."""
        rec, defs = self._definitions(info)
        store = self.store_for(rec.id)
        if store is not self.store:
            return None
        if self._state is None:
            self._state = store.experiment_counts()
        return (store.url, self._state.get(rec.id, 0), rec.id, tuple(defs), rec.variant_names,
                self.multiple_exposures)

    def strata_sums(
        self, info: ExperimentInfo, attributes: tuple[str, ...], start: dt.datetime | None, end: dt.datetime | None
    ) -> tuple[tuple[tuple[float | None, ...], ExperimentSums], ...] | None:
        """Per-stratum sums of every metric by the declared attributes (post-stratification); ``None``
        when the experiment's event source cannot group by attributes (e.g. a warehouse source)."""
        rec, defs = self._definitions(info)
        store = self.store_for(rec.id)
        if not defs or not hasattr(store, "strata_sums"):
            return None
        result: tuple[tuple[tuple[float | None, ...], ExperimentSums], ...] = store.strata_sums(
            rec.id, defs, attributes, start, end, rec.variant_names, multiple_exposures=self.multiple_exposures)
        return result

    def covariate_sums(
        self, info: ExperimentInfo, attributes: tuple[str, ...], start: dt.datetime | None, end: dt.datetime | None
    ) -> tuple[Any, ...] | None:
        """Per-arm sums of every metric with every covariate (CUPED++: the metrics' pre-period values and
        the declared numeric ``attributes``); ``None`` when the event source cannot compute them."""
        rec, defs = self._definitions(info)
        store = self.store_for(rec.id)
        if not defs or not hasattr(store, "covariate_sums"):
            return None
        result: tuple[Any, ...] = store.covariate_sums(rec.id, defs, attributes, start, end, rec.variant_names,
                                                       multiple_exposures=self.multiple_exposures)
        return result

    def quantile_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None,
        users: Sequence[int] | None = None,
    ) -> dict[str, list[Any]]:
        """``{metric name: per-arm QuantileSums}`` of the experiment's quantile metrics (empty without
        any, or when the event source cannot compute them); ``users``: the arms' numbers of units when
        known (the metric-sums scan's), so the bounds are asked at exactly those n."""
        from battleground.experiment._metric_sums import metric_quantiles

        rec, defs = self._definitions(info)
        levels = metric_quantiles(rec.metrics)
        store = self.store_for(rec.id)
        if not levels or not hasattr(store, "quantile_sums"):
            return {}
        found = store.quantile_sums(rec.id, defs, levels, start, end, rec.variant_names,
                                    multiple_exposures=self.multiple_exposures, users=users)
        return {rec.metrics[j].name: list(arms) for j, arms in found.items()}

    def daily_experiment_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[tuple[dt.date, ExperimentSums]]:
        rec, defs = self._definitions(info)
        if not defs:
            return []
        series = self.store_for(rec.id).daily_experiment_sums(rec.id, defs, start, end, rec.variant_names,
                                                              multiple_exposures=self.multiple_exposures,
                                                              attributes=cupedpp_attributes(info))
        return [(_as_date(day), found) for day, found in series]

    def daily_metric_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[tuple[dt.date, dict[str, list[Any]]]]:
        return [(day, sums_by_metric(info, found)) for day, found in self.daily_experiment_sums(info, start, end)]

    def stop(self, experiment_id: int, reason: str) -> None:
        self.registry.stop(experiment_id, reason=reason)

    def record(self, experiment_id: int, message: str) -> None:
        self.registry.record(experiment_id, "srm_alert", message)


def _assignment_log(store: Any, experiment_id: int) -> Any:
    """battleground's exposure events of one experiment (the assignment log a source may join)."""
    import pyarrow as pa

    from battleground.storage._arrow import EVENT_SCHEMA

    cols = ("experiment_id", "variant", "user_id", "event_type", "ts", "value", "covariate")
    rows = store._query(f"SELECT {', '.join(cols)} FROM events WHERE experiment_id = :experiment "
                        "AND event_type = :exposure", {"experiment": int(experiment_id), "exposure": "exposure"})
    data = list(zip(*rows, strict=True)) if rows else [() for _ in cols]
    return pa.table({c: pa.array(list(v), type=EVENT_SCHEMA.field(c).type) for c, v in zip(cols, data, strict=True)})


def cupedpp_attributes(info: ExperimentInfo) -> tuple[str, ...] | None:
    """The numeric attributes the experiment's CUPED++ adds to the metrics' pre-periods (metadata
    ``regression_adjustment``); ``None`` when it declares none (no CUPED++ sums to compute)."""
    from battleground.experiment._cupedpp import regression_adjustment

    spec = regression_adjustment(info.metadata)
    return None if spec is None else spec.attributes


def sums_by_metric(info: ExperimentInfo, sums: ExperimentSums) -> dict[str, list[Any]]:
    """``{metric name: per-variant sums}`` as :func:`battleground.stats.analyze_metrics` reads them."""
    return {m.name: list(arms) for m, arms in zip(info.metrics, sums.metrics, strict=True)}


def _as_date(day: Any) -> dt.date:
    if isinstance(day, dt.datetime):
        return day.date()
    if isinstance(day, dt.date):
        return day
    return dt.date.fromisoformat(str(day)[:10])


def _info_from_registry(exp: ExperimentRecord) -> ExperimentInfo:
    from battleground.experiment._metric_sums import capping_text
    from battleground.experiment._records import GuardrailMargin

    variants = tuple(VariantInfo(name=v.name, weight=float(v.weight), is_control=v.is_control) for v in exp.variants)
    metrics = tuple(
        MetricSpec(
            name=m.name, kind=m.kind, higher_is_better=m.higher_is_better, guardrail=m.guardrail,
            primary=m.primary, capping=capping_text(m.cap_quantile, m.cap_value), quantile=m.quantile,
        )
        for m in exp.metrics
    )
    ec = exp.end_conditions
    return ExperimentInfo(
        id=exp.id, name=exp.name, status=exp.status, description=exp.description,
        hypothesis=exp.hypothesis, owner=exp.owner, start_at=exp.start_at, end_at=exp.end_at,
        started_at=exp.started_at, variants=variants, metrics=metrics,
        target_sample_size=ec.target_sample_size, max_duration_days=ec.max_duration_days,
        sequential=ec.sequential, metadata=dict(exp.metadata),
        guardrail_margins={
            m.name: GuardrailMargin(float(m.margin), m.margin_relative)
            for m in exp.metrics if m.guardrail and m.margin is not None
        },
        stopped_at=exp.stopped_at, design=ec.design, mde=ec.mde, kind=exp.kind,
    )


def settings_of(client: Any) -> Settings:
    """The settings a ``client=`` argument points at (for the CLI and the report)."""
    return _Backend(client).settings
