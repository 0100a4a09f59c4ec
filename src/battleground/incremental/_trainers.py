"""The Lambda-Learner trainers, scoring and evaluation, on index-domain data and models."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from battleground.incremental._explore import check_exploration, diagonal_of_inverse, thompson_draw
from battleground.incremental._records import (
    HessianType,
    IncrementalInputError,
    IndexedDataset,
    IndexedModel,
)
from battleground.incremental._solver import (
    MatrixDesign,
    OptimizationError,
    design_for,
    logistic_newton,
)

Solver = Literal["newton", "lbfgs"]

# the Newton solver's own settings; the rest of ``train``'s arguments are L-BFGS-B's
_NEWTON_OPTIONS = frozenset({"max_iterations", "gradient_tolerance"})


def _or_default(value: Any, default: Any) -> Any:
    """``default`` only when ``value`` is None: 0 is a real iteration limit or tolerance, not "unset"."""
    return default if value is None else value


def _warn_ignored(trainer: object, options: dict[str, Any], used: frozenset[str], why: str) -> None:
    ignored = [k for k, v in options.items() if v is not None and k not in used]
    if ignored:
        warnings.warn(f"{type(trainer).__name__}.train ignores {', '.join(ignored)}: {why}", UserWarning,
                      stacklevel=3)


def _check_options(options: dict[str, Any]) -> None:
    for name in ("max_iterations", "max_funcalls", "max_linesearch", "num_corrections"):
        v = options.get(name)
        if v is not None and not (isinstance(v, int | np.integer) and v >= 0):
            raise IncrementalInputError(f"{name} must be an integer >= 0 (or None for the default), got {v!r}")
    for name in ("precision", "gradient_tolerance"):
        v = options.get(name)
        if v is not None and not (np.isfinite(v) and v >= 0):
            raise IncrementalInputError(f"{name} must be a finite number >= 0 (or None for the default), got {v!r}")


def binary_labels(y: np.ndarray, *, field: str = "label") -> np.ndarray:
    """Map binary labels (0/1 or -1/+1) to -1/+1; anything else is an error, never silently -1."""
    y = np.asarray(y, dtype=np.float64)
    ok = (y == 1.0) | (y == 0.0) | (y == -1.0)
    if not ok.all():
        bad = np.unique(y[~ok])[:5].tolist()
        raise IncrementalInputError(
            f"{field} must be binary (0/1 or -1/+1) for a logistic trainer, got {bad}; "
            "use TrainerSquareLossWithL2 for real-valued targets"
        )
    return np.where(y == 1.0, 1.0, -1.0)


def _check_weights(w: np.ndarray) -> None:
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise IncrementalInputError("weights must be finite and >= 0; got a negative or non-finite weight")


def _diag_of(hessian: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(diagonal, dense full matrix or None when the Hessian is diagonal)."""
    from scipy import sparse

    diag = np.asarray(hessian.diagonal(), dtype=np.float64)
    if sparse.issparse(hessian):
        off = hessian - sparse.diags(diag)
        if off.count_nonzero() == 0:
            return diag, None
        return diag, np.asarray(hessian.toarray())
    H = np.asarray(hessian, dtype=np.float64)
    return (diag, None) if np.count_nonzero(H - np.diag(diag)) == 0 else (diag, H)


def _as_sparse(H: np.ndarray | None, diag: np.ndarray | None) -> Any:
    from scipy import sparse

    if H is not None:
        return sparse.csr_matrix(H)
    return sparse.diags(diag).tocsr()


