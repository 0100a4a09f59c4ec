"""Data-quality checks beside the metrics (SRM, multiple exposure, pre-period bias): each a typed
:class:`DataQualityCheck`; a ``fail`` overrides every decision (:mod:`battleground.experiment._decide`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from battleground.errors import ExperimentError
from battleground.stats import Result, SequentialSrmResult, SrmResult

__all__ = ["DataQualityCheck", "multiple_exposure_check", "pre_period_check", "sequential_srm_check", "srm_check"]


class DataQualityError(ExperimentError, ValueError):
    """Impossible inputs to a data-quality check (negative counts)."""


@dataclass(frozen=True)
class DataQualityCheck(Result):
    """One data-quality check beside the metrics (SRM, multiple exposure, ...).

    ``status`` is ``ok``, ``warn`` (shown, does not block) or ``fail`` (no decision can be trusted).
    """

    name: str
    status: str
    detail: str
    value: float = math.nan


def srm_check(srm: SrmResult | None, *, peeked: bool = False) -> DataQualityCheck | None:
    """The SRM test as a data-quality check (an alert fails it).

    ``peeked``: the χ² test is read at every look of a sequential experiment, where its level no
    longer holds; its alert then only ``warn``-s and the sequential SRM (:func:`sequential_srm_check`)
    is the one that fails."""
    if srm is None:
        return None
    status = {"alert": "fail", "warn": "warn"}.get(srm.status, "ok")
    note = ""
    if peeked and status == "fail":
        status, note = "warn", "; checked at every look, so the sequential SRM decides"
    return DataQualityCheck(
        "srm", status,
        f"users per variant {[int(o) for o in srm.observed]} vs weights {list(srm.weights)}: "
        f"χ² = {srm.chi2:.3f}, p = {srm.p_value:.3g} ({srm.status}){note}",
        srm.p_value,
    )


def sequential_srm_check(ssrm: SequentialSrmResult | None) -> DataQualityCheck | None:
    """The sequential (always-valid) SRM as a data-quality check: safe to read every day; an alert fails."""
    if ssrm is None:
        return None
    status = {"alert": "fail", "warn": "warn"}.get(ssrm.status, "ok")
    return DataQualityCheck(
        "sequential_srm", status,
        f"users per variant {[int(o) for o in ssrm.observed]} over {ssrm.looks} daily looks vs weights "
        f"{[round(w, 4) for w in ssrm.weights]}: Bayes factor {math.exp(min(ssrm.log_bayes_factor, 700.0)):.3g}, "
        f"always-valid p = {ssrm.p_value:.3g} ({ssrm.status})",
        ssrm.p_value,
    )


def multiple_exposure_check(users: int, total: int, *, fail_share: float = 0.01) -> DataQualityCheck:
    """Users exposed to more than one variant: ``warn`` when any, ``fail`` at ``fail_share`` of all users."""
    if users < 0 or total < 0:
        raise DataQualityError(f"multiple-exposure counts must be >= 0, got users={users}, total={total}")
    share = users / total if total else 0.0
    status = "ok" if users == 0 else "fail" if share >= fail_share else "warn"
    return DataQualityCheck(
        "multiple_exposure", status,
        f"{users:,} of {total:,} users ({share:.2%}) were exposed to more than one variant", share,
    )


def pre_period_check(metric: str, variant: str, p_value: float, *, alert_at: float = 0.001) -> DataQualityCheck:
    """The CUPED covariate analysed as if it were the response: arms that differ before exposure ``warn``
    (the adjustment corrects such a bias, but the assignment deserves a look); never blocks a decision."""
    status = "warn" if math.isfinite(p_value) and p_value < alert_at else "ok"
    shown = f"{p_value:.3g}" if math.isfinite(p_value) else "not estimable"
    return DataQualityCheck(
        "pre_period_bias", status,
        f"{metric} before exposure, {variant} vs control: p = {shown}"
        + (" (the arms differed before the experiment)" if status == "warn" else ""), p_value,
    )
