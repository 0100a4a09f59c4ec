"""Cross-fitted reward models q̂(x, a) for the direct method and the doubly robust family."""

from __future__ import annotations

from typing import Any

import numpy as np

from battleground.ope._validation import OPEInputError

__all__ = ["CrossFitRewardModel", "fit_reward_model"]


def _design(context: np.ndarray, action: np.ndarray, n_actions: int) -> np.ndarray:
    onehot = np.zeros((context.shape[0], n_actions))
    onehot[np.arange(context.shape[0]), action] = 1.0
    # Context × action interactions let a linear model give each action its own slope.
    inter = (context[:, :, None] * onehot[:, None, :]).reshape(context.shape[0], -1)
    return np.hstack([context, onehot, inter])


class CrossFitRewardModel:
    """Fit ``estimator`` on (context, action) → reward with K-fold cross-fitting.

    Each round's q̂(x, ·) comes from the model fitted on the other folds, so DR's correction term is not
    biased by over-fitting. Any scikit-learn regressor works; a classifier (``predict_proba``) gives
    q̂ = P(reward = 1). The default is logistic regression for 0/1 rewards and ridge otherwise. Features
    are the context, the action one-hot and their products.

    Parameters
    ----------
    estimator : scikit-learn estimator or None
    n_folds : int, ≥ 2
    random_state : int or None, for the fold split.
    """

    def __init__(
        self, estimator: Any = None, *, n_folds: int = 3, random_state: int | None = 0
    ) -> None:
        self.estimator = estimator
        self.n_folds = n_folds
        self.random_state = random_state

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "n_folds": self.n_folds,
            "random_state": self.random_state,
        }

    def set_params(self, **params: Any) -> CrossFitRewardModel:
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def _default(self, reward: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression, Ridge

        if np.isin(reward, (0.0, 1.0)).all() and np.unique(reward).size == 2:
            return LogisticRegression(C=1.0, max_iter=1000)
        return Ridge(alpha=1.0)

    def fit_predict(self, context: Any, action: Any, reward: Any, n_actions: int) -> np.ndarray:
        """Cross-fitted q̂ of shape (n, n_actions); also stores the fold models in ``models_``."""
        from sklearn.base import clone, is_classifier
        from sklearn.model_selection import KFold

        x = np.asarray(context, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        a = np.asarray(action).astype(np.int64)
        r = np.asarray(reward, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != a.shape[0] or r.shape != a.shape:
            raise OPEInputError(
                f"context {x.shape}, action {a.shape} and reward {r.shape} must be (n, d), (n,), (n,)"
            )
        if int(n_actions) != n_actions or n_actions < 1:
            raise OPEInputError(f"n_actions={n_actions!r} must be a positive integer")
        k = int(n_actions)
        if a.min() < 0 or a.max() >= k:
            raise OPEInputError(
                f"action values must lie in [0, {k - 1}], got [{a.min()}, {a.max()}]"
            )
        if int(self.n_folds) != self.n_folds or self.n_folds < 2 or self.n_folds > a.shape[0]:
            raise OPEInputError(
                f"n_folds={self.n_folds!r} must be an integer between 2 and n_rounds"
            )
        base = self.estimator if self.estimator is not None else self._default(r)
        classifier = is_classifier(base)
        n, d = x.shape
        q_hat = np.empty((n, k))
        self.models_ = []
        folds = KFold(n_splits=int(self.n_folds), shuffle=True, random_state=self.random_state)
        for train, test in folds.split(x):
            model = clone(base)
            model.fit(_design(x[train], a[train], k), r[train])
            self.models_.append(model)
            xt = x[test]
            m = xt.shape[0]
            # Score every action for the held-out rounds in one call: rows (round, action) stacked.
            design = _design(np.repeat(xt, k, axis=0), np.tile(np.arange(k), m), k)
            if classifier:
                proba = model.predict_proba(design)
                pos = list(model.classes_).index(1) if 1 in model.classes_ else proba.shape[1] - 1
                pred = proba[:, pos]
            else:
                pred = model.predict(design)
            q_hat[test] = np.asarray(pred, dtype=np.float64).reshape(m, k)
        self.n_actions_ = k
        self.n_features_in_ = d
        return q_hat


def fit_reward_model(
    context: Any,
    action: Any,
    reward: Any,
    n_actions: int,
    estimator: Any = None,
    *,
    n_folds: int = 3,
    random_state: int | None = 0,
) -> np.ndarray:
    """Cross-fitted q̂ (n, n_actions) with ``estimator`` (see :class:`CrossFitRewardModel`)."""
    model = CrossFitRewardModel(estimator, n_folds=n_folds, random_state=random_state)
    return model.fit_predict(context, action, reward, n_actions)
