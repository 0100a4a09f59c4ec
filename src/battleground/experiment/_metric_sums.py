"""From registered metrics to store queries, and from the store's sums to what statistics read.

The one place that knows both sides of the seam: a registry :class:`MetricRecord` becomes a storage
:class:`MetricQuery` (conversion window, CUPED lookback), and an :class:`ExperimentSums` becomes the
per-metric mappings :func:`battleground.stats.analyze_metrics` reads, the exposure check, and the CUPED
comparisons (adjusted beside unadjusted, with the pre-period bias check).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from battleground.errors import ExperimentError
from battleground.storage._sums_sql import MULTIPLE_EXPOSURES, MetricQuery
from battleground.storage.sums import ExperimentSums, MetricSums

if TYPE_CHECKING:
    from battleground.experiment._records import MetricRecord
    from battleground.stats import EffectResult

__all__ = [
    "MULTIPLE_EXPOSURES",
    "CupedComparison",
    "ExposureCheck",
    "SourceSettingError",
    "check_multiple_exposures",
    "cuped_comparisons",
    "exposure_check",
    "metric_query",
]

# Above this share of users exposed to more than one variant the assignment or logging is broken.
MULTIPLE_EXPOSURE_ALERT = 0.01


def metric_query(m: MetricRecord) -> MetricQuery:
    """The store's definition of a registered metric."""
    return MetricQuery(m.kind, m.numerator, m.denominator, window_days=m.conversion_window_days,
                       lookback_days=m.cuped_lookback_days)


class SourceSettingError(ExperimentError, ValueError):
    """A setting of where and how results are read is invalid."""


def check_multiple_exposures(value: str) -> str:
    """``value`` if it names a policy for users exposed to several variants, else a clear error."""
    if value not in MULTIPLE_EXPOSURES:
        raise SourceSettingError(
            f"multiple_exposures must be one of {list(MULTIPLE_EXPOSURES)}, got {value!r}; "
            "'exclude' (default) drops users who saw several variants"
        )
    return value


@dataclass(frozen=True)
class ExposureCheck:
    """The multiple-exposure data-quality check of one experiment (beside SRM).

    Attributes:
        exposed_users: distinct users exposed in the window.
        multiple_exposure_users: users exposed to more than one variant.
        share: their share of the exposed users.
        policy: what the results did with them (``exclude``, ``first`` or ``keep``).
        status: ``"ok"``, or ``"alert"`` when the share exceeds 1 % (assignment or logging is broken).
    """

    exposed_users: int
    multiple_exposure_users: int
    share: float
    policy: str
    status: str

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def exposure_check(sums: ExperimentSums) -> ExposureCheck:
    share = sums.multiple_exposure_share
    return ExposureCheck(sums.exposed_users, sums.multiple_exposure_users, share, sums.multiple_exposures,
                         "alert" if share > MULTIPLE_EXPOSURE_ALERT else "ok")


@dataclass(frozen=True)
class CupedComparison:
    """One (metric, variant) compared with control, with and without the CUPED adjustment.

    Attributes:
        metric, variant: what is compared (against the control).
        unadjusted, adjusted: the relative-lift comparisons (``EffectResult``), without and with CUPED
            (covariate = the same metric over the lookback window before each user's first exposure).
        pre_period_p_value: the covariate analysed as if it were the response (Welch); a small value
            means the arms differed before the experiment (a bias the adjustment corrects, and a data
            quality flag).
    """

    metric: str
    variant: str
    unadjusted: EffectResult
    adjusted: EffectResult
    pre_period_p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "variant": self.variant, "unadjusted": self.unadjusted.to_dict(),
                "adjusted": self.adjusted.to_dict(), "pre_period_p_value": self.pre_period_p_value}


def _covariate(s: MetricSums) -> Any:
    """The covariate's exact moments (from the shifted sums)."""
    from battleground.stats import MeanSummary

    n = s.users
    var = (s.sum_c2 - s.sum_c * s.sum_c / n) / (n - 1) if n > 1 else math.nan
    return MeanSummary(n=float(n), mean=s.shift_c + s.sum_c / n if n else math.nan, var=max(var, 0.0))


def cuped_comparisons(
    metrics: Sequence[tuple[str, str]], sums: ExperimentSums, *, control: str, alpha: float = 0.05,
) -> list[CupedComparison]:
    """CUPED beside the plain comparison for every (metric, treatment variant) of proportion and mean
    metrics with at least 2 users per arm; ``metrics`` are ``(name, kind)`` in the order of
    ``sums.metrics``. Ratio metrics are left out (their covariate would need its own denominator)."""
    from battleground.stats import StatsInputError, compare_means, cuped_test

    out = []
    for (name, kind), arms in zip(metrics, sums.metrics, strict=True):
        if kind == "ratio":
            continue
        by_name = {s.variant: s for s in arms}
        ctrl = by_name.get(control)
        if ctrl is None or ctrl.users < 2:
            continue
        for s in arms:
            if s.variant == control or s.users < 2:
                continue
            c, t = ctrl.unshifted(), s.unshifted()
            try:
                plain = compare_means(c, t, relative=True, alpha=alpha, proportion=kind == "proportion")
                adjusted = cuped_test(c, t, relative=True, alpha=alpha)
                bias = compare_means(_covariate(ctrl), _covariate(s), alpha=alpha).p_value
            except StatsInputError:
                continue  # e.g. a control mean of 0: nothing to compare yet
            out.append(CupedComparison(name, s.variant, plain, adjusted, float(bias)))
    return out
