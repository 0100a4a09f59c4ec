"""One-call evaluation: every estimator with confidence intervals and diagnostics."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from battleground.ope._diagnostics import diagnose
from battleground.ope._estimators import Estimator, all_estimators
from battleground.ope._intervals import DEFAULT_MAX_UNITS, analytic_interval, bootstrap_intervals
from battleground.ope._results import OPEEstimate, PolicyEvaluation
from battleground.ope._reward_model import fit_reward_model
from battleground.ope._validation import LoggedFeedback, OPEInputError, validate_feedback

__all__ = ["estimate_all", "estimate_intervals", "evaluate_policy"]

CiMethod = Literal["analytic", "bootstrap"]


def estimate_all(
    action: Any,
    reward: Any,
    pscore: Any,
    action_dist: Any,
    q_hat: Any = None,
    *,
    lambda_: float = 5.0,
    position: Any = None,
) -> dict[str, float]:
    """Point estimates of all ten estimators (four without ``q_hat``), validating the input once."""
    data = validate_feedback(action, reward, pscore, action_dist, q_hat, position)
    return {
        e.label: e.estimate_from(data)
        for e in all_estimators(lambda_, with_q_hat=q_hat is not None)
    }


def estimate_intervals(
    estimators: list[Estimator],
    action: Any,
    reward: Any,
    pscore: Any,
    action_dist: Any,
    q_hat: Any = None,
    *,
    ci: CiMethod = "analytic",
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    random_state: int | np.random.Generator | None = 0,
    max_units: int = DEFAULT_MAX_UNITS,
    position: Any = None,
) -> list[OPEEstimate]:
    """Estimates with intervals for ``estimators`` (bootstrap: one set of resamples shared by all)."""
    data = validate_feedback(action, reward, pscore, action_dist, q_hat, position)
    return _intervals(
        estimators,
        data,
        ci=ci,
        alpha=alpha,
        n_bootstrap=n_bootstrap,
        random_state=random_state,
        max_units=max_units,
    )


def _intervals(
    estimators: list[Estimator],
    data: LoggedFeedback,
    *,
    ci: str,
    alpha: float,
    n_bootstrap: int,
    random_state: int | np.random.Generator | None,
    max_units: int = DEFAULT_MAX_UNITS,
) -> list[OPEEstimate]:
    if ci == "analytic":
        return [analytic_interval(e, data, alpha) for e in estimators]
    if ci == "bootstrap":
        return bootstrap_intervals(
            estimators,
            data,
            alpha=alpha,
            n_bootstrap=n_bootstrap,
            random_state=random_state,
            max_units=max_units,
        )
    raise OPEInputError(f"ci={ci!r} is not a method; choose 'analytic' or 'bootstrap'")


def evaluate_policy(
    action: Any,
    reward: Any,
    pscore: Any,
    action_dist: Any,
    *,
    context: Any = None,
    q_hat: Any = None,
    reward_model: Any = None,
    lambda_: float = 5.0,
    ci: CiMethod = "analytic",
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    random_state: int | None = 0,
    n_folds: int = 3,
    estimators: list[Estimator] | None = None,
    warn: bool = True,
) -> PolicyEvaluation:
    """Every estimator's value of ``action_dist`` with a confidence interval, and the weight diagnostics.

    Without ``q_hat`` but with ``context``, q̂ is fitted by cross-fitting ``reward_model`` (default:
    logistic regression for 0/1 rewards, ridge otherwise). Without either, only the IPS family is
    shown. ``estimators`` replaces the default ten (capped ones at ``lambda_``). An
    :class:`OPEReliabilityWarning` is raised (with ``warn``) when the weights make the estimates doubtful.

    Returns a frozen :class:`PolicyEvaluation` (``.estimates``, ``.diagnostics``, ``result["dr"]``);
    ``.to_frame()`` is the seed's table with columns estimator, value, se, ci_low, ci_high, alpha,
    ci_method, n_rounds.
    """
    data = validate_feedback(action, reward, pscore, action_dist, q_hat)
    if q_hat is None and context is not None:
        q_hat = fit_reward_model(
            context,
            data.action,
            data.reward,
            data.n_actions,
            reward_model,
            n_folds=n_folds,
            random_state=random_state,
        )
        data = validate_feedback(data.action, data.reward, data.pscore, data.action_dist, q_hat)
    diag = diagnose(data.action, data.pscore, data.action_dist, warn=False)
    if warn and not diag.trustworthy:
        import warnings

        from battleground.ope._diagnostics import OPEReliabilityWarning

        warnings.warn(
            "off-policy estimates should not be trusted: " + "; ".join(diag.reasons),
            OPEReliabilityWarning,
            stacklevel=2,
        )
    ests = (
        all_estimators(lambda_, with_q_hat=data.q_hat is not None)
        if estimators is None
        else list(estimators)
    )
    results = _intervals(
        ests, data, ci=ci, alpha=alpha, n_bootstrap=n_bootstrap, random_state=random_state
    )
    return PolicyEvaluation(tuple(results), diag)
