"""From registered metrics to store queries, and from the store's sums to what statistics read.

The one place that knows both sides of the seam: a registry :class:`MetricRecord` becomes a storage
:class:`MetricQuery` (conversion window, CUPED lookback), and an :class:`ExperimentSums` becomes the
per-metric mappings :func:`battleground.stats.analyze_metrics` reads, the exposure check, and the CUPED
comparisons (adjusted beside unadjusted, with the pre-period bias check).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from battleground._suggest import suggest
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
    "PostStratifiedComparison",
    "SourceSettingError",
    "capping_text",
    "check_multiple_exposures",
    "cuped_comparisons",
    "exposure_check",
    "metric_quantiles",
    "metric_query",
    "post_stratified_comparisons",
    "post_stratify_by",
    "quantile_label",
]

# Above this share of users exposed to more than one variant the assignment or logging is broken.
MULTIPLE_EXPOSURE_ALERT = 0.01


def metric_query(m: MetricRecord) -> MetricQuery:
    """The store's definition of a registered metric (a quantile metric's per-user value is a mean
    metric's, Σ value per user; its quantile comes from :func:`metric_quantiles`' scan)."""
    kind = "mean" if m.kind == "quantile" else m.kind
    return MetricQuery(kind, m.numerator, m.denominator, window_days=m.conversion_window_days,
                       lookback_days=m.cuped_lookback_days, cap_quantile=m.cap_quantile, cap_value=m.cap_value)


def metric_quantiles(metrics: Sequence[MetricRecord]) -> dict[int, float]:
    """``{index: level}`` of the quantile metrics among ``metrics`` (the store's ``quantile_sums``)."""
    return {j: float(m.quantile) for j, m in enumerate(metrics) if m.kind == "quantile" and m.quantile is not None}


def quantile_label(nu: float | None) -> str:
    """A quantile level as people write it.

    Example:
        >>> quantile_label(0.9), quantile_label(0.5), quantile_label(0.999), quantile_label(None)
        ('p90', 'p50', 'p99.9', '')
    """
    return "" if nu is None else f"p{100 * nu:.10g}"


def capping_text(cap_quantile: float | None, cap_value: float | None) -> str:
    """A metric's winsorisation in words, for views ("" when none).

    Example:
        >>> capping_text(0.999, None), capping_text(None, 25.0), capping_text(None, None)
        ('capped at the 99.9th percentile', 'capped at 25', '')
    """
    if cap_quantile is not None:
        return f"capped at the {100 * cap_quantile:.10g}th percentile"
    if cap_value is not None:
        return f"capped at {cap_value:.10g}"
    return ""


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
    """CUPED beside the plain comparison for every (metric, treatment variant) with at least 2 users per
    arm; ``metrics`` are ``(name, kind)`` in the order of ``sums.metrics``. A ratio metric is adjusted
    by its pre-period ratio (:func:`battleground.stats.ratio_cuped_test`, gbstats' estimator) when
    its users have pre-period denominator events."""
    from battleground.stats import StatsInputError, compare_means, cuped_test

    out = []
    for (name, kind), arms in zip(metrics, sums.metrics, strict=True):
        if kind == "quantile":
            continue  # the quantile's test reads order statistics, not these sums (docs/ab-testing.md)
        if kind == "ratio":
            out.extend(_ratio_comparisons(name, arms, control, alpha))
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


def _pre_period_ratio(s: MetricSums) -> MetricSums:
    """The pre-period ratio c/e of a ratio metric's sums, as the sums of a ratio metric."""
    from dataclasses import replace

    return replace(s, sum_x=s.sum_c, sum_x2=s.sum_c2, sum_y=s.sum_e, sum_y2=s.sum_e2, sum_xy=s.sum_ce,
                   shift=s.shift_c)


def _ratio_comparisons(name: str, arms: Sequence[MetricSums], control: str, alpha: float) -> list[CupedComparison]:
    """Ratio CUPED beside the plain ratio test for each treatment of one ratio metric (nothing without
    pre-period denominators: there is no pre-period ratio to adjust by)."""
    from battleground.stats import StatsInputError, ratio_cuped_test, ratio_test

    by_name = {s.variant: s for s in arms}
    ctrl = by_name.get(control)
    if ctrl is None or ctrl.users < 2 or not any(s.unshifted().sum_e > 0 for s in arms):
        return []
    out = []
    for s in arms:
        if s.variant == control or s.users < 2:
            continue
        try:
            plain = ratio_test(ctrl, s, relative=True, alpha=alpha)
            adjusted = ratio_cuped_test(ctrl, s, relative=True, alpha=alpha)
        except StatsInputError:
            continue  # e.g. an arm without denominator events yet
        try:
            bias = ratio_test(_pre_period_ratio(ctrl), _pre_period_ratio(s), alpha=alpha).p_value
        except StatsInputError:
            bias = math.nan  # an arm without pre-period denominators: no pre-period ratio to compare
        out.append(CupedComparison(name, s.variant, plain, adjusted, float(bias)))
    return out


# ------------------------------------------------------------------ post-stratification
POST_STRATIFY_KEY = "post_stratify_by"


def post_stratify_by(metadata: Any) -> tuple[str, ...]:
    """The user attributes an experiment declares for post-stratification: its metadata's
    ``post_stratify_by`` (an attribute name or a list of up to 8), each the event type of the events
    whose ``value`` codes a user's stratum (``()`` when none is declared).

    Example:
        >>> post_stratify_by({"post_stratify_by": ["country", "platform"]}), post_stratify_by({})
        (('country', 'platform'), ())
    """
    return _declared_attributes(metadata, POST_STRATIFY_KEY, "the stratum", ["country"])


def _declared_attributes(metadata: Any, key: str, codes: str, example: list[str]) -> tuple[str, ...]:
    """Metadata ``key``: an attribute name or a list of 1 to 8 distinct ones (``()`` when absent)."""
    raw = metadata.get(key) if isinstance(metadata, Mapping) else None
    if raw is None:
        return ()
    names = [raw] if isinstance(raw, str) else raw
    if (not isinstance(names, list | tuple) or not names or len(names) > 8
            or not all(isinstance(a, str) and a.strip() and a != "exposure" for a in names)
            or len(set(names)) != len(names)):
        raise SourceSettingError(
            f"metadata {key} must be an attribute name or a list of 1 to 8 distinct names "
            f"(event types other than 'exposure' whose value codes {codes}), got {raw!r}; e.g. "
            f'{{"{key}": {json.dumps(example)}}}'
        )
    return tuple(str(a) for a in names)


# Breakdowns declare attributes as post-stratification does; parsed here so that registration checks
# them without importing the statistics (experiment/_breakdown.py computes them).
BREAKDOWN_KEY = "breakdown_by"


def breakdown_by(metadata: Any) -> tuple[str, ...]:
    """The attributes an experiment's metadata declares for breakdowns (``()`` when none).

    Example:
        >>> breakdown_by({"breakdown_by": ["country", "platform"]}), breakdown_by({"breakdown_by": "new_user"})
        (('country', 'platform'), ('new_user',))
    """
    return _declared_attributes(metadata, BREAKDOWN_KEY, "the user's slice", ["country", "platform"])


def breakdown_attributes(metadata: Any) -> tuple[str, ...]:
    """Every attribute an experiment may be broken down by: ``breakdown_by`` then ``post_stratify_by``."""
    return tuple(dict.fromkeys((*breakdown_by(metadata), *post_stratify_by(metadata))))


def check_breakdown_attribute(metadata: Any, attribute: str) -> str:
    """``attribute`` if the experiment declares it, else an error naming the declared ones."""
    declared = breakdown_attributes(metadata)
    if attribute not in declared:
        raise SourceSettingError(
            f"by={attribute!r} is not an attribute this experiment declares{suggest(attribute, declared)}; "
            f"declared: {list(declared)!r}; add it to the experiment's metadata, e.g. "
            f'{{"{BREAKDOWN_KEY}": [{attribute!r}]}}'
        )
    return attribute


@dataclass(frozen=True)
class PostStratifiedComparison:
    """One (metric, variant) compared with control within strata of the declared attributes.

    Attributes:
        metric, variant: what is compared (against the control).
        attributes: the attributes stratified by.
        result: the post-stratified relative comparison (:class:`battleground.stats.PostStratifiedResult`,
            its ``strata`` labelled ``attribute=value``, ``variance_reduction`` against the unstratified
            test on the same data).
    """

    metric: str
    variant: str
    attributes: tuple[str, ...]
    result: Any

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "variant": self.variant, "attributes": list(self.attributes),
                "result": self.result.to_dict()}


