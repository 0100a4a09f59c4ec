"""Monitoring running A/B tests: the seed's ``experiment.monitoring`` module.

Example (the seed's example; ``client=`` means what it means for the registry: a path, a database URL
or a bare host):

    >>> from battleground.experiment.monitoring import Monitor       # doctest: +SKIP
    >>> monitor = Monitor(client=".battleground")                      # doctest: +SKIP
    >>> monitor.put_experiment_id(experiment_id=1)                     # doctest: +SKIP
    >>> monitor.get_abtest_result(start_dt="2022-03-01", end_dt="2022-03-10")  # doctest: +SKIP

The event store computes per-variant sums in SQL; everything statistical happens in
:mod:`battleground.stats` from those sums (storage knows nothing of statistics).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from battleground._time import TimeInputError, parse_instant
from battleground.experiment._breakdown import ExperimentBreakdown, MetricBreakdown
from battleground.experiment._cupac import CupacResult, FeatureLeakageError, cupac_covariate
from battleground.experiment._decide import (
    DataQualityCheck,
    Decision,
    clause_text,
    decide,
    sequential_srm_check,
    srm_check,
)
from battleground.experiment._metric_sums import (
    cuped_comparisons,
    post_stratified_comparisons,
    post_stratify_by,
    quantile_label,
)
from battleground.experiment._offline_aa import OfflineAaResult, offline_aa
from battleground.experiment._quality import multiple_exposure_check, pre_period_check
from battleground.experiment._result import (
    COLUMNS,
    MonitorResult,
    MonitorRow,
    PowerRow,
    cuped_row,
    results_frame,
)
from battleground.experiment._source import (
    ExperimentInfo,
    ExperimentSource,
    VariantInfo,
    _Backend,
    settings_of,
    sums_by_metric,
)
from battleground.stats import (
    Result,
    SequentialSrmResult,
    SrmResult,
    StatsInputError,
    VariantMetricRow,
    analyze_metrics,
    mid_experiment_power,
    sequential_srm_test,
    srm_test,
)
from battleground.stats._design_rows import DESIGN_METHODS, comparison_moments, design_path

if TYPE_CHECKING:
    import pandas as pd


__all__ = [
    "CupacResult",
    "EndConditionReport",
    "ExperimentBreakdown",
    "ExperimentInfo",
    "ExperimentSource",
    "FeatureLeakageError",
    "MetricBreakdown",
    "Monitor",
    "MonitorResult",
    "MonitorRow",
    "OfflineAaResult",
    "VariantInfo",
    "check_experiments",
    "cupac_covariate",
    "cuped_row",
    "offline_aa",
    "results_frame",
    "settings_of",
]


@dataclass(frozen=True)
class EndConditionReport(Result):
    """The outcome of evaluating one experiment's end conditions.

    Attributes:
        met: whether any end condition is met; ``reasons`` say which, in words.
        stopped: whether this evaluation stopped the experiment (with the reasons in the audit log).
        srm_status, srm_p_value: the SRM check (an alert is reported and recorded, never a stop reason).
    """

    experiment_id: int
    name: str
    status: str
    met: bool
    reasons: tuple[str, ...]
    stopped: bool
    srm_status: str
    srm_p_value: float
    users_per_variant: dict[str, int]
    sequential_srm_status: str = "n/a"
    sequential_srm_p_value: float = math.nan


class WindowInputError(TimeInputError, StatsInputError):
    """A bad ``start_dt``/``end_dt`` of a monitor window (the shared rule of :mod:`battleground._time`)."""


def _to_datetime(value: Any, name: str, *, end: bool = False) -> dt.datetime | None:
    # A bare date as end_dt means "through the end of that day" (the shared rule).
    return parse_instant(value, name, end=end, error=WindowInputError)


class Monitor:
    """Watch one experiment: results per variant and metric, daily cumulative series, end conditions.

    Args:
        client: where the registry and events live — ``None`` (the settings from the environment), a
            :class:`~battleground.settings.Settings`, a folder path (embedded SQLite + DuckDB), a
            database URL, or a bare host (PostgreSQL at that host), as for ``RegisterExperiment``.
        alpha: significance level.
        mixing_sd: mSPRT mixing standard deviation τ on the relative-lift scale (sequential experiments).
        correction: multiple-testing correction across metrics × variants ("holm", "bh", "none").
        source: where experiments and sums come from, an :class:`ExperimentSource`; default: the
            registry and event store that ``client`` points at.
        multiple_exposures: users exposed to more than one variant are ``"exclude"``-d from every arm
            (default), counted in the variant of their ``"first"`` exposure, or counted in each variant
            they saw (``"keep"``); their number is reported either way (``ExperimentSums``).
    """

    def __init__(
        self,
        client: Any = None,
        *,
        alpha: float = 0.05,
        mixing_sd: float = 0.1,
        correction: str = "holm",
        source: ExperimentSource | None = None,
        multiple_exposures: str = "exclude",
    ) -> None:
        self.client = client
        self.multiple_exposures = multiple_exposures
        self.alpha = alpha
        self.mixing_sd = mixing_sd
        self.correction = correction
        self.source = source
        self.experiment_id_: int | None = None
        self._backend_: ExperimentSource | None = None

    # ------------------------------------------------------------------ set-up
    @property
    def backend(self) -> ExperimentSource:
        if self._backend_ is None:
            self._backend_ = (self.source if self.source is not None
                              else _Backend(self.client, multiple_exposures=self.multiple_exposures))
        return self._backend_

    def put_experiment_id(
        self, experiment_id: Any = None, *, expeirment_id: Any = None
    ) -> Monitor:
        """Choose the experiment (by id or name). ``expeirment_id`` is the seed's spelling, accepted."""
        chosen = experiment_id if experiment_id is not None else expeirment_id
        if chosen is None:
            raise StatsInputError("put_experiment_id needs experiment_id= (an id or a name)")
        self.experiment_id_ = self.backend.resolve_id(chosen)
        return self

    def _require_id(self) -> int:
        if self.experiment_id_ is None:
            raise StatsInputError(
                "no experiment chosen: call monitor.put_experiment_id(experiment_id=...) first"
            )
        return self.experiment_id_

    def experiment(self) -> ExperimentInfo:
        return self.backend.experiment(self._require_id())

    # ------------------------------------------------------------------ results
    def get_abtest_result(self, start_dt: Any = None, end_dt: Any = None) -> pd.DataFrame:
        """One row per (metric, variant) over [start_dt, end_dt]: users, events, value (rate, mean or
        CTR), absolute and relative lift vs control with CIs, p-value (always-valid mSPRT when the
        experiment is sequential), Holm-adjusted p-value, SRM status and guardrail breaches (the seed's
        DataFrame; :meth:`result` gives the typed result with the decision)."""
        return self.result(start_dt, end_dt).to_frame()

    def result(self, start_dt: Any = None, end_dt: Any = None, *, now: dt.datetime | None = None) -> MonitorResult:
        """The typed result over [start_dt, end_dt]: rows, SRM, data-quality checks and the decision of
        the one decision rule (:mod:`battleground.experiment._decide`). ``now`` (naive UTC) dates the
        plan's end date and duration; default the current time."""
        info = self.experiment()
        start = _to_datetime(start_dt, "start_dt")
        end = _to_datetime(end_dt, "end_dt", end=True)
        rows: list[VariantMetricRow] | None = None
        # only a sequential design looks every day: a fixed-horizon result reads the one scan, and its
        # sequential SRM is the single look at the totals (the chi-square test decides there)
        days, day_covariates = self._daily_series(info, start, end) if info.sequential else ([], {})
        current: dict[str, list[Any]] | None = days[-1][1] if days else None
        if info.sequential:
            daily = self._daily_rows(info, start, end, days=days, covariates=day_covariates)
            if daily:
                _, rows, srm = daily[-1]
        # the default source gives every metric, the exposure check and the CUPED covariates in one scan
        fetch = getattr(self.backend, "experiment_sums", None)
        es = fetch(info, start, end) if fetch is not None else None
        quantiles = self._quantile_sums(info, start, end, es)
        if rows is None:
            sums = sums_by_metric(info, es) if es is not None else self.backend.metric_sums(info, start, end)
            sums = {**sums, **quantiles}
            srm = self._srm(info, sums)
            rows = self._analyze(info, sums, sequential=info.sequential)
            current = sums
        elif quantiles and current is not None:
            current = {**current, **quantiles}
            if info.design == "msprt":
                rows = self._quantile_look(info, rows, current)
        checks = self._data_quality(info, start, end)
        cuped: dict[tuple[str, str], Any] = {}
        if es is not None:
            comparisons = cuped_comparisons([(m.name, m.kind) for m in info.metrics], es,
                                            control=info.control, alpha=self.alpha)
            cuped = {(c.metric, c.variant): c.adjusted for c in comparisons}
            checks += (multiple_exposure_check(es.multiple_exposure_users, es.exposed_users),)
            checks += tuple(pre_period_check(c.metric, c.variant, c.pre_period_p_value) for c in comparisons)
        looks = days if info.sequential else ([(None, current)] if current else [])
        return self._result(info, rows, srm, checks, now, cuped=cuped, ssrm=self._ssrm(info, looks),
                            power=self._power(info, current, now),
                            post_stratified=self._post_stratified(info, start, end),
                            cupedpp=self._cupedpp(info, start, end, es))

    def breakdown(self, by: str, start_dt: Any = None, end_dt: Any = None, *, relative: bool = True,
                  correction: str | None = None) -> ExperimentBreakdown:
        """Every metric's effect per slice of the declared attribute ``by`` over [start_dt, end_dt], with
        the slices' p-values corrected (the monitor's ``correction`` unless given: "holm", "bh", …) and
        each slice's effect tested against the rest's (:func:`battleground.stats.breakdown_test`).

        ``by`` must be declared in the experiment's metadata ``breakdown_by`` (or ``post_stratify_by``);
        a slice is the users whose attribute event (type ``by``, recorded at or before their first
        exposure) has that value, ``"(none)"`` for users without one.
        """
        from battleground.experiment._breakdown import (
            breakdown_metrics,
            check_breakdown_attribute,
            slice_label,
        )

        info = self.experiment()
        check_breakdown_attribute(info.metadata, by)
        start = _to_datetime(start_dt, "start_dt")
        end = _to_datetime(end_dt, "end_dt", end=True)
        fetch = getattr(self.backend, "strata_sums", None)
        strata = fetch(info, (by,), start, end) if fetch is not None else None
        if strata is None:
            raise StatsInputError(
                f"experiment {info.id}'s event source cannot group users by attributes (breakdown by {by!r}); "
                "use a DuckDB or PostgreSQL event store"
            )
        method = self.correction if correction is None else correction
        found = breakdown_metrics([(m.name, m.kind) for m in info.metrics], strata, control=info.control,
                                  relative=relative, correction=method, alpha=self.alpha)
        users = {slice_label(key[0]): float(sum(s.users for s in sums.metrics[0])) if sums.metrics else 0.0
                 for key, sums in strata}
        return ExperimentBreakdown(experiment_id=info.id, attribute=by, correction=method, alpha=self.alpha,
                                   relative=relative, users=users, metrics=found)

    def _quantile_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None, es: Any = None
    ) -> dict[str, list[Any]]:
        """``{metric name: per-arm QuantileSums}`` of the quantile metrics (empty without any, or from a
        source that does not offer them: their rows then have no estimate). The scan's users per arm
        (``es``) let the source ask the bounds at exactly those n."""
        if not any(m.kind == "quantile" for m in info.metrics):
            return {}
        fetch = getattr(self.backend, "quantile_sums", None)
        if fetch is None:
            return {}
        users = sorted({int(s.users) for arms in es.metrics for s in arms}) if es is not None and es.metrics else None
        return dict(fetch(info, start, end, users=users))

    def _quantile_look(
        self, info: ExperimentInfo, rows: list[VariantMetricRow], current: dict[str, list[Any]]
    ) -> list[VariantMetricRow]:
        """The quantile metrics' rows of a sequential (mSPRT) experiment: the daily looks carry no order
        statistics, so their rows are mSPRT at this look (always valid at any look on its own; the
        other metrics add the running minimum over the daily looks)."""
        try:
            fresh = self._analyze(info, current, sequential=True)
        except StatsInputError:
            return rows
        found = {(r.metric, r.variant): r for r in fresh if r.kind == "quantile"}
        return [found.get((r.metric, r.variant), r) if r.kind == "quantile" else r for r in rows]

    def _post_stratified(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> dict[tuple[str, str], Any]:
        """(metric, variant) → the comparison post-stratified by the experiment's declared attributes
        (metadata ``post_stratify_by``); empty without a declaration or a source that groups by them."""
        attributes = post_stratify_by(info.metadata)
        fetch = getattr(self.backend, "strata_sums", None)
        if not attributes or fetch is None:
            return {}
        strata = fetch(info, attributes, start, end)
        if not strata:
            return {}
        found = post_stratified_comparisons([(m.name, m.kind) for m in info.metrics], attributes, strata,
                                            control=info.control, alpha=self.alpha)
        return {(c.metric, c.variant): c.result for c in found}

    def _cupedpp(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None, es: Any = None
    ) -> dict[tuple[str, str], Any]:
        """(metric, variant) → its CUPED++ comparison (:mod:`battleground.experiment._cupedpp`), when the
        experiment's metadata declares ``regression_adjustment`` and the source offers the sums: in the
        one scan's ``es.covariates``, else from its own ``covariate_sums``."""
        from battleground.experiment._cupedpp import cupedpp_comparisons, regression_adjustment

        spec = regression_adjustment(info.metadata)
        if spec is None:
            return {}
        arms = getattr(es, "covariates", None)
        if arms is None:
            fetch = getattr(self.backend, "covariate_sums", None)
            arms = fetch(info, spec.attributes, start, end) if fetch is not None else None
        if not arms:
            return {}
        found = cupedpp_comparisons([(m.name, m.kind) for m in info.metrics], arms, control=info.control,
                                    alpha=self.alpha, ridge=spec.ridge)
        return {(c.metric, c.variant): c for c in found}

    def _result(
        self,
        info: ExperimentInfo,
        rows: list[VariantMetricRow],
        srm: SrmResult | None,
        extra: tuple[DataQualityCheck, ...],
        now: dt.datetime | None,
        *,
        cuped: dict[tuple[str, str], Any] | None = None,
        ssrm: SequentialSrmResult | None = None,
        power: tuple[PowerRow, ...] = (),
        post_stratified: dict[tuple[str, str], Any] | None = None,
        cupedpp: dict[tuple[str, str], Any] | None = None,
    ) -> MonitorResult:
        """The rule's decision on ``rows``; ``cuped`` maps (metric, variant) to its CUPED-adjusted
        relative comparison, shown beside the unadjusted row (it does not change the decision).
        ``ssrm`` is the sequential SRM over the daily looks: for a sequential experiment (read every day)
        it is the SRM check that fails, the χ² one only warns."""
        srm_dq = srm_check(srm, peeked=info.sequential and ssrm is not None)
        ssrm_dq = sequential_srm_check(ssrm)
        checks = tuple(c for c in (srm_dq, ssrm_dq) if c is not None) + extra
        decision = decide(info, rows, data_quality=checks, alpha=self.alpha, correction=self.correction, now=now)
        control_value = {r.metric: r.value for r in rows if r.is_control}
        adjusted = cuped or {}
        strat = post_stratified or {}

        def beside(found: dict[tuple[str, str], Any], r: VariantMetricRow, method: str) -> VariantMetricRow | None:
            key = (r.metric, r.variant)
            if key not in found or r.metric not in control_value:
                return None
            return cuped_row(r, found[key], control_value[r.metric], method=method)

        plus = cupedpp or {}
        adjusted_pp = {k: c.adjusted for k, c in plus.items()}

        def reduction(r: VariantMetricRow) -> float | None:
            c = plus.get((r.metric, r.variant))
            return None if c is None or r.metric not in control_value else c.variance_reduction

        out = tuple(MonitorRow.of(r, cuped=beside(adjusted, r, "cuped"),
                                  post_stratified=beside(strat, r, "post-stratified"),
                                  cupedpp=beside(adjusted_pp, r, "cuped++"), cupedpp_variance_reduction=reduction(r))
                    for r in rows)
        used = tuple(dict.fromkeys(n for c in plus.values() for n in c.covariates))
        return MonitorResult(experiment_id=info.id, rows=out, srm=srm, data_quality=checks, decision=decision,
                             sequential_srm=ssrm, power=power, design=_design(info),
                             capping=tuple((m.name, m.capping) for m in info.metrics if m.capping),
                             post_stratify_by=post_stratify_by(info.metadata) if strat else (),
                             cupedpp_covariates=used,
                             quantiles=tuple((m.name, quantile_label(m.quantile)) for m in info.metrics
                                             if m.kind == "quantile"))

    def _data_quality(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> tuple[DataQualityCheck, ...]:
        """Checks a source offers beside SRM (e.g. multiple exposure): its optional ``data_quality``."""
        offer = getattr(self.backend, "data_quality", None)
        if offer is None:
            return ()
        return tuple(c for c in offer(info, start, end) if c is not None)

    def get_daily_result(self, start_dt: Any = None, end_dt: Any = None) -> pd.DataFrame:
        """The same numbers on each day's cumulative data (one block of rows per ``date``), for charts."""
        import pandas as pd

        info = self.experiment()
        start = _to_datetime(start_dt, "start_dt")
        end = _to_datetime(end_dt, "end_dt", end=True)
        frames = []
        for day, rows, srm in self._daily_rows(info, start, end):
            f = results_frame(info.id, rows, srm)
            f.insert(0, "date", pd.Timestamp(day))
            frames.append(f)
        if not frames:
            return pd.DataFrame(columns=["date", *COLUMNS])
        return pd.concat(frames, ignore_index=True)

    def get_srm(self, start_dt: Any = None, end_dt: Any = None) -> SrmResult | None:
        info = self.experiment()
        sums = self.backend.metric_sums(
            info, _to_datetime(start_dt, "start_dt"), _to_datetime(end_dt, "end_dt", end=True)
        )
        return self._srm(info, sums)

    def _analyze(
        self,
        info: ExperimentInfo,
        sums: dict[str, list[Any]],
        *,
        sequential: bool,
        previous_p: dict[tuple[str, str], float] | None = None,
        previous_ci: dict[tuple[str, str], tuple[float, float]] | None = None,
        adjusted: dict[tuple[str, str], tuple[Any, Any]] | None = None,
    ) -> list[VariantMetricRow]:
        return analyze_metrics(
            info.metrics, sums, control=info.control, alpha=self.alpha, sequential=sequential,
            mixing_sd=self.mixing_sd, previous_p=previous_p, correction=self.correction,
            previous_ci=previous_ci, adjusted=adjusted,
        )

    def _srm(self, info: ExperimentInfo, sums: dict[str, list[Any]]) -> SrmResult | None:
        users = _users_per_variant(info, sums)
        if sum(users.values()) == 0:
            return None
        return srm_test([users[v.name] for v in info.variants], [v.weight for v in info.variants])

    def _daily_sums(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[tuple[dt.date, dict[str, list[Any]]]]:
        return list(self.backend.daily_metric_sums(info, start, end))

    def _daily_series(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None
    ) -> tuple[list[tuple[dt.date, dict[str, list[Any]]]], dict[dt.date, Any]]:
        """The daily cumulative sums and, when the experiment declares ``regression_adjustment`` and the
        source's daily one-scan sums carry them, each day's CUPED++ sums (from the same daily scan)."""
        from battleground.experiment._source import cupedpp_attributes

        fetch = getattr(self.backend, "daily_experiment_sums", None)
        if fetch is None or cupedpp_attributes(info) is None:
            return self._daily_sums(info, start, end), {}
        series = list(fetch(info, start, end))
        return ([(day, sums_by_metric(info, found)) for day, found in series],
                {day: found.covariates for day, found in series if found.covariates is not None})

    def _ssrm(self, info: ExperimentInfo, days: list[tuple[Any, dict[str, list[Any]]]]) -> SequentialSrmResult | None:
        """The sequential SRM over the daily cumulative users per variant (``None`` before any user).

        A user excluded later (exposed to a second variant) can lower a cumulative count; the series is
        kept non-decreasing (running maximum), so such a user counts at the first look that saw them."""
        import numpy as np

        counts = np.array([[_users_per_variant(info, sums)[v.name] for v in info.variants] for _, sums in days],
                          dtype=float).reshape(-1, len(info.variants))
        counts = counts[counts.sum(axis=1) > 0]
        if counts.size == 0:
            return None
        return sequential_srm_test(np.maximum.accumulate(counts, axis=0), [v.weight for v in info.variants],
                                   cumulative=True)

    def _power(self, info: ExperimentInfo, sums: dict[str, list[Any]] | None, now: dt.datetime | None
               ) -> tuple[PowerRow, ...]:
        """Mid-experiment power of the primary metric per variant against the planned MDE (gbstats)."""
        if info.mde is None or not sums or not info.metrics:
            return ()
        spec = next((m for m in info.metrics if m.primary), info.metrics[0])
        arms = {s.variant: s for s in sums.get(spec.name, ())}
        if info.control not in arms:
            return ()
        now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        began = info.start_at or info.started_at
        elapsed = (now - began) / dt.timedelta(days=1) if began is not None and now > began else math.nan
        planned_days = info.max_duration_days or (
            (info.end_at - began) / dt.timedelta(days=1) if info.end_at is not None and began is not None else None)
        n_goal = max(1, sum(not m.guardrail for m in info.metrics))
        out = []
        for v in info.variants:
            if v.is_control or v.name not in arms:
                continue
            mom = comparison_moments(spec, arms[info.control], arms[v.name])
            if not (math.isfinite(mom.se_rel) and mom.se_rel > 0 and mom.users >= 2):
                out.append(PowerRow(spec.name, v.name, info.mde, math.nan, math.nan, 0.8, None, math.nan, "",
                                    "not estimable yet (too few users or no variation)"))
                continue
            planned = (2.0 * info.target_sample_size if info.target_sample_size
                       else mom.users * planned_days / elapsed if planned_days and elapsed > 0 else None)
            r = mid_experiment_power(
                mom.se_rel, mom.users, info.mde, alpha=self.alpha, n_goal_metrics=n_goal,
                n_variants=len(info.variants), corrected=self.correction != "none",
                sequential=info.sequential and info.design in ("msprt", "one_sided"), planned_users=planned,
                users_per_day=mom.users / elapsed if elapsed > 0 else None,
            )
            out.append(PowerRow(spec.name, v.name, r.mde, r.power_now, r.power_at_plan, r.target_power,
                                r.additional_users, r.additional_days, r.method, r.message))
        return tuple(out)

    def _daily_rows(
        self, info: ExperimentInfo, start: dt.datetime | None, end: dt.datetime | None,
        *, days: list[tuple[dt.date, dict[str, list[Any]]]] | None = None,
        covariates: dict[dt.date, Any] | None = None,
    ) -> list[tuple[dt.date, list[VariantMetricRow], SrmResult | None]]:
        """Each day's rows on the cumulative data; with the day's CUPED++ sums (``covariates``, read with
        ``days`` when those are not given) each mean or proportion row is the CUPED++-adjusted
        comparison, and a sequential test runs on it (the one-sided and group-sequential designs on the
        plain one)."""
        from battleground.experiment._cupedpp import cupedpp_effects, regression_adjustment

        if days is None:
            days, covariates = self._daily_series(info, start, end)
        if info.sequential and info.design in DESIGN_METHODS:
            return self._design_rows(info, days)
        spec = regression_adjustment(info.metadata) if covariates else None
        kinds = [(m.name, m.kind) for m in info.metrics]
        out = []
        running: dict[tuple[str, str], float] = {}
        running_ci: dict[tuple[str, str], tuple[float, float]] = {}
        for day, sums in days:
            found = (covariates or {}).get(day) if spec is not None else None
            adjusted = (cupedpp_effects(kinds, found, control=info.control, alpha=self.alpha, ridge=spec.ridge)
                        if found and spec is not None else None)
            try:
                rows = self._analyze(
                    info, sums, sequential=info.sequential, previous_p=running, previous_ci=running_ci,
                    adjusted=adjusted,
                )
            except StatsInputError:
                continue  # a day before the control has any users
            if info.sequential:
                for r in rows:
                    if not r.is_control and math.isfinite(r.p_value):
                        running[(r.metric, r.variant)] = r.p_value
                    if not r.is_control and math.isfinite(r.rel_ci_lower) and math.isfinite(r.rel_ci_upper):
                        running_ci[(r.metric, r.variant)] = (r.rel_ci_lower, r.rel_ci_upper)
            out.append((day, rows, self._srm(info, sums)))
        return out

    def _design_rows(
        self, info: ExperimentInfo, days: list[tuple[dt.date, dict[str, list[Any]]]]
    ) -> list[tuple[dt.date, list[VariantMetricRow], SrmResult | None]]:
        """Daily rows under a one-sided or group-sequential design (:func:`design_path`)."""
        usable = [(d, s) for d, s in days
                  if all(any(a.variant == info.control and a.users > 0 for a in s.get(m.name, ())) for m in info.metrics)]
        if not usable:
            return []
        fractions = None
        if info.design != "one_sided":
            target = info.target_sample_size or 0
            if target <= 0:
                raise StatsInputError(
                    f"experiment {info.name!r} has the group-sequential design {info.design!r} but no target "
                    "sample size: set target_sample_size (the looks are placed at users / target)"
                )
            fractions = [max(min(_users_per_variant(info, s).values()), 1) / target for _, s in usable]
        paths = design_path(info.metrics, [s for _, s in usable], control=info.control, design=info.design,
                            information_fractions=fractions, alpha=self.alpha, correction=self.correction)
        return [(d, rows, self._srm(info, s)) for (d, s), rows in zip(usable, paths, strict=True)]

    def _sequential_decision(self, info: ExperimentInfo, now: dt.datetime) -> Decision | None:
        """The rule's verdict on the always-valid results to date (``None`` before any data)."""
        days, day_covariates = self._daily_series(info, None, None)
        daily = self._daily_rows(info, None, None, days=days, covariates=day_covariates)
        if not daily:
            return None
        _, rows, srm = daily[-1]
        return self._result(info, rows, srm, self._data_quality(info, None, None), now,
                            ssrm=self._ssrm(info, days)).decision

    # ------------------------------------------------------------------ end conditions
    def check_end_conditions(self, *, stop: bool = True, now: dt.datetime | None = None,
                             sequential_srm: bool = True) -> EndConditionReport:
        """Evaluate the end conditions; when one is met and ``stop``, stop the experiment with the reason
        in the audit log. An SRM alert is recorded in the audit log but never stops the test.

        The conditions: every variant has ``target_sample_size`` users; ``max_duration_days`` have passed
        since the experiment's window began (its planned ``start_at``, else when it was started); for
        sequential experiments, the decision rule reaches ship or don't ship on the always-valid results.
        ``now`` (naive UTC) defaults to the current time. ``sequential_srm=False`` leaves out the
        always-valid SRM over the daily series (a second scan; status ``"n/a"``), for a reader that shows
        only the totals' SRM, such as the dashboard's list.
        """
        info = self.experiment()
        now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        sums = self.backend.metric_sums(info, None, None)
        users = _users_per_variant(info, sums)
        srm = self._srm(info, sums)
        ssrm = self._ssrm(info, self._daily_sums(info, None, None)) if sequential_srm else None
        reasons: list[str] = []
        if info.target_sample_size and users and min(users.values()) >= info.target_sample_size:
            reasons.append(
                f"target sample size reached: every variant has >= {info.target_sample_size} users "
                f"({', '.join(f'{k}={v}' for k, v in users.items())})"
            )
        began = info.start_at or info.started_at
        if info.max_duration_days and began is not None:
            limit = began + dt.timedelta(days=info.max_duration_days)
            if now >= limit:
                reasons.append(
                    f"maximum duration passed: {info.max_duration_days:g} days since "
                    f"{began:%Y-%m-%d %H:%M} (limit {limit:%Y-%m-%d %H:%M})"
                )
        if info.sequential:
            decision = self._sequential_decision(info, now)
            if decision is not None and decision.verdict in ("ship", "dont_ship"):
                reasons.append(
                    f"sequential boundary crossed: {decision.headline} ({clause_text(decision.clause)}): "
                    + "; ".join(decision.reasons[:2])
                )
        stopped = False
        # the cron checks every day: the always-valid sequential SRM is the one safe to act on daily
        alert = ssrm.status == "alert" if ssrm is not None else srm is not None and srm.status == "alert"
        if alert and stop:  # a dry run or a page view writes nothing
            shown = ssrm.p_value if ssrm is not None else srm.p_value if srm is not None else math.nan
            self.backend.record(
                info.id,
                f"SRM alert: users per variant {users} do not match weights (always-valid p = {shown:.3g}); "
                "results are not trustworthy until the cause is found",
            )
        if reasons and stop and info.status == "running":
            self.backend.stop(info.id, "; ".join(reasons))
            stopped = True
        return EndConditionReport(
            experiment_id=info.id, name=info.name, status="stopped" if stopped else info.status,
            met=bool(reasons), reasons=tuple(reasons), stopped=stopped,
            srm_status=srm.status if srm else "n/a", srm_p_value=srm.p_value if srm else math.nan,
            users_per_variant=users,
            sequential_srm_status=ssrm.status if ssrm else "n/a",
            sequential_srm_p_value=ssrm.p_value if ssrm else math.nan,
        )


def _design(info: ExperimentInfo) -> str:
    return info.design if info.sequential else "fixed"


def _users_per_variant(info: ExperimentInfo, sums: dict[str, list[Any]]) -> dict[str, int]:
    users = {v.name: 0 for v in info.variants}
    for arms in sums.values():
        for s in arms:
            if s.variant in users:
                users[s.variant] = max(users[s.variant], int(s.users))
    return users


def check_experiments(
    client: Any = None,
    experiment_id: Any = None,
    *,
    stop: bool = True,
    source: ExperimentSource | None = None,
    now: dt.datetime | None = None,
) -> list[EndConditionReport]:
    """Evaluate end conditions of one experiment, or of every running one (what the cron job runs).

    Safe to repeat: an experiment that is not running is reported but never stopped twice.
    """
    monitor = Monitor(client=client, source=source)
    ids = [monitor.backend.resolve_id(experiment_id)] if experiment_id is not None else monitor.backend.running_ids()
    reports = []
    for i in ids:
        monitor.experiment_id_ = i
        reports.append(monitor.check_end_conditions(stop=stop, now=now))
    return reports
