"""The seed facade ``EvalRecommenderModel`` (re-exported by ``battleground.model.eval``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from battleground.ope._estimators import IPS, SNIPS, CappedIPS, CappedSNIPS, Estimator
from battleground.ope._evaluate import estimate_intervals
from battleground.ope._results import OPEEstimate
from battleground.ope._validation import OPEInputError, check_lambda

__all__ = ["EvalRecommenderModel"]

_MODES = ("offline",)
_CIS = ("analytic", "bootstrap")


def _feedback(y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(action, reward, pscore) from a DataFrame or a mapping of arrays."""
    try:
        keys = list(y.keys())
    except AttributeError:
        raise OPEInputError(
            f"y must be a DataFrame or dict with columns action, reward, pscore; got {type(y).__name__}"
        ) from None
    missing = [k for k in ("action", "reward", "pscore") if k not in keys]
    if missing:
        raise OPEInputError(
            f"y lacks column(s) {missing}; it needs action, reward and pscore (got {keys})"
        )
    return (
        np.asarray(y["action"]),
        np.asarray(y["reward"], dtype=np.float64),
        np.asarray(y["pscore"], dtype=np.float64),
    )


class EvalRecommenderModel:
    """Offline evaluation of a recommender's action distribution from logged feedback.

    ``pred`` is the evaluation policy's ``action_dist`` (n, K), e.g. ``model.predict_proba(X)``; ``y`` is
    the logged feedback: a DataFrame or dict with ``action``, ``reward`` and ``pscore``.

    >>> import numpy as np
    >>> ev = EvalRecommenderModel(mode="offline")
    >>> y = {"action": [0, 1, 1, 0], "reward": [1, 0, 1, 0], "pscore": [0.5] * 4}
    >>> round(ev.get_importance_sampling(np.full((4, 2), 0.5), y).value, 6)
    0.5
    """

    def __init__(
        self,
        mode: str = "offline",
        *,
        lambda_: float = 5.0,
        alpha: float = 0.05,
        ci: str = "analytic",
    ) -> None:
        self.mode = mode
        self.lambda_ = lambda_
        self.alpha = alpha
        self.ci = ci
        if mode not in _MODES:
            raise OPEInputError(f"mode={mode!r} is not supported; choose one of {_MODES}")
        check_lambda(lambda_)
        if ci not in _CIS:
            raise OPEInputError(f"ci={ci!r} is not a method; choose one of {_CIS}")

    def _run(
        self, est: Estimator, pred: Any, y: Any, ci: str | None, n_bootstrap: int
    ) -> OPEEstimate:
        action, reward, pscore = _feedback(y)
        method = self.ci if ci is None else ci
        result = estimate_intervals(
            [est],
            action,
            reward,
            pscore,
            pred,
            ci=method,  # type: ignore[arg-type]  # validated by estimate_intervals
            alpha=self.alpha,
            n_bootstrap=n_bootstrap,
        )
        return result[0]

    def get_importance_sampling(
        self, pred: Any, y: Any, *, ci: str | None = None, n_bootstrap: int = 1000
    ) -> OPEEstimate:
        """IPS: mean(π_e(a|x)/pscore · r)."""
        return self._run(IPS(), pred, y, ci, n_bootstrap)

    def get_capped_importance_sampling(
        self,
        pred: Any,
        y: Any,
        lambda_: float | None = None,
        *,
        ci: str | None = None,
        n_bootstrap: int = 1000,
    ) -> OPEEstimate:
        """Capped IPS: mean(min(w, λ) · r), λ = ``lambda_`` or the instance's."""
        lam = check_lambda(self.lambda_ if lambda_ is None else lambda_)
        return self._run(CappedIPS(lam), pred, y, ci, n_bootstrap)

    def get_normalized_cis(
        self,
        pred: Any,
        y: Any,
        lambda_: float | None = None,
        *,
        capped: bool = True,
        ci: str | None = None,
        n_bootstrap: int = 1000,
    ) -> OPEEstimate:
        """Normalised capped IS: Σ min(w,λ)·r / Σ min(w,λ) (plain SNIPS with ``capped=False``)."""
        if not capped:
            return self._run(SNIPS(), pred, y, ci, n_bootstrap)
        lam = check_lambda(self.lambda_ if lambda_ is None else lambda_)
        return self._run(CappedSNIPS(lam), pred, y, ci, n_bootstrap)
