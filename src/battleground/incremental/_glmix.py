"""GLMix: a global fixed effect plus per-entity random effects updated incrementally per mini-batch."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from battleground.incremental._explore import thompson_draw
from battleground.incremental._fast import _EMPTY_BATCH_METADATA, _EntityIndex
from battleground.incremental._frames import Batch, split_frame
from battleground.incremental._records import IncrementalInputError
from battleground.incremental._solver import (
    MatrixDesign,
    OptimizationError,
    batched_newton,
    logistic_newton,
    sigmoid,
)
from battleground.incremental._trainers import binary_labels


class GLMix:
    """Generalised linear mixed model, Lambda-Learner style.

    score(x, e) = offset + f(x) + xᵀθ_e, where f is a global L2 logistic regression (the fixed effect,
    fitted once on a warm-up set; its score is every record's offset) and θ_e the random effect of
    entity e (intercept + the ``random_effect_features``). Each mini-batch updates the random effects of
    the entities it contains by the sequential Bayesian rule; ``solver="batched"`` solves all of them
    together (stacked Newton systems), ``solver="loop"`` runs the single-entity trainer per entity
    (same numbers, slower: it is the reference).

    Args:
        penalty: λ of the random effects (prior precision of a new entity's coefficients).
        delta: forgetting factor δ in [0, 1].
        fixed_effect_penalty: λ of the fixed-effect logistic regression.
        random_effect_features: the feature columns of the random effects (None: all).
        solver: "batched" or "loop". tol, max_iter: Newton settings.
        on_failure: "raise" an :class:`OptimizationError`, or "report" it in ``last_metadata_``.
    """

    def __init__(
        self,
        *,
        penalty: float = 10.0,
        delta: float = 0.8,
        fixed_effect_penalty: float = 1.0,
        random_effect_features: list[str] | None = None,
        solver: Literal["batched", "loop"] = "batched",
        tol: float = 1e-9,
        max_iter: int = 100,
        on_failure: Literal["raise", "report"] = "raise",
    ) -> None:
        self.penalty = penalty
        self.delta = delta
        self.fixed_effect_penalty = fixed_effect_penalty
        self.random_effect_features = random_effect_features
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.on_failure = on_failure

    _PARAMS = ("penalty", "delta", "fixed_effect_penalty", "random_effect_features", "solver", "tol",
               "max_iter", "on_failure")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params: Any) -> GLMix:
        for k, v in params.items():
            if k not in self._PARAMS:
                raise IncrementalInputError(f"unknown parameter {k!r}; valid: {sorted(self._PARAMS)}")
            setattr(self, k, v)
        return self

    def _check_params(self) -> None:
        for name in ("penalty", "fixed_effect_penalty"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise IncrementalInputError(f"{name} must be > 0, got {v!r}")
        if not 0.0 <= self.delta <= 1.0:
            raise IncrementalInputError(f"delta (forgetting factor) must be in [0, 1], got {self.delta!r}")
        if self.solver not in ("batched", "loop"):
            raise IncrementalInputError(f"solver must be 'batched' or 'loop', got {self.solver!r}")
        if self.on_failure not in ("raise", "report"):
            raise IncrementalInputError(f"on_failure must be 'raise' or 'report', got {self.on_failure!r}")

    def _init_features(self, batch: Batch) -> None:
        self.feature_names_in_ = list(batch.feature_names)
        re = self.random_effect_features
        names = self.feature_names_in_ if re is None else list(re)
        missing = [c for c in names if c not in self.feature_names_in_]
        if missing:
            raise IncrementalInputError(f"random_effect_features {missing} are not among the features {self.feature_names_in_}")
        self._re_cols = np.array([self.feature_names_in_.index(c) for c in names], dtype=np.int64)
        self.random_effect_names_ = ["intercept", *names]
        p = 1 + len(names)
        self._entities = _EntityIndex()
        self.re_coef_ = np.zeros((0, p))
        self.re_precision_ = np.zeros((0, p))
        self.n_batches_ = 0
        self.n_records_ = 0

    def _parse(self, X: Any, y: Any, sample_weight: Any, offset: Any, entity: Any, *, require_label: bool) -> Batch:
        batch = split_frame(X, y, sample_weight=sample_weight, offset=offset, entity=entity,
                            feature_names=getattr(self, "feature_names_in_", None), require_label=require_label)
        if not hasattr(self, "feature_names_in_"):
            self._init_features(batch)
        elif batch.feature_names != self.feature_names_in_:
            raise IncrementalInputError(f"features {batch.feature_names} differ from {self.feature_names_in_}")
        return batch

    @property
    def entities_(self) -> list[str]:
        return self._entities.ids

    # -- fixed effect ---------------------------------------------------------------------------
    def fit_fixed_effect(self, X: Any, y: Any = None, *, sample_weight: Any = None, offset: Any = None) -> GLMix:
        """Fit the global logistic regression (intercept + all features) on a warm-up set."""
        self._check_params()
        batch = self._parse(X, y, sample_weight, offset, None, require_label=True)
        assert batch.label is not None
        A = np.column_stack([np.ones(batch.n), batch.X])
        res = logistic_newton(
            MatrixDesign(A), binary_labels(batch.label), batch.weight, batch.offset,
            mu=np.zeros(A.shape[1]), prior_diag=np.zeros(A.shape[1]), ridge=float(self.fixed_effect_penalty),
            gtol=self.tol, max_iter=self.max_iter,
        )
        if res.metadata["warnflag"] != 0:
            raise OptimizationError(f"fixed effect did not converge: {res.metadata['task']}", res.metadata)
        self.fixed_coef_ = res.theta
        return self

    def _fixed_scores(self, batch: Batch) -> np.ndarray:
        fe = getattr(self, "fixed_coef_", None)
        if fe is None:
            return batch.offset.copy()
        return batch.offset + fe[0] + batch.X @ fe[1:]

    def fixed_effect_score(self, X: Any, *, offset: Any = None) -> np.ndarray:
        """offset + fixed-effect score (no random effects): the baseline GLMix improves on."""
        return self._fixed_scores(self._parse(X, None, None, offset, None, require_label=False))

    # -- random effects -------------------------------------------------------------------------
    def partial_fit(
        self, X: Any, y: Any = None, *, sample_weight: Any = None, offset: Any = None, entity: Any = None
    ) -> GLMix:
        """Update the random effects of the entities in this mini-batch (fixed effect frozen)."""
        self._check_params()
        batch = self._parse(X, y, sample_weight, offset, entity, require_label=True)
        if batch.n == 0:  # an empty mini-batch (a quiet minute of the stream) teaches nothing
            self.last_metadata_ = _EMPTY_BATCH_METADATA.copy()
            return self
        if batch.entity is None:
            raise IncrementalInputError("GLMix.partial_fit needs entity ids: pass entity= or an 'entity' column")
        assert batch.label is not None
        yb = binary_labels(batch.label)
        codes = self._entities.codes(batch.entity, grow=True)
        E, p = len(self._entities), self.re_coef_.shape[1]
        if self.re_coef_.shape[0] < E:
            extra = E - self.re_coef_.shape[0]
            self.re_coef_ = np.vstack([self.re_coef_, np.zeros((extra, p))])
            self.re_precision_ = np.vstack([self.re_precision_, np.full((extra, p), float(self.penalty))])
        order = np.argsort(codes, kind="stable")
        sc = codes[order]
        present, group = np.unique(sc, return_inverse=True)
        Z = np.empty((batch.n, p))
        Z[:, 0] = 1.0
        Z[:, 1:] = batch.X[order][:, self._re_cols]
        off = self._fixed_scores(batch)[order]
        w, ys = batch.weight[order], yb[order]
        mu, prior = self.re_coef_[present], self.re_precision_[present]
        ridge = (1.0 - self.delta) * self.penalty
        if self.solver == "batched":
            res = batched_newton(Z, group, ys, w, off, mu=mu, prior_diag=self.delta * prior, ridge=ridge,
                                 gtol=self.tol, max_iter=self.max_iter)
            theta, precision, meta = res.theta, res.precision, dict(res.metadata)
        else:
            theta, precision, meta = self._loop(Z, group, ys, w, off, mu, prior, present.size)
        meta.update(n=batch.n, n_entities=int(present.size), converged=meta["warnflag"] == 0)
        self.last_metadata_ = meta
        if meta["warnflag"] != 0 and self.on_failure == "raise":
            raise OptimizationError(
                f"random-effect update did not converge: {meta['task']}; the model is unchanged "
                "(pass on_failure='report' to accept the last iterate)", meta)
        self.re_coef_[present] = theta
        self.re_precision_[present] = precision
        self.n_batches_ += 1
        self.n_records_ += batch.n
        return self

    def _loop(self, Z: np.ndarray, group: np.ndarray, y: np.ndarray, w: np.ndarray, off: np.ndarray,
              mu: np.ndarray, prior: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """One single-entity sequential Bayesian trainer per entity (the reference for ``batched``)."""
        from scipy import sparse

        from battleground.incremental._records import HessianType, IndexedDataset, IndexedModel
        from battleground.incremental._trainers import TrainerSequentialBayesianLogisticLossWithL2

        starts = np.r_[np.flatnonzero(np.r_[True, group[1:] != group[:-1]]), group.size]
        theta, precision = np.empty_like(mu), np.empty_like(prior)
        warn, nit, task = 0, 0, "CONVERGENCE: NORM OF GRADIENT <= GTOL"
        for g in range(G):
            sl = slice(starts[g], starts[g + 1])
            data = IndexedDataset(sparse.csr_matrix(Z[sl]), y[sl], w[sl], off[sl])
            trainer = TrainerSequentialBayesianLogisticLossWithL2(
                training_data=data, initial_model=IndexedModel(mu[g], sparse.diags(prior[g]).tocsr()),
                penalty=self.penalty, delta=self.delta, hessian_type=HessianType.DIAGONAL, on_failure="report")
            model, _, md = trainer.train(gradient_tolerance=self.tol, max_iterations=self.max_iter)
            theta[g], precision[g] = model.theta, model.precision
            nit = max(nit, md["nit"])
            if md["warnflag"]:
                warn, task = md["warnflag"], md["task"]
        return theta, precision, {"nit": nit, "warnflag": warn, "task": task, "n_groups": G, "solver": "loop"}

    # -- scoring --------------------------------------------------------------------------------
    def _batch_scores(self, batch: Batch, re_coef: np.ndarray | None = None) -> np.ndarray:
        re_coef = self.re_coef_ if re_coef is None else re_coef
        s = self._fixed_scores(batch)
        if batch.entity is not None and len(self._entities):
            codes = self._entities.codes(batch.entity, grow=False)
            known = np.flatnonzero(codes >= 0)
            if known.size:
                coef = re_coef[codes[known]]
                s[known] += coef[:, 0] + np.einsum("ij,ij->i", batch.X[known][:, self._re_cols], coef[:, 1:])
        return s

    def known_entities(self, entity: Any) -> np.ndarray:
        """True for each entity id the model has learned a coefficient for (others score without one)."""
        from battleground.incremental._frames import _entity_strings

        if not hasattr(self, "_entities"):
            return np.zeros(len(entity), dtype=bool)
        return self._entities.codes(_entity_strings(entity), grow=False) >= 0

    def decision_function(self, X: Any, *, offset: Any = None, entity: Any = None, exploration: float = 0.0,
                          random_state: int | np.random.Generator | None = None) -> np.ndarray:
        """offset + fixed effect + the entity's random effect (0 for an entity never seen).

        ``exploration`` c > 0 scores with one Thompson draw of every random effect,
        θₑ ~ N(θₑ, c / re_precision_ₑ); the fixed effect (fitted once, no posterior kept) is not drawn.
        """
        if not hasattr(self, "feature_names_in_"):
            raise RuntimeError("this model is not fitted yet; call fit_fixed_effect or partial_fit first")
        batch = self._parse(X, None, None, offset, entity, require_label=False)
        re_coef = thompson_draw(self.re_coef_, 1.0 / np.maximum(self.re_precision_, 1e-300), exploration,
                                random_state) if self.re_coef_.size else self.re_coef_
        return self._batch_scores(batch, re_coef)

    def predict_proba(self, X: Any, *, offset: Any = None, entity: Any = None) -> np.ndarray:
        p = sigmoid(self.decision_function(X, offset=offset, entity=entity))
        return np.column_stack([1.0 - p, p])

    # -- persistence ----------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        fe = getattr(self, "fixed_coef_", None)
        arrays = {"re_coef": self.re_coef_, "re_precision": self.re_precision_,
                  "entities": np.asarray(self.entities_, dtype=str),
                  "fixed_coef": np.zeros(0) if fe is None else fe}
        meta = {"kind": "glmix", "params": self.get_params(), "feature_names": self.feature_names_in_,
                "n_batches": self.n_batches_, "n_records": self.n_records_, "has_fixed_effect": fe is not None}
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> GLMix:
        model = cls(**meta["params"])
        names = list(meta["feature_names"])
        model._init_features(Batch(np.zeros((0, len(names))), names, None, np.zeros(0), np.zeros(0), None))
        model._entities = _EntityIndex([str(e) for e in arrays["entities"].tolist()])
        model.re_coef_ = np.array(arrays["re_coef"], dtype=np.float64)
        model.re_precision_ = np.array(arrays["re_precision"], dtype=np.float64)
        if meta.get("has_fixed_effect"):
            model.fixed_coef_ = np.array(arrays["fixed_coef"], dtype=np.float64)
        model.n_batches_ = int(meta["n_batches"])
        model.n_records_ = int(meta["n_records"])
        return model
