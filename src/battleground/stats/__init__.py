"""Pure A/B-test statistics: summary statistics in, frozen result dataclasses out.

Nothing here touches storage. Every test accepts explicit summaries (:class:`MeanSummary`,
:class:`RatioSummary`, :class:`CupedSummary`), ``battleground.storage.sums.MetricSums`` or raw arrays.
The public face for users is :mod:`battleground.experiment.ab_test`, which re-exports these names.
"""

from __future__ import annotations

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
from battleground.stats._corrections import CorrectionResult, adjust_pvalues
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
from battleground.stats._sequential import (
    SequentialPath,
    SequentialResult,
    confidence_sequence,
    msprt,
    msprt_path,
)
from battleground.stats._srm import SrmResult, srm_test
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
    "BayesResult",
    "CorrectionResult",
    "CupedSummary",
    "DurationResult",
    "EffectResult",
    "MdeResult",
    "MeanSummary",
    "MetricSpec",
    "PowerResult",
    "RatioSummary",
    "Result",
    "SampleSizeResult",
    "SequentialPath",
    "SequentialResult",
    "SrmResult",
    "StatsInputError",
    "VariantMetricRow",
    "adjust_pvalues",
    "analyze_metrics",
    "bayes_from_estimate",
    "bayesian_test",
    "compare_means",
    "confidence_sequence",
    "cuped_test",
    "cuped_theta",
    "estimate_duration",
    "mde_means",
    "mde_proportions",
    "msprt",
    "msprt_path",
    "power_means",
    "power_proportions",
    "ratio_test",
    "relative_lift",
    "sample_size_means",
    "sample_size_proportions",
    "sample_size_ratio",
    "srm_test",
    "t_test",
    "welch_t_test",
    "z_test_proportions",
]