class _Trainer:
    """Shared trainer plumbing: validation, defaults for a missing initial model, failure policy."""

    _default_hessian: HessianType = HessianType.NONE

    def __init__(
        self,
        *,
        training_data: IndexedDataset,
        initial_model: IndexedModel,
        hessian_type: HessianType | None = None,
        penalty: float = 0.0,
        solver: Solver = "newton",
        on_failure: Literal["raise", "report"] = "raise",
    ) -> None:
        self.training_data = training_data
        self.initial_model = initial_model
        self.hessian_type = hessian_type
        self.penalty = penalty
        self.solver = solver
        self.on_failure = on_failure

    # the library's attribute names, kept for code written against it
    @property
    def data(self) -> IndexedDataset:
        return self.training_data

    @property
    def param_reg(self) -> float:
        return self.penalty

    def _validate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if not (np.isfinite(self.penalty) and self.penalty >= 0):
            raise IncrementalInputError(f"penalty must be a finite number >= 0, got {self.penalty!r}")
        if self.solver not in ("newton", "lbfgs"):
            raise IncrementalInputError(f"solver must be 'newton' or 'lbfgs', got {self.solver!r}")
        if self.on_failure not in ("raise", "report"):
            raise IncrementalInputError(f"on_failure must be 'raise' or 'report', got {self.on_failure!r}")
        _check_weights(self.training_data.w)
        p = self.training_data.num_cols
        theta = self.initial_model.theta
        if theta.size != p:
            raise IncrementalInputError(
                f"initial_model has {theta.size} coefficients but training_data {p} columns; index both "
                "with the same IndexMap"
            )
        if self.initial_model.hessian is None:
            return theta, np.full(p, float(self.penalty)), None
        diag, full = _diag_of(self.initial_model.hessian)
        if np.any(diag <= 0):
            raise IncrementalInputError("initial_model.hessian must have a positive diagonal (precisions > 0)")
        return theta, diag, full

    def _hessian_type(self) -> HessianType:
        ht = self._default_hessian if self.hessian_type is None else self.hessian_type
        if not isinstance(ht, HessianType):
            raise IncrementalInputError(f"hessian_type must be a HessianType, got {ht!r}")
        return ht

    def _finish(self, theta: np.ndarray, loss: float, meta: dict[str, Any], hessian: Any) -> tuple[IndexedModel, float, dict[str, Any]]:
        if meta["warnflag"] != 0:
            msg = f"{type(self).__name__} did not converge: {meta['task']} after {meta['nit']} iterations"
            meta["converged"] = False
            if self.on_failure == "raise":
                raise OptimizationError(msg + " (pass on_failure='report' to get the last iterate)", meta)
        else:
            meta["converged"] = True
        return IndexedModel(theta, hessian), float(loss), meta

    def _ridge_delta(self) -> tuple[float, float]:
        """(ridge ρ, forgetting factor δ) of the logistic objective."""
        raise NotImplementedError

    def _problem(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, float]:
        """(design, ±1 labels, θ₀, μ, diag prior, full prior or None, ridge) of the logistic objective."""
        ridge, delta = self._ridge_delta()
        theta0, prior_diag, prior_full = self._validate()
        y = binary_labels(self.training_data.y)
        design = design_for(self.training_data.X)
        mu = theta0 if delta > 0 else np.zeros_like(theta0)
        pd = delta * prior_diag
        pf = None if prior_full is None or delta == 0 else delta * prior_full
        return design, y, theta0, mu, pd, pf, ridge

    def _loss_and_gradient(self, coefficients: Any) -> tuple[float, np.ndarray]:
        from battleground.incremental._solver import log1pexp_neg, sigmoid

        design, y, _, mu, pd, pf, ridge = self._problem()
        t = np.asarray(coefficients, dtype=np.float64).ravel()
        if t.size != design.n_coef:
            raise IncrementalInputError(f"coefficients must have {design.n_coef} entries, got {t.size}")
        data = self.training_data
        m = y * (design.matvec(t) + data.offsets)
        dev = t - mu
        Pd = pf @ dev if pf is not None else pd * dev
        loss = float(data.w @ log1pexp_neg(m)) + 0.5 * float(dev @ Pd) + 0.5 * ridge * float(t @ t)
        return loss, design.rmatvec(-data.w * y * sigmoid(-m)) + Pd + ridge * t

    def loss(self, coefficients: Any) -> float:
        """The objective ``train`` minimises, at ``coefficients`` (as lambda-learner's trainers offer)."""
        return self._loss_and_gradient(coefficients)[0]

    def gradient(self, coefficients: Any) -> np.ndarray:
        """The objective's gradient at ``coefficients``."""
        return self._loss_and_gradient(coefficients)[1]

    def _logistic(self, **opts: Any) -> tuple[IndexedModel, float, dict[str, Any]]:
        _check_options(opts)
        if self.solver == "newton":
            _warn_ignored(self, opts, _NEWTON_OPTIONS,
                          "they set L-BFGS-B, and solver='newton' does not use them (pass solver='lbfgs')")
        design, y, theta0, mu, pd, pf, ridge = self._problem()
        data = self.training_data
        if self.solver == "newton":
            res = logistic_newton(
                design, y, data.w, data.offsets, mu=mu, prior_diag=pd, prior_full=pf, ridge=ridge,
                x0=theta0, gtol=_or_default(opts.get("gradient_tolerance"), 1e-9),
                max_iter=_or_default(opts.get("max_iterations"), 100),
            )
            theta, loss, curvature, meta = res.theta, res.loss, res.curvature, res.metadata
        else:
            theta, loss, curvature, meta = _lbfgs(design, y, data.w, data.offsets, mu, pd, pf, ridge, theta0, opts)
        ht = self._hessian_type()
        hessian: Any = None
        if ht is HessianType.IDENTITY:
            hessian = _as_sparse(None, np.ones(theta.size))
        elif ht is HessianType.DIAGONAL:
            base = ridge + (pd if pf is None else np.diag(pf))
            hessian = _as_sparse(None, design.hessian_diag(curvature) + base)
        elif ht is HessianType.FULL:
            H = design.hessian(curvature)
            H[np.diag_indices_from(H)] += ridge
            H += np.diag(pd) if pf is None else pf
            hessian = _as_sparse(H, None)
        return self._finish(theta, loss, meta, hessian)


