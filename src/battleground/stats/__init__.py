"""Pure A/B-test statistics: summary statistics in, frozen result dataclasses out.

Nothing here touches storage. Every test accepts explicit summaries (:class:`MeanSummary`,
:class:`RatioSummary`, :class:`CupedSummary`), ``battleground.storage.sums.MetricSums`` or raw arrays.
The public face for users is :mod:`battleground.experiment.ab_test`, which re-exports these names.
"""

from __future__ import annotations

from battleground.stats._aa import AaResult, aa_resplits
from battleground.stats._analysis import (
    MetricSpec,
    VariantMetricRow,
    analyze_metrics,
)
from battleground.stats._base import (
    CupedSummary,
    MeanSummary,
    RatioSummary,
    Result,
    StatsInputError,
)
from battleground.stats._bayes import BayesResult, bayes_from_estimate, bayesian_test
from battleground.stats._breakdown import BreakdownResult, SliceEffect, breakdown_test
from battleground.stats._corrections import CorrectionResult, adjust_pvalues
from battleground.stats._cuped_ratio import RatioCupedSummary, ratio_cuped_test, ratio_cuped_theta
from battleground.stats._group_sequential import (
    SPENDING,
    GroupSequentialBounds,
    GroupSequentialResult,
    alpha_spent,
    group_sequential_bounds,
    group_sequential_test,
)
from battleground.stats._midpower import MidExperimentPowerResult, mid_experiment_power, power_after
from battleground.stats._one_sided import one_sided_confidence_sequence
from battleground.stats._planning import (
    DurationResult,
    MdeResult,
    PowerResult,
    SampleSizeResult,
    estimate_duration,
    mde_means,
    mde_proportions,
    power_means,
    power_proportions,
    sample_size_means,
    sample_size_proportions,
    sample_size_ratio,
)
from battleground.stats._poststrat import (
    PostStratifiedResult,
    Stratum,
    post_stratified_test,
    post_stratify_moments,
)
from battleground.stats._quantile import (
    QuantileTestResult,
    quantile_bound_levels,
    quantile_test,
    quantile_variance,
)
from battleground.stats._regression_adjust import (
    CovariateSummary,
    RegressionAdjustedResult,
    regression_adjusted_test,
)
from battleground.stats._sequential import (
    SequentialPath,
    SequentialResult,
    confidence_sequence,
    msprt,
    msprt_path,
)
from battleground.stats._srm import SrmResult, srm_test
from battleground.stats._ssrm import SequentialSrmResult, sequential_srm_test
from battleground.stats._tests import (
    EffectResult,
    compare_means,
    cuped_test,
    cuped_theta,
    ratio_test,
    relative_lift,
    t_test,
    welch_t_test,
    z_test_proportions,
)

__all__ = [
    "SPENDING",
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
    "MetricSpec",
    "MidExperimentPowerResult",
    "PostStratifiedResult",
    "PowerResult",
    "QuantileTestResult",
    "RatioCupedSummary",
    "RatioSummary",
    "RegressionAdjustedResult",
    "Result",
    "SampleSizeResult",
    "SequentialPath",
    "SequentialResult",
    "SequentialSrmResult",
    "SliceEffect",
    "SrmResult",
    "StatsInputError",
    "Stratum",
    "VariantMetricRow",
    "aa_resplits",
    "adjust_pvalues",
    "alpha_spent",
    "analyze_metrics",
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
