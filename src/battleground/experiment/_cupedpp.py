"""CUPED++ from the experiment's definition: which covariates, and the comparisons from the store's sums.

An experiment opts in with its metadata ``regression_adjustment``: ``true`` (the pre-period values of
all its metrics), or ``{"attributes": [...], "ridge": 0.01}`` to add declared numeric user attributes
(attribute events, as for ``post_stratify_by``: events of type ``a`` whose ``value`` is the user's
attribute, logged at or before exposure) and set the ridge penalty. A CUPAC prediction
(:mod:`battleground.experiment._cupac`) is one such attribute. Each mean or proportion metric is then
compared by :func:`battleground.stats.regression_adjusted_test` beside the plain row (ratio metrics
keep their own CUPED; a ratio's pre-period numerator is still a covariate of the other metrics).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from battleground.experiment._metric_sums import SourceSettingError

__all__ = [
    "REGRESSION_KEY",
    "CupedPlusPlusComparison",
    "RegressionAdjustmentSpec",
    "cupedpp_comparisons",
    "cupedpp_effects",
    "regression_adjustment",
]

REGRESSION_KEY = "regression_adjustment"
DEFAULT_RIDGE = 0.01


@dataclass(frozen=True)
class RegressionAdjustmentSpec:
    """What an experiment's ``regression_adjustment`` metadata asks for.

    Attributes:
        attributes: numeric user attributes (event types) used as covariates beside every metric's
            pre-period value.
        ridge: the ridge penalty λ (0: OLS).
    """

    attributes: tuple[str, ...] = ()
    ridge: float = DEFAULT_RIDGE


def _bad(raw: Any, why: str) -> SourceSettingError:
    return SourceSettingError(
        f"metadata {REGRESSION_KEY} {why}, got {raw!r}; use true, or e.g. "
        f'{{"{REGRESSION_KEY}": {{"attributes": ["age", "tenure_days"], "ridge": {DEFAULT_RIDGE}}}}}'
    )


def regression_adjustment(metadata: Any) -> RegressionAdjustmentSpec | None:
    """The CUPED++ an experiment declares (``None`` when it does not).

    Example:
        >>> regression_adjustment({"regression_adjustment": {"attributes": ["age"]}})
        RegressionAdjustmentSpec(attributes=('age',), ridge=0.01)
        >>> regression_adjustment({}) is None, regression_adjustment({"regression_adjustment": True}).attributes
        (True, ())
    """
    raw = (metadata or {}).get(REGRESSION_KEY) if isinstance(metadata, dict) else None
    if raw is None or raw is False:
        return None
    if raw is True:
        return RegressionAdjustmentSpec()
    if not isinstance(raw, dict) or set(raw) - {"attributes", "ridge"}:
        raise _bad(raw, "must be true or an object with 'attributes' and/or 'ridge'")
    attrs = raw.get("attributes") or []
    attrs = [attrs] if isinstance(attrs, str) else attrs
    if (not isinstance(attrs, list | tuple) or len(attrs) > 8 or len(set(attrs)) != len(attrs)
            or not all(isinstance(a, str) and a.strip() and a != "exposure" for a in attrs)):
        raise _bad(raw, "attributes must be up to 8 distinct event type names other than 'exposure'")
    ridge = raw.get("ridge", DEFAULT_RIDGE)
    if not (isinstance(ridge, int | float) and not isinstance(ridge, bool) and 0 <= ridge < math.inf):
        raise _bad(raw, "ridge must be a finite number >= 0")
    return RegressionAdjustmentSpec(tuple(str(a) for a in attrs), float(ridge))


@dataclass(frozen=True)
class CupedPlusPlusComparison:
    """One (metric, variant) compared with control by regression adjustment with several covariates.

    Attributes:
        metric, variant: what is compared (against the control).
        adjusted: the relative-lift comparison (:class:`battleground.stats.EffectResult`, ``metric``
            "cuped++", with ``variance_reduction`` against the plain Welch test on the same users).
        covariates: the covariates fitted (names as shown: ``"<metric> (pre-period)"``, an attribute,
            ``"<attribute> missing"``).
        theta: their coefficients.
        fallback: "" when adjusted, else why the plain comparison is shown (θ = 0).
    """

    metric: str
    variant: str
    adjusted: Any
    covariates: tuple[str, ...]
    theta: tuple[float, ...]
    fallback: str = ""

    @property
    def variance_reduction(self) -> float:
        return float(self.adjusted.variance_reduction or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "variant": self.variant, "adjusted": self.adjusted.to_dict(),
                "covariates": list(self.covariates), "theta": list(self.theta), "fallback": self.fallback,
                "variance_reduction": self.variance_reduction}


def _label(name: str, metric_names: Sequence[str]) -> str:
    if name.startswith("c") and name[1:].isdigit() and int(name[1:]) < len(metric_names):
        return f"{metric_names[int(name[1:])]} (pre-period)"
    return f"{name[:-1]} missing" if name.endswith("?") else name


def cupedpp_effects(
    metrics: Sequence[tuple[str, str]], arms: Sequence[Any], *, control: str, alpha: float = 0.05,
    ridge: float = DEFAULT_RIDGE,
) -> dict[tuple[str, str], tuple[Any, Any]]:
    """``{(metric, variant): (absolute, relative)}`` CUPED++ comparisons (:func:`cupedpp_comparisons`
    both ways), what :func:`battleground.stats.analyze_metrics` takes as ``adjusted`` for the daily
    series and the sequential test."""
    absolute = {(c.metric, c.variant): c.adjusted
                for c in cupedpp_comparisons(metrics, arms, control=control, alpha=alpha, ridge=ridge, relative=False)}
    return {(c.metric, c.variant): (absolute[c.metric, c.variant], c.adjusted)
            for c in cupedpp_comparisons(metrics, arms, control=control, alpha=alpha, ridge=ridge)
            if (c.metric, c.variant) in absolute}


def cupedpp_comparisons(
    metrics: Sequence[tuple[str, str]], arms: Sequence[Any], *, control: str, alpha: float = 0.05,
    ridge: float = DEFAULT_RIDGE, relative: bool = True,
) -> list[CupedPlusPlusComparison]:
    """CUPED++ for every (mean or proportion metric, treatment) from the per-arm
    :class:`~battleground.storage.sums.CovariateSums` (``metrics`` are ``(name, kind)`` in the
    order of the sums). Arms with fewer than 2 users sit out; a comparison that cannot be made yet
    (e.g. a control mean of 0) is left out. ``relative``: the lift (default) or the difference."""
    from battleground.stats import CovariateSummary, StatsInputError, regression_adjusted_test

    names = [n for n, _ in metrics]
    usable = [a for a in arms if a.users >= 2]
    if not any(a.variant == control for a in usable) or len(usable) < 2:
        return []
    labels = tuple(_label(c, names) for c in usable[0].covariates)
    out: list[CupedPlusPlusComparison] = []
    for j, (name, kind) in enumerate(metrics):
        if kind in ("ratio", "quantile"):  # a quantile's effect is not a mean's (docs/ab-testing.md)
            continue
        summaries = [CovariateSummary(
            n=float(a.users), sum_y=a.sum_y[j], sum_y2=a.sum_y2[j], sum_x=a.sum_z, sum_xy=a.sum_yz[j],
            sum_xx=a.sum_zz, shift_y=a.shift_y[j], shift_x=a.shift_z, name=a.variant) for a in usable]
        try:
            r = regression_adjusted_test(summaries, control=control, covariates=labels, ridge=ridge,
                                         relative=relative, alpha=alpha)
        except StatsInputError:
            continue  # e.g. a control mean of 0: nothing to compare yet
        out.extend(CupedPlusPlusComparison(name, v, c, r.used, tuple(t for t, u in zip(r.theta, r.covariates,
                                                                                    strict=True) if u in r.used),
                                           r.fallback)
                   for v, c in zip(r.variants, r.comparisons, strict=True))
    return out
