"""What :class:`~battleground.experiment.monitoring.Monitor` returns: a typed, frozen result (rows, SRM,
data-quality checks, the decision), with ``to_frame()`` for the seed's DataFrame."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from battleground.experiment._decide import DataQualityCheck, Decision
from battleground.stats import Result, SequentialSrmResult, SrmResult, VariantMetricRow

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "MonitorResult", "MonitorRow", "PowerRow", "cuped_row", "results_frame"]

# the seed's monitoring DataFrame, column by column
COLUMNS = [
    "experiment_id", "metric", "kind", "variant", "is_control", "users", "events", "value",
    "abs_lift", "abs_ci_lower", "abs_ci_upper", "rel_lift", "rel_ci_lower", "rel_ci_upper",
    "p_value", "p_value_adjusted", "method", "significant", "primary", "guardrail",
    "guardrail_breach", "srm_p_value", "srm_status",
]


@dataclass(frozen=True)
class MonitorRow(VariantMetricRow):
    """One (metric, variant) row; ``cuped`` holds the CUPED-adjusted comparison when one was computed,
    ``post_stratified`` the comparison post-stratified by the experiment's declared user attributes
    (method "post-stratified"), ``cupedpp`` the one regression-adjusted by several covariates (method
    "cuped++", CUPED++) with ``cupedpp_variance_reduction`` = 1 − its variance / the plain one's; none
    changes the decision."""

    cuped: VariantMetricRow | None = None
    post_stratified: VariantMetricRow | None = None
    cupedpp: VariantMetricRow | None = None
    cupedpp_variance_reduction: float | None = None

    @classmethod
    def of(cls, row: VariantMetricRow, cuped: VariantMetricRow | None = None,
           post_stratified: VariantMetricRow | None = None, cupedpp: VariantMetricRow | None = None,
           cupedpp_variance_reduction: float | None = None) -> MonitorRow:
        base = {f.name: getattr(row, f.name) for f in fields(VariantMetricRow)}
        return cls(**base, cuped=cuped, post_stratified=post_stratified, cupedpp=cupedpp,
                   cupedpp_variance_reduction=cupedpp_variance_reduction)


@dataclass(frozen=True)
class PowerRow(Result):
    """Mid-experiment power of one (metric, variant) comparison against the planned relative MDE
    (gbstats' method, :func:`battleground.stats.mid_experiment_power`).

    ``power_at_plan``: power at the planned end given what has been seen (NaN without a plan);
    ``additional_users``/``additional_days``: what it takes to reach ``target_power`` (0 when powered,
    None/NaN when not reachable or no rate yet)."""

    metric: str
    variant: str
    mde: float
    power_now: float
    power_at_plan: float
    target_power: float
    additional_users: float | None
    additional_days: float
    method: str
    message: str


@dataclass(frozen=True)
class MonitorResult(Result):
    """The results of one experiment over one window.

    Attributes:
        rows: one row per (metric, variant), control first within each metric.
        srm: the sample-ratio mismatch test (``None`` before any user is exposed).
        data_quality: every data-quality check (SRM, multiple exposure, ...), the SRM one included.
        decision: the verdict of :func:`battleground.experiment._decide.decide`.
        sequential_srm: the always-valid SRM over the daily looks (``None`` without daily data).
        power: mid-experiment power of the primary metric per variant (empty without a planned MDE).
        design: "fixed" or the sequential design (``msprt``, ``one_sided``, ``obrien_fleming``, ``pocock``).
        capping: (metric, how its values were winsorised) for each capped metric, e.g.
            ``("revenue", "capped at the 99.9th percentile")``: its rows compare capped values.
        post_stratify_by: the user attributes the rows' ``post_stratified`` comparisons stratify by.
        cupedpp_covariates: the covariates of the rows' ``cupedpp`` comparisons (CUPED++).
        quantiles: (metric, its level as people write it) for each quantile metric, e.g.
            ``("order_value_p90", "p90")``: its rows compare that quantile of the per-user value.
    """

    experiment_id: int
    rows: tuple[MonitorRow, ...]
    srm: SrmResult | None
    data_quality: tuple[DataQualityCheck, ...]
    decision: Decision
    sequential_srm: SequentialSrmResult | None = None
    power: tuple[PowerRow, ...] = ()
    design: str = "fixed"
    capping: tuple[tuple[str, str], ...] = ()
    post_stratify_by: tuple[str, ...] = ()
    cupedpp_covariates: tuple[str, ...] = ()
    quantiles: tuple[tuple[str, str], ...] = ()

    @property
    def users(self) -> dict[str, int]:
        """Users per variant (the largest count over metrics)."""
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.variant] = max(out.get(r.variant, 0), int(r.users))
        return out

    @property
    def capping_note(self) -> str:
        """The winsorised metrics in one sentence for views ("" when none is capped)."""
        if not self.capping:
            return ""
        parts = "; ".join(f"{m} {text}" for m, text in self.capping)
        return (f"Winsorised: {parts} (each user's value, and its pre-period covariate by the same rule, "
                "computed over the experiment's users): those rows compare capped values.")

    @property
    def quantile_note(self) -> str:
        """The quantile metrics in one sentence for views ("" when there is none)."""
        if not self.quantiles:
            return ""
        parts = ", ".join(f"{m} ({label} of the per-user value)" for m, label in self.quantiles)
        return (f"Quantile metrics: {parts}: effect and interval from the order statistics around the "
                "quantile (Deng, Knoblich and Yu 2018), a z-test (mSPRT when sequential), the relative "
                "effect by the delta method.")

    @property
    def has_cuped(self) -> bool:
        return any(r.cuped is not None for r in self.rows)

    @property
    def has_post_stratified(self) -> bool:
        return any(r.post_stratified is not None for r in self.rows)

    @property
    def has_cupedpp(self) -> bool:
        return any(r.cupedpp is not None for r in self.rows)

    def to_frame(self) -> pd.DataFrame:
        """The seed's DataFrame: one row per (metric, variant) with the columns of :data:`COLUMNS`."""
        return results_frame(self.experiment_id, self.rows, self.srm)


def cuped_row(row: VariantMetricRow, adjusted: Any, control_value: float, method: str = "cuped") -> VariantMetricRow:
    """The CUPED-adjusted comparison of ``row`` as a row (for :attr:`MonitorRow.cuped`).

    ``adjusted`` is a relative-lift result with ``estimate``, ``ci_lower``, ``ci_upper`` and ``p_value``
    (e.g. :func:`battleground.stats.cuped_test` ``(relative=True)``); the absolute lift and its interval
    are the relative ones times ``|control_value|``, and the treatment value is the control value moved
    by the adjusted lift. ``method`` labels the row ("cuped", "post-stratified", "cuped++").
    """
    from dataclasses import replace

    plain = VariantMetricRow(**{f.name: getattr(row, f.name) for f in fields(VariantMetricRow)})
    scale = abs(control_value)
    rel, lo, hi = float(adjusted.estimate), float(adjusted.ci_lower), float(adjusted.ci_upper)
    return replace(
        plain, value=control_value + rel * scale, abs_lift=rel * scale, abs_ci_lower=lo * scale,
        abs_ci_upper=hi * scale, rel_lift=rel, rel_ci_lower=lo, rel_ci_upper=hi,
        p_value=float(adjusted.p_value), p_value_adjusted=math.nan, method=method, significant=False,
        guardrail_breach=False,
    )


def results_frame(experiment_id: int, rows: Any, srm: SrmResult | None) -> pd.DataFrame:
    """Analysis rows as the monitoring DataFrame (the seed's columns, nothing hidden in ``attrs``)."""
    import pandas as pd

    names = [f.name for f in fields(VariantMetricRow)]
    records = []
    for r in rows:
        d = {k: getattr(r, k) for k in names if k != "higher_is_better"}
        d["experiment_id"] = experiment_id
        d["srm_p_value"] = srm.p_value if srm else math.nan
        d["srm_status"] = srm.status if srm else "n/a"
        records.append(d)
    return pd.DataFrame.from_records(records, columns=COLUMNS)