def _lbfgs(design: Any, y: np.ndarray, w: np.ndarray, o: np.ndarray, mu: np.ndarray,
           pd: np.ndarray, pf: np.ndarray | None, ridge: float, x0: np.ndarray,
           opts: dict[str, Any]) -> tuple[np.ndarray, float, np.ndarray, dict[str, Any]]:
    """The library's optimiser (scipy L-BFGS-B) on the same loss, for parity checks."""
    from scipy.optimize import fmin_l_bfgs_b

    from battleground.incremental._solver import log1pexp_neg, sigmoid

    def f(t: np.ndarray) -> tuple[float, np.ndarray]:
        m = y * (design.matvec(t) + o)
        dev = t - mu
        Pd = pf @ dev if pf is not None else pd * dev
        loss = float(w @ log1pexp_neg(m)) + 0.5 * float(dev @ Pd) + 0.5 * ridge * float(t @ t)
        g = design.rmatvec(-w * y * sigmoid(-m)) + Pd + ridge * t
        return loss, g

    theta, loss, info = fmin_l_bfgs_b(
        f, x0, m=_or_default(opts.get("num_corrections"), 10), factr=_or_default(opts.get("precision"), 1e7),
        pgtol=_or_default(opts.get("gradient_tolerance"), 1e-5),
        maxiter=_or_default(opts.get("max_iterations"), 15000),
        maxfun=_or_default(opts.get("max_funcalls"), 15000), maxls=_or_default(opts.get("max_linesearch"), 20),
    )
    s = sigmoid(y * (design.matvec(theta) + o))
    meta = dict(info)
    meta["task"] = str(meta.get("task", ""))
    meta["solver"] = "lbfgs"
    return theta, float(loss), w * s * (1.0 - s), meta