def _stratum_label(attributes: Sequence[str], key: Sequence[float | None]) -> str:
    return ", ".join(f"{a}={'(none)' if v is None else format(v, 'g')}" for a, v in zip(attributes, key, strict=True))


def _arm_summary(s: MetricSums, kind: str) -> Any:
    from battleground.stats import MeanSummary, RatioSummary

    if kind == "ratio":
        return RatioSummary(n=float(s.users), sum_m=s.sum_x, sum_d=s.sum_y, sum_m2=s.sum_x2, sum_d2=s.sum_y2,
                            sum_md=s.sum_xy, shift_m=s.shift, shift_d=s.shift_y)
    if kind == "proportion" and s.users:
        return MeanSummary.from_proportion(s.shift * s.users + s.sum_x, s.users)
    return MeanSummary.from_sums(s.users, s.sum_x, s.sum_x2, shift=s.shift)


def post_stratified_comparisons(
    metrics: Sequence[tuple[str, str]], attributes: Sequence[str],
    strata: Sequence[tuple[Sequence[float | None], ExperimentSums]], *, control: str, alpha: float = 0.05,
) -> list[PostStratifiedComparison]:
    """The post-stratified relative comparison of every (metric, treatment variant) from the per-stratum
    sums of :meth:`battleground.storage.events.EventStore.strata_sums`; ``metrics`` are ``(name, kind)``
    in the order of the sums. A comparison that cannot be made yet (e.g. a control of 0) is left out."""
    from battleground.stats import StatsInputError, Stratum, post_stratified_test

    out = []
    labels = [_stratum_label(attributes, key) for key, _ in strata]
    for j, (name, kind) in enumerate(metrics):
        if kind == "quantile":
            continue  # a quantile does not add up over strata
        per = [{s.variant: s for s in sums.metrics[j]} for _, sums in strata]
        variants = [s.variant for s in strata[0][1].metrics[j]] if strata else []
        for v in variants:
            if v == control:
                continue
            cells = [Stratum(lab, _arm_summary(arms[control], kind), _arm_summary(arms[v], kind))
                     for lab, arms in zip(labels, per, strict=True) if control in arms and v in arms]
            try:
                result = post_stratified_test(cells, relative=True, alpha=alpha)
            except StatsInputError:
                continue
            out.append(PostStratifiedComparison(name, v, tuple(attributes), result))
    return out
