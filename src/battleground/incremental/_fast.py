"""The array/DataFrame fast path: sequential Bayesian logistic regression without per-record objects."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from battleground.incremental._explore import thompson_draw
from battleground.incremental._frames import Batch, split_frame
from battleground.incremental._records import INTERCEPT_NT, IncrementalInputError, NameTerm
from battleground.incremental._solver import (
    BlockDesign,
    MatrixDesign,
    OptimizationError,
    logistic_newton,
    sigmoid,
)
from battleground.incremental._trainers import binary_labels

_EMPTY_BATCH_METADATA: dict[str, Any] = {"n": 0, "nit": 0, "warnflag": 0, "converged": True,
                                         "task": "EMPTY BATCH: MODEL UNCHANGED"}


def name_term_of(feature: str) -> NameTerm:
    """Column name → name-term: ``"x|3"`` → ``("x", "3")``; ``"age"`` → ``("age", "")``."""
    name, sep, term = feature.partition("|")
    return (name, term) if sep else (feature, "")


class _EntityIndex:
    """Entity id (string) → row; grows as new entities arrive."""

    def __init__(self, entities: list[str] | None = None) -> None:
        self.ids: list[str] = []
        self._pos: dict[str, int] = {}
        for e in entities or []:
            self.add(e)

    def add(self, e: str) -> int:
        pos = self._pos.get(e)
        if pos is None:
            pos = self._pos[e] = len(self.ids)
            self.ids.append(e)
        return pos

    def codes(self, ent: np.ndarray, *, grow: bool) -> np.ndarray:
        get = self._pos.get
        codes = np.fromiter(map(get, ent, [-1] * len(ent)), dtype=np.int64, count=len(ent))
        if grow and codes.size and codes.min() < 0:
            for i in np.flatnonzero(codes < 0).tolist():
                codes[i] = self.add(ent[i])
        return codes

    def __len__(self) -> int:
        return len(self.ids)


class SequentialBayesianLogisticRegression:
    """Lambda Learner's sequential Bayesian logistic regression on arrays or data frames.

    One coefficient per dense feature, an intercept, and (when ``entity`` is given) one per entity id,
    as the name-term model ``intercept``, ``feature``, ``entity|<id>`` of the record API — with the same
    results, but the batch goes straight to arrays and the Newton step eliminates the entity block
    (its Hessian is diagonal) through a Schur complement.

    Args:
        penalty: λ, also the prior precision of a coefficient seen for the first time.
        delta: forgetting factor δ in [0, 1] (0 forgets the past).
        entity_name: name of the entity coefficients in the name-term domain.
        tol: gradient tolerance (max-norm) of the Newton solver. max_iter: Newton iteration limit.
        on_failure: "raise" an :class:`OptimizationError`, or "report" it in ``last_metadata_``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(500, 3)); y = (X[:, 0] + rng.normal(size=500) > 0).astype(float)
        >>> m = SequentialBayesianLogisticRegression(penalty=1.0, delta=0.8).partial_fit(X, y)
        >>> bool(m.coef_[1] > 0.5)
        True
    """

    def __init__(
        self,
        *,
        penalty: float = 10.0,
        delta: float = 0.8,
        entity_name: str = "entity",
        tol: float = 1e-9,
        max_iter: int = 100,
        on_failure: Literal["raise", "report"] = "raise",
    ) -> None:
        self.penalty = penalty
        self.delta = delta
        self.entity_name = entity_name
        self.tol = tol
        self.max_iter = max_iter
        self.on_failure = on_failure

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("penalty", "delta", "entity_name", "tol", "max_iter", "on_failure")}

    def set_params(self, **params: Any) -> SequentialBayesianLogisticRegression:
        for k, v in params.items():
            if k not in self.get_params():
                raise IncrementalInputError(f"unknown parameter {k!r}; valid: {sorted(self.get_params())}")
            setattr(self, k, v)
        return self

    def _check_params(self) -> None:
        if not (np.isfinite(self.penalty) and self.penalty > 0):
            raise IncrementalInputError(f"penalty must be > 0, got {self.penalty!r}")
        if not 0.0 <= self.delta <= 1.0:
            raise IncrementalInputError(f"delta (forgetting factor) must be in [0, 1], got {self.delta!r}")
        if self.on_failure not in ("raise", "report"):
            raise IncrementalInputError(f"on_failure must be 'raise' or 'report', got {self.on_failure!r}")

    # -- learned state --------------------------------------------------------------------------
    @property
    def n_dense_(self) -> int:
        return 1 + len(self.feature_names_in_)

    @property
    def entities_(self) -> list[str]:
        return self._entities.ids

    @property
    def variance_(self) -> np.ndarray:
        return 1.0 / self.precision_

    def partial_fit(
        self,
        X: Any,
        y: Any = None,
        *,
        sample_weight: Any = None,
        offset: Any = None,
        entity: Any = None,
    ) -> SequentialBayesianLogisticRegression:
        """One sequential Bayesian update from a mini-batch (prior = the current posterior)."""
        self._check_params()
        batch = split_frame(X, y, sample_weight=sample_weight, offset=offset, entity=entity,
                            feature_names=getattr(self, "feature_names_in_", None))
        assert batch.label is not None
        yb = binary_labels(batch.label)
        first = not hasattr(self, "coef_")
        if first:
            self.feature_names_in_ = list(batch.feature_names)
            self._entities = _EntityIndex()
            self.coef_ = np.zeros(self.n_dense_)
            self.precision_ = np.full(self.n_dense_, float(self.penalty))
            self.n_batches_ = 0
        elif batch.feature_names != self.feature_names_in_:
            raise IncrementalInputError(
                f"features {batch.feature_names} differ from the ones the model was trained on "
                f"{self.feature_names_in_}"
            )
        if batch.n == 0:  # an empty mini-batch teaches nothing: no forgetting step either
            self.last_metadata_ = _EMPTY_BATCH_METADATA.copy()
            return self
        k = self.n_dense_
        A = np.empty((batch.n, k))
        A[:, 0] = 1.0
        A[:, 1:] = batch.X
        if batch.entity is not None:
            codes = self._entities.codes(batch.entity, grow=True)
        m = len(self._entities)
        grow = k + m - self.coef_.size
        mu = np.concatenate([self.coef_, np.zeros(grow)])
        prior = np.concatenate([self.precision_, np.full(grow, float(self.penalty))])
        design: Any = BlockDesign(A, codes, m) if batch.entity is not None and m else MatrixDesign(A)
        if not isinstance(design, BlockDesign) and m:
            # no entity column in this batch: entity coefficients only see their prior
            design = BlockDesign(A, np.zeros(batch.n, dtype=np.int64), m, np.zeros(batch.n))
        ridge = (1.0 - self.delta) * self.penalty
        res = logistic_newton(
            design, yb, batch.weight, batch.offset, mu=mu, prior_diag=self.delta * prior, ridge=ridge,
            gtol=self.tol, max_iter=self.max_iter,
        )
        meta = dict(res.metadata, loss=res.loss, n=batch.n, converged=res.metadata["warnflag"] == 0)
        self.last_metadata_ = meta
        if meta["warnflag"] != 0 and self.on_failure == "raise":
            raise OptimizationError(
                f"update did not converge: {meta['task']} after {meta['nit']} iterations; the model is "
                "unchanged (pass on_failure='report' to accept the last iterate)", meta
            )
        self.coef_ = res.theta
        self.precision_ = design.hessian_diag(res.curvature) + ridge + self.delta * prior
        self.n_batches_ += 1
        return self

    def _batch_scores(self, batch: Batch, coef: np.ndarray | None = None) -> np.ndarray:
        coef = self.coef_ if coef is None else coef
        k = self.n_dense_
        s = coef[0] + batch.X @ coef[1:k] + batch.offset
        if batch.entity is not None and len(self._entities):
            codes = self._entities.codes(batch.entity, grow=False)
            known = codes >= 0
            s[known] += coef[k:][codes[known]]  # unseen entities score 0
        return s

    def known_entities(self, entity: Any) -> np.ndarray:
        """True for each entity id the model has learned a coefficient for (others score without one)."""
        from battleground.incremental._frames import _entity_strings

        if not hasattr(self, "_entities"):
            return np.zeros(len(entity), dtype=bool)
        return self._entities.codes(_entity_strings(entity), grow=False) >= 0

    def decision_function(self, X: Any, *, offset: Any = None, entity: Any = None, exploration: float = 0.0,
                          random_state: int | np.random.Generator | None = None) -> np.ndarray:
        """``xᵀθ + θ_entity + offset`` (an unseen entity contributes 0).

        ``exploration`` c > 0 scores with one Thompson draw θ ~ N(θ, c · variance_) instead (the posterior
        variance kept is 1/diag(H), the diagonal precision of the sequential update).
        """
        if not hasattr(self, "coef_"):
            raise RuntimeError("this model is not fitted yet; call partial_fit first")
        coef = thompson_draw(self.coef_, self.variance_, exploration, random_state)
        batch = split_frame(X, None, offset=offset, entity=entity, require_label=False,
                            feature_names=self.feature_names_in_)
        if batch.feature_names != self.feature_names_in_:
            raise IncrementalInputError(f"features {batch.feature_names} differ from {self.feature_names_in_}")
        return self._batch_scores(batch, coef)

    def predict_proba(self, X: Any, *, offset: Any = None, entity: Any = None) -> np.ndarray:
        p = sigmoid(self.decision_function(X, offset=offset, entity=entity))
        return np.column_stack([1.0 - p, p])

    def coef_names(self) -> list[NameTerm]:
        """Name-term of every coefficient, in ``coef_`` order."""
        return [INTERCEPT_NT, *map(name_term_of, self.feature_names_in_),
                *((self.entity_name, e) for e in self.entities_)]

    def to_nt_domain(self) -> tuple[dict[NameTerm, float], dict[NameTerm, float]]:
        """(means, variances) keyed by name-term, as :func:`index_domain_coeffs_to_nt_domain_coeffs`."""
        names = self.coef_names()
        return (dict(zip(names, self.coef_.tolist(), strict=True)),
                dict(zip(names, self.variance_.tolist(), strict=True)))

    # -- persistence ----------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"coef": self.coef_, "precision": self.precision_,
                  "entities": np.asarray(self.entities_, dtype=str)}
        meta = {"kind": "single", "params": self.get_params(), "feature_names": self.feature_names_in_,
                "n_batches": self.n_batches_}
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> SequentialBayesianLogisticRegression:
        model = cls(**meta["params"])
        model.feature_names_in_ = list(meta["feature_names"])
        model._entities = _EntityIndex([str(e) for e in arrays["entities"].tolist()])
        model.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        model.precision_ = np.asarray(arrays["precision"], dtype=np.float64)
        model.n_batches_ = int(meta["n_batches"])
        return model