class TrainerSequentialBayesianLogisticLossWithL2(_Trainer):
    """Sequential Bayesian logistic regression (Lambda Learner, arXiv:2010.05154).

    Minimises ``Σ w log(1+e^{-y z}) + (1-δ)λ/2 ‖θ‖² + δ/2 (θ-μ)ᵀ H₀ (θ-μ)`` where (μ, H₀) is the
    initial model (previous posterior) and returns the posterior precision
    ``δ H₀ + Xᵀ diag(w σ(1-σ)) X + (1-δ)λ I`` (weights included, unlike the original).

    Args:
        training_data: indexed mini-batch; labels 0/1 or -1/+1.
        initial_model: prior means and Hessian (precision); a missing Hessian means precision λ.
        penalty: λ. delta: forgetting factor δ in [0, 1].
        hessian_type: DIAGONAL (default: what the name-term round trip keeps), FULL, IDENTITY, NONE.
        solver: "newton" (exact, default) or "lbfgs" (the library's optimiser).
        on_failure: "raise" an :class:`OptimizationError`, or "report" it in the metadata.
    """

    _default_hessian = HessianType.DIAGONAL

    def __init__(
        self,
        *,
        training_data: IndexedDataset,
        initial_model: IndexedModel,
        hessian_type: HessianType | None = None,
        penalty: float = 0.0,
        delta: float = 0.8,
        solver: Solver = "newton",
        on_failure: Literal["raise", "report"] = "raise",
    ) -> None:
        super().__init__(training_data=training_data, initial_model=initial_model, hessian_type=hessian_type,
                         penalty=penalty, solver=solver, on_failure=on_failure)
        self.delta = delta

    @property
    def param_delta(self) -> float:
        return self.delta

    def _ridge_delta(self) -> tuple[float, float]:
        if not 0.0 <= self.delta <= 1.0:
            raise IncrementalInputError(f"delta (forgetting factor) must be in [0, 1], got {self.delta!r}")
        return (1.0 - self.delta) * self.penalty, float(self.delta)

    def train(
        self,
        max_iterations: int | None = None,
        max_funcalls: int | None = None,
        max_linesearch: int | None = None,
        num_corrections: int | None = None,
        precision: float | None = None,
        gradient_tolerance: float | None = None,
    ) -> tuple[IndexedModel, float, dict[str, Any]]:
        """Fit; returns (posterior model, loss at the optimum, optimiser metadata)."""
        if not 0.0 <= self.delta <= 1.0:
            raise IncrementalInputError(f"delta (forgetting factor) must be in [0, 1], got {self.delta!r}")
        return self._logistic(
            max_iterations=max_iterations,
            max_funcalls=max_funcalls, max_linesearch=max_linesearch, num_corrections=num_corrections,
            precision=precision, gradient_tolerance=gradient_tolerance,
        )


class TrainerLogisticLossWithL2(_Trainer):
    """L2-regularised logistic regression: ``Σ w log(1+e^{-y z}) + λ/2 ‖θ‖²`` (starts from the initial θ).

    With ``hessian_type=FULL``/``DIAGONAL`` the returned Hessian is ``Xᵀ diag(w σ(1-σ)) X + λ I``.
    """

    def _ridge_delta(self) -> tuple[float, float]:
        return float(self.penalty), 0.0

    def train(
        self,
        max_iterations: int | None = None,
        max_funcalls: int | None = None,
        max_linesearch: int | None = None,
        num_corrections: int | None = None,
        precision: float | None = None,
        gradient_tolerance: float | None = None,
    ) -> tuple[IndexedModel, float, dict[str, Any]]:
        """Fit; returns (model, loss at the optimum, optimiser metadata)."""
        return self._logistic(
            max_iterations=max_iterations, max_funcalls=max_funcalls,
            max_linesearch=max_linesearch, num_corrections=num_corrections, precision=precision,
            gradient_tolerance=gradient_tolerance,
        )


class TrainerSquareLossWithL2(_Trainer):
    """Ridge regression: ``1/2 Σ w (Xθ + offset - y)² + λ/2 ‖θ‖²``, solved in closed form.

    Labels are used as given (the original forced them to ±1). The returned Hessian (FULL/DIAGONAL)
    is the square loss's own ``Xᵀ W X + λ I``.
    """

    def _loss_and_gradient(self, coefficients: Any) -> tuple[float, np.ndarray]:
        self._validate()
        data = self.training_data
        design = MatrixDesign(data.X)
        t = np.asarray(coefficients, dtype=np.float64).ravel()
        if t.size != design.n_coef:
            raise IncrementalInputError(f"coefficients must have {design.n_coef} entries, got {t.size}")
        r = design.matvec(t) + data.offsets - data.y
        loss = 0.5 * float(data.w @ (r * r)) + 0.5 * self.penalty * float(t @ t)
        return loss, design.rmatvec(data.w * r) + self.penalty * t

    def train(self, **optimizer_options: Any) -> tuple[IndexedModel, float, dict[str, Any]]:
        """Fit in closed form; returns (model, loss at the optimum, metadata). Optimiser options have
        no use here: passing one warns."""
        from scipy.linalg import LinAlgError

        from battleground.incremental._solver import _spd_solve

        _warn_ignored(self, optimizer_options, frozenset(), "the square loss is solved in closed form")
        self._validate()
        data = self.training_data
        design = MatrixDesign(data.X)
        H = design.hessian(data.w)
        H[np.diag_indices_from(H)] += self.penalty
        b = design.rmatvec(data.w * (data.y - data.offsets))
        try:
            theta = _spd_solve(H, b)
        except LinAlgError as exc:
            raise OptimizationError(
                f"square loss normal equations are singular; use penalty > 0 ({exc})",
                {"warnflag": 2, "task": "SINGULAR", "nit": 0},
            ) from exc
        r = design.matvec(theta) + data.offsets - data.y
        loss = 0.5 * float(data.w @ (r * r)) + 0.5 * self.penalty * float(theta @ theta)
        ht = self._hessian_type()
        hessian: Any = None
        if ht is HessianType.FULL:
            hessian = _as_sparse(H, None)
        elif ht is HessianType.DIAGONAL:
            hessian = _as_sparse(None, np.diag(H).copy())
        elif ht is HessianType.IDENTITY:
            hessian = _as_sparse(None, np.ones(theta.size))
        g = design.rmatvec(data.w * r) + self.penalty * theta
        meta = {"grad": g, "nit": 1, "funcalls": 1, "warnflag": 0, "task": "CLOSED FORM", "solver": "cholesky"}
        return self._finish(theta, loss, meta, hessian)


