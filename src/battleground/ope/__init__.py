"""Off-policy evaluation: estimate a policy's value from logged bandit feedback.

Arrays follow obp's conventions: ``action`` (n,), ``reward`` (n,), ``pscore`` (n,) the logging policy's
probability of the logged action, ``action_dist`` (n, K) or (n, K, 1) the evaluation policy, ``q_hat``
(n, K) a reward model's predictions.

>>> import numpy as np
>>> from battleground.ope import IPS
>>> IPS().estimate(np.array([0, 1]), np.array([1.0, 0.0]), np.array([0.5, 0.5]), np.array([[1.0, 0.0]] * 2))
1.0
"""

from __future__ import annotations

from battleground.ope._diagnostics import OPEReliabilityWarning, diagnose
from battleground.ope._estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    CappedDR,
    CappedIPS,
    CappedSNIPS,
    DRos,
    Estimator,
    SwitchDR,
    all_estimators,
)
from battleground.ope._evaluate import estimate_all, estimate_intervals, evaluate_policy
from battleground.ope._facade import EvalRecommenderModel
from battleground.ope._intervals import resampling_counts
from battleground.ope._results import Diagnostics, OPEEstimate, PolicyEvaluation
from battleground.ope._reward_model import CrossFitRewardModel, fit_reward_model
from battleground.ope._validation import OPEInputError

__all__ = [
    "DM",
    "DR",
    "IPS",
    "SNDR",
    "SNIPS",
    "CappedDR",
    "CappedIPS",
    "CappedSNIPS",
    "CrossFitRewardModel",
    "DRos",
    "Diagnostics",
    "Estimator",
    "EvalRecommenderModel",
    "OPEEstimate",
    "OPEInputError",
    "OPEReliabilityWarning",
    "PolicyEvaluation",
    "SwitchDR",
    "all_estimators",
    "diagnose",
    "estimate_all",
    "estimate_intervals",
    "evaluate_policy",
    "fit_reward_model",
    "resampling_counts",
]
