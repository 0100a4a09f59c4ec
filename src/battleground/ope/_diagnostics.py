"""Importance-weight diagnostics and the warning raised when an estimate should not be trusted."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from battleground.ope._results import Diagnostics
from battleground.ope._validation import OPEInputError, validate_feedback

__all__ = ["OPEReliabilityWarning", "diagnose"]


class OPEReliabilityWarning(UserWarning):
    """The importance weights say an off-policy estimate should not be trusted."""


def diagnose(
    action: Any,
    pscore: Any,
    action_dist: Any,
    *,
    behavior_dist: Any = None,
    min_ess: float = 100.0,
    min_ess_ratio: float = 0.01,
    warn: bool = True,
) -> Diagnostics:
    """Effective sample size, max and mean weight, and zero-support share of ``action_dist``.

    Reasons for distrust: ESS below ``min_ess`` or below ``min_ess_ratio``·n; a mean weight far from 1
    (more than 3 standard errors and 10 %: the propensities or the policy arrays are likely wrong); any
    evaluation mass on actions without logging support. With ``warn`` an :class:`OPEReliabilityWarning`
    lists them.

    >>> import numpy as np
    >>> d = diagnose(np.array([0, 1, 0, 1]), np.full(4, 0.5), np.full((4, 2), 0.5), warn=False)
    >>> d.ess, d.mean_weight
    (4.0, 1.0)
    """
    data = validate_feedback(action, np.zeros(np.asarray(action).shape[0]), pscore, action_dist)
    w = data.weight
    n = data.n
    sum_w = float(w.sum())
    sum_w2 = float(np.dot(w, w))
    ess = sum_w * sum_w / sum_w2 if sum_w2 > 0 else 0.0
    mean_w = sum_w / n
    se_w = float(w.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    if behavior_dist is not None:
        behavior = np.asarray(behavior_dist, dtype=np.float64)
        if behavior.ndim == 3 and behavior.shape[2] == 1:
            behavior = behavior[:, :, 0]
        if behavior.shape != data.action_dist.shape:
            raise OPEInputError(
                f"behavior_dist has shape {behavior.shape} but action_dist has {data.action_dist.shape}"
            )
        zero_share = float(data.action_dist[behavior <= 0].sum() / n)
    else:
        logged = np.bincount(data.action, minlength=data.n_actions) > 0
        zero_share = float(data.action_dist[:, ~logged].sum() / n)
    reasons = []
    if ess < min_ess:
        reasons.append(f"effective sample size {ess:.1f} < {min_ess:g}")
    if ess < min_ess_ratio * n:
        reasons.append(
            f"effective sample size is {ess / n:.2%} of {n} rounds (< {min_ess_ratio:.0%})"
        )
    if abs(mean_w - 1) > max(0.1, 3 * se_w):
        reasons.append(f"mean weight {mean_w:.3f} is far from 1: check pscore and action_dist")
    if zero_share > 0:
        reasons.append(f"{zero_share:.2%} of the evaluation policy's mass has no logging support")
    diag = Diagnostics(
        n_rounds=n,
        ess=ess,
        ess_ratio=ess / n,
        max_weight=float(w.max()),
        mean_weight=mean_w,
        zero_support_share=zero_share,
        trustworthy=not reasons,
        reasons=tuple(reasons),
    )
    if warn and reasons:
        warnings.warn(
            "off-policy estimate should not be trusted: " + "; ".join(reasons),
            OPEReliabilityWarning,
            stacklevel=2,
        )
    return diag