def score_linear_model(
    model: IndexedModel,
    test_data: IndexedDataset,
    exploration_threshold: float = 0.0,
    *,
    random_state: int | np.random.Generator | None = None,
    variance: Literal["inverse_diagonal", "diagonal_of_inverse"] = "inverse_diagonal",
) -> np.ndarray:
    """Scores ``Xθ + offset``; with ``exploration_threshold`` c > 0, Thompson sampling draws
    ``θ ~ N(θ, c · diag(v))`` with v = ``1/diag(H)`` (``variance="inverse_diagonal"``, what a diagonal
    model keeps) or v = ``diag(H⁻¹)`` (``"diagonal_of_inverse"``, the marginal posterior variance: the
    calibrated choice when features correlate and the model holds a FULL Hessian)."""
    theta = model.theta
    if variance not in ("inverse_diagonal", "diagonal_of_inverse"):
        raise IncrementalInputError(f"variance must be 'inverse_diagonal' or 'diagonal_of_inverse', got {variance!r}")
    if exploration_threshold != 0:
        check_exploration(exploration_threshold, "exploration_threshold")
        if model.hessian is None:
            raise IncrementalInputError("the model has no Hessian; train with a hessian_type other than NONE to explore")
        if variance == "diagonal_of_inverse":
            H = model.hessian.toarray() if hasattr(model.hessian, "toarray") else np.asarray(model.hessian)
            var = diagonal_of_inverse(H)
        else:
            assert model.variance is not None  # the Hessian is there
            var = model.variance
        theta = thompson_draw(theta, var, exploration_threshold, random_state, name="exploration_threshold")
    if test_data.num_cols != theta.size:
        raise IncrementalInputError(
            f"test data has {test_data.num_cols} columns but the model {theta.size} coefficients; index "
            "the test data with the model's IndexMap"
        )
    return np.asarray(test_data.X @ theta).ravel() + test_data.offsets


def _auc(y_scores: np.ndarray, y_targets: np.ndarray) -> float:
    from scipy.stats import rankdata

    pos = np.asarray(y_targets) == 1
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise IncrementalInputError("auc needs both classes in y_targets (label 1 and another label)")
    ranks = rankdata(y_scores)  # average ranks: ties count 1/2, as the ROC trapezoid does
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _rmse(y_scores: np.ndarray, y_targets: np.ndarray) -> float:
    r = np.asarray(y_targets, dtype=np.float64) - np.asarray(y_scores, dtype=np.float64)
    return float(np.sqrt(np.mean(r * r)))


METRICS = {"auc": _auc, "rmse": _rmse}


def evaluate(metric_list: Sequence[str], y_scores: Any, y_targets: Any) -> dict[str, float]:
    """Compute metrics by name (``'auc'``, ``'rmse'``); AUC takes label 1 as the positive class."""
    unknown = sorted(set(metric_list) - set(METRICS))
    if unknown:
        raise IncrementalInputError(f"unsupported metrics {unknown}; choose from {sorted(METRICS)}")
    s = np.asarray(y_scores, dtype=np.float64).ravel()
    t = np.asarray(y_targets, dtype=np.float64).ravel()
    if s.shape != t.shape:
        raise IncrementalInputError(f"y_scores has {s.size} entries but y_targets {t.size}")
    return {name: METRICS[name](s, t) for name in metric_list}
