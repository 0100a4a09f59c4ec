"""A/B-test statistics: the seed's ``experiment.ab_test`` module.

Everything here is a pure function of summary statistics (re-exported from :mod:`battleground.stats`),
plus the seed's facade :class:`ABTest`.

Example (the seed's example, with the inputs it left out filled in):
    >>> from battleground.experiment.ab_test import ABTest
    >>> abtest = ABTest(control=(1000, 10000), treatment=(1100, 10000), metric="proportion", mde=0.1)
    >>> round(abtest.get_t_test().p_value, 6)
    0.021068
    >>> abtest.get_sample_size().n_control_ceil
    14749
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from battleground.stats import (
    SPENDING,
    AaResult,
    BayesResult,
    BreakdownResult,
    CorrectionResult,
    CovariateSummary,
    CupedSummary,
    DurationResult,
    EffectResult,
    GroupSequentialBounds,
    GroupSequentialResult,
    MdeResult,
    MeanSummary,
    MidExperimentPowerResult,
    PostStratifiedResult,
    PowerResult,
    QuantileTestResult,
    RatioCupedSummary,
    RatioSummary,
    RegressionAdjustedResult,
    SampleSizeResult,
    SequentialPath,
    SequentialResult,
    SequentialSrmResult,
    SliceEffect,
    SrmResult,
    StatsInputError,
    Stratum,
    aa_resplits,
    adjust_pvalues,
    alpha_spent,
    bayes_from_estimate,
    bayesian_test,
    breakdown_test,
    compare_means,
    confidence_sequence,
    cuped_test,
    cuped_theta,
    estimate_duration,
    group_sequential_bounds,
    group_sequential_test,
    mde_means,
    mde_proportions,
    mid_experiment_power,
    msprt,
    msprt_path,
    one_sided_confidence_sequence,
    post_stratified_test,
    post_stratify_moments,
    power_after,
    power_means,
    power_proportions,
    quantile_bound_levels,
    quantile_test,
    quantile_variance,
    ratio_cuped_test,
    ratio_cuped_theta,
    ratio_test,
    regression_adjusted_test,
    relative_lift,
    sample_size_means,
    sample_size_proportions,
    sample_size_ratio,
    sequential_srm_test,
    srm_test,
    t_test,
    welch_t_test,
    z_test_proportions,
)
from battleground.stats._base import as_mean_summary, as_ratio_summary

__all__ = [
    "SPENDING",
    "ABTest",
    "AaResult",
    "BayesResult",
    "BreakdownResult",
    "CorrectionResult",
    "CovariateSummary",
    "CupedSummary",
    "DurationResult",
    "EffectResult",
    "GroupSequentialBounds",
    "GroupSequentialResult",
    "MdeResult",
    "MeanSummary",
    "MidExperimentPowerResult",
    "PostStratifiedResult",
    "PowerResult",
    "QuantileTestResult",
    "RatioCupedSummary",
    "RatioSummary",
    "RegressionAdjustedResult",
    "SampleSizeResult",
    "SequentialPath",
    "SequentialResult",
    "SequentialSrmResult",
    "SliceEffect",
    "SrmResult",
    "StatsInputError",
    "Stratum",
    "aa_resplits",
    "adjust_pvalues",
    "alpha_spent",
    "bayes_from_estimate",
    "bayesian_test",
    "breakdown_test",
    "compare_means",
    "confidence_sequence",
    "cuped_test",
    "cuped_theta",
    "estimate_duration",
    "group_sequential_bounds",
    "group_sequential_test",
    "mde_means",
    "mde_proportions",
    "mid_experiment_power",
    "msprt",
    "msprt_path",
    "one_sided_confidence_sequence",
    "post_stratified_test",
    "post_stratify_moments",
    "power_after",
    "power_means",
    "power_proportions",
    "quantile_bound_levels",
    "quantile_test",
    "quantile_variance",
    "ratio_cuped_test",
    "ratio_cuped_theta",
    "ratio_test",
    "regression_adjusted_test",
    "relative_lift",
    "sample_size_means",
    "sample_size_proportions",
    "sample_size_ratio",
    "sequential_srm_test",
    "srm_test",
    "t_test",
    "welch_t_test",
    "z_test_proportions",
]

_METRICS = ("mean", "proportion", "ratio", "cuped")


class ABTest:
    """The seed's facade: one object holding an A/B test's data and design, with ``get_*`` verbs.

    The constructor only stores its keyword arguments (scikit-learn style; checked when a verb runs).

    Args:
        control, treatment: the arms' data — a ``MetricSums`` (what ``events.metric_sums`` returns),
            a :class:`MeanSummary`/:class:`RatioSummary`/:class:`CupedSummary`, raw per-user arrays,
            or for proportions a ``(successes, n)`` tuple. Optional for planning only.
        metric: ``"mean"`` (default), ``"proportion"``, ``"ratio"`` (ΣM/ΣD per user, delta method) or
            ``"cuped"`` (pre-period covariate).
        alpha, power, alternative: test level, target power, ``"two-sided"``/``"greater"``/``"less"``.
        equal_var: Student's pooled t instead of Welch (``metric="mean"`` only).
        baseline: control mean or rate for planning (default: taken from ``control``).
        mde: minimum detectable effect for planning, > 0.
        relative_mde: ``mde`` is a fraction of the baseline (default) or an absolute change.
        std: per-user standard deviation for planning a mean (default: taken from ``control``).
        ratio: allocation ratio n_treatment / n_control. n_arms: arms including control.
        sample_size_method: planning formula; default ``"unpooled"`` (proportions) or ``"normal"``.
        tau2: mSPRT mixing variance for :meth:`get_sequential` (default (0.1·|control mean|)²).
    """

    def __init__(
        self,
        *,
        control: Any = None,
        treatment: Any = None,
        metric: str = "mean",
        alpha: float = 0.05,
        power: float = 0.8,
        alternative: str = "two-sided",
        equal_var: bool = False,
        baseline: float | None = None,
        mde: float | None = None,
        relative_mde: bool = True,
        std: float | None = None,
        ratio: float = 1.0,
        n_arms: int = 2,
        sample_size_method: str | None = None,
        tau2: float | None = None,
    ) -> None:
        self.control = control
        self.treatment = treatment
        self.metric = metric
        self.alpha = alpha
        self.power = power
        self.alternative = alternative
        self.equal_var = equal_var
        self.baseline = baseline
        self.mde = mde
        self.relative_mde = relative_mde
        self.std = std
        self.ratio = ratio
        self.n_arms = n_arms
        self.sample_size_method = sample_size_method
        self.tau2 = tau2

    # scikit-learn's parameter protocol, by introspection (clone/grid-search friendly)
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> ABTest:
        valid = set(self._get_param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for ABTest; valid: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.get_params().items() if k not in ("control", "treatment")}
        return f"ABTest({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    # ------------------------------------------------------------------------------------------
    def _arms(self, control: Any, treatment: Any) -> tuple[Any, Any]:
        c = self.control if control is None else control
        t = self.treatment if treatment is None else treatment
        if c is None or t is None:
            raise StatsInputError(
                "ABTest has no data: pass control= and treatment= (MetricSums, summaries, arrays, or "
                "(successes, n) for proportions) to ABTest(...) or to this method"
            )
        if self.metric not in _METRICS:
            raise StatsInputError(f"metric must be one of {_METRICS}, got {self.metric!r}")
        return c, t

    def _effect(self, control: Any, treatment: Any, *, relative: bool) -> EffectResult:
        c, t = self._arms(control, treatment)
        if self.metric == "ratio":
            return ratio_test(c, t, relative=relative, alpha=self.alpha, alternative=self.alternative)  # type: ignore[arg-type]
        if self.metric == "cuped":
            return cuped_test(c, t, relative=relative, alpha=self.alpha, alternative=self.alternative)  # type: ignore[arg-type]
        return compare_means(
            c, t, relative=relative, proportion=self.metric == "proportion",
            equal_var=self.equal_var, alpha=self.alpha, alternative=self.alternative,  # type: ignore[arg-type]
        )

    def get_t_test(self, control: Any = None, treatment: Any = None) -> EffectResult:
        """Absolute difference treatment − control: Welch t (or Student with ``equal_var=True``),
        delta-method for ratios, CUPED-adjusted for ``metric="cuped"``."""
        return self._effect(control, treatment, relative=False)

    def get_relative_lift(self, control: Any = None, treatment: Any = None) -> EffectResult:
        """Relative lift (μT − μC)/|μC| with a delta-method confidence interval."""
        return self._effect(control, treatment, relative=True)

    def get_bayesian(
        self, control: Any = None, treatment: Any = None, *, prior_sd: float | None = None
    ) -> BayesResult:
        """Chance to beat control and expected loss on the relative lift (normal approximation)."""
        eff = self._effect(control, treatment, relative=True)
        return bayes_from_estimate(eff.estimate, eff.se, relative=True, prior_sd=prior_sd, alpha=self.alpha)

    def get_sequential(self, control: Any = None, treatment: Any = None) -> SequentialResult:
        """mSPRT always-valid p-value and CI on the absolute difference at this look."""
        eff = self._effect(control, treatment, relative=False)
        tau2 = self.tau2 if self.tau2 is not None else (0.1 * abs(eff.control_mean)) ** 2
        if not tau2 > 0:
            raise StatsInputError("control mean is 0, so the default tau2 is 0; pass tau2= explicitly")
        return msprt(eff.estimate, eff.se, tau2=tau2, alpha=self.alpha)

    def get_sample_size(self, baseline: float | None = None, mde: float | None = None) -> SampleSizeResult:
        """Users per arm needed to detect ``mde`` with ``power`` at ``alpha`` (formula in the result)."""
        mde = self.mde if mde is None else mde
        if mde is None:
            raise StatsInputError("mde is missing: pass mde= (e.g. mde=0.05 for +5 %) to ABTest or here")
        base = self.baseline if baseline is None else baseline
        common = dict(
            alpha=self.alpha, power=self.power, ratio=self.ratio, alternative=self.alternative,
            n_arms=self.n_arms,
        )
        if self.metric == "ratio":
            if self.control is None:
                raise StatsInputError("metric='ratio' plans from pre-period data: pass control=")
            return sample_size_ratio(
                as_ratio_summary(self.control, "control"), mde, relative=self.relative_mde, **common  # type: ignore[arg-type]
            )
        if self.metric == "proportion":
            if base is None:
                if self.control is None:
                    raise StatsInputError("baseline is missing: pass baseline= (e.g. 0.1) or control=")
                base = self._control_summary(proportion=True).mean
            return sample_size_proportions(
                base, mde, relative=self.relative_mde,
                method=self.sample_size_method or "unpooled", **common,  # type: ignore[arg-type]
            )
        std = self.std
        if std is None or (base is None and self.relative_mde):
            if self.control is None:
                raise StatsInputError(
                    "planning a mean needs std= (and baseline= for a relative mde) or control= data"
                )
            s = self._control_summary(proportion=False)
            std = math.sqrt(s.var) if std is None else std
            base = s.mean if base is None else base
        return sample_size_means(
            mde, std, baseline_mean=base, relative=self.relative_mde,
            method=self.sample_size_method or "normal", **common,  # type: ignore[arg-type]
        )

    def _control_summary(self, *, proportion: bool) -> MeanSummary:
        c = self.control
        if proportion and isinstance(c, tuple) and len(c) == 2:
            return MeanSummary.from_proportion(c[0], c[1])
        if self.metric == "cuped" and isinstance(c, CupedSummary):
            return MeanSummary.from_sums(c.n, c.sum_y, c.sum_y2, shift=c.shift_y)
        return as_mean_summary(c, "control", proportion=proportion)
