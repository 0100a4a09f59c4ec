"""Trainers, Optuna tuning, a leaderboard of model types and a soft-voting ensemble of the top k.

Example (seed ``000``):
    >>> from battleground.model.data import CreateDataSet
    >>> from battleground.model.train import Trainer
    >>> X_train, y_train = CreateDataSet(n_characters=400).load_train_set()
    >>> trainer = Trainer(model="lightgbm", params={"n_estimators": 20})
    >>> fit_params = {"categorical_features": ["class", "sub_type"]}
    >>> trainer = trainer.fit(X_train, y_train, **fit_params)
    >>> trainer.predict_proba(X_train).shape[1]
    2
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from battleground._suggest import suggest
from battleground.model.data import ModelInputError, categorical_columns

if TYPE_CHECKING:
    import optuna
    import pandas as pd

__all__ = [
    "DEFAULT_SEARCH_SPACES",
    "MODELS",
    "REGRESSORS",
    "LeaderboardResult",
    "RegressionTrainer",
    "Trainer",
    "TuneResult",
    "TuningWorkers",
    "check_params",
    "leaderboard",
    "parse_search_space",
    "top_k_voting",
    "tune",
]

MODELS = ("lightgbm", "xgboost", "logistic", "random_forest", "voting", "linear")
TUNABLE = ("lightgbm", "xgboost", "logistic", "random_forest")
REGRESSORS = ("lightgbm", "xgboost", "linear", "random_forest")  # RegressionTrainer's models (linear: Ridge)
TASKS = ("classification", "regression")
CLASSIFICATION_METRICS = ("roc_auc", "pr_auc", "fbeta", "neg_log_loss", "log_loss", "brier")
REGRESSION_METRICS = ("rmse", "mae", "r2")
METRICS = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
# metrics where a smaller value is the better model: the gate, tuning and every ranking turn these around
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})
# seed 002 names its models by class; accept those too
ALIASES = {
    "LGBMClassifier": "lightgbm",
    "XGBClassifier": "xgboost",
    "LogisticRegression": "logistic",
    "RandomForestClassifier": "random_forest",
    "VotingClassifier": "voting",
    "LGBMRegressor": "lightgbm",
    "XGBRegressor": "xgboost",
    "Ridge": "linear",
    "LinearRegression": "linear",
    "RandomForestRegressor": "random_forest",
}

DEFAULT_SEARCH_SPACES = """\
lightgbm:
  n_estimators: [50, 400]
  learning_rate: [0.01, 0.3, log]
  num_leaves: [8, 128, log]
  min_child_samples: [5, 100, log]
  colsample_bytree: [0.5, 1.0]
  reg_lambda: [0.001, 10.0, log]
xgboost:
  n_estimators: [50, 400]
  learning_rate: [0.01, 0.3, log]
  max_depth: [2, 8]
  min_child_weight: [1.0, 20.0, log]
  colsample_bytree: [0.5, 1.0]
  reg_lambda: [0.001, 10.0, log]
logistic:
  C: [0.001, 100.0, log]
linear:
  alpha: [0.001, 100.0, log]
random_forest:
  n_estimators: [50, 300]
  max_depth: [3, 20]
  min_samples_leaf: [1, 50, log]
  max_features: [0.2, 1.0]
"""


def canonical_model(name: str) -> str:
    """``'LGBMClassifier'`` → ``'lightgbm'``; unknown names raise a ValueError listing valid ones."""
    key = ALIASES.get(str(name), str(name))
    if key not in MODELS:
        raise ModelInputError(f"model={name!r} is unknown{suggest(str(name), [*MODELS, *ALIASES])}; "
                         f"valid models: {list(MODELS)} (or {list(ALIASES)})")
    return key


_EXTRA_XGB_PARAMS = ("eta", "lambda", "alpha", "min_split_loss", "seed", "nthread", "max_cat_to_onehot")


def valid_params(kind: str, task: str = "classification") -> tuple[list[str], set[str]]:
    """(the estimator's documented parameter names, every name it accepts) for a model type."""
    import inspect

    kind = canonical_model(kind)
    if kind == "linear":
        from sklearn.linear_model import Ridge

        shown = sorted(Ridge().get_params())
        return shown, set(shown)
    if kind == "random_forest" and task == "regression":
        from sklearn.ensemble import RandomForestRegressor

        shown = sorted(RandomForestRegressor().get_params())
        return shown, set(shown)
    if kind == "lightgbm":
        import lightgbm as lgb

        shown = sorted(lgb.LGBMClassifier().get_params())
        accepted = set(shown)
        try:  # LightGBM's own config names and their aliases (num_leaf, eta, ...): private, so optional
            from lightgbm.basic import _ConfigAliases

            for name, aliases in _ConfigAliases._get_all_param_aliases().items():
                accepted |= {name, *aliases}
        except (ImportError, AttributeError):
            pass
        return shown, accepted
    if kind == "xgboost":
        import xgboost as xgb

        shown = sorted(n for n in inspect.signature(xgb.XGBModel.__init__).parameters if n not in ("self", "kwargs"))
        return shown, set(shown) | set(_EXTRA_XGB_PARAMS)
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        shown = sorted(LogisticRegression().get_params())
    elif kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        shown = sorted(RandomForestClassifier().get_params())
    else:
        shown = ["flatten_transform", "n_jobs", "verbose", "weights"]
    return shown, set(shown)


def check_params(kind: str, params: Mapping[str, Any] | Sequence[str] | None, *, where: str = "params",
                 task: str = "classification") -> None:
    """Raise a ValueError naming a parameter the model type does not know (a typo is otherwise
    silently ignored by LightGBM and XGBoost)."""
    if not params:
        return
    shown, accepted = valid_params(kind, task)
    for name in params:
        if str(name) not in accepted:
            raise ModelInputError(
                f"{where} has unknown parameter {str(name)!r} for model {canonical_model(kind)!r}"
                f"{suggest(str(name), shown)}; valid parameters: {shown}"
            )


def _lgb_threads(est: Any) -> dict[str, Any]:
    """The ``num_threads`` a LightGBM estimator's ``predict`` passes its booster (from ``n_jobs``)."""
    process = getattr(est, "_process_n_jobs", None)
    return {"num_threads": process(est.n_jobs)} if process is not None else {}


class _CategoricalInput:
    """What both trainers share: categorical columns reach LightGBM and XGBoost as pandas categories
    with the categories seen in ``fit`` (unseen ones become missing), and LightGBM's float matrix is
    built without its per-call pandas conversion. Needs ``categories_``, ``kind_`` and
    ``feature_names_in_`` set by ``fit``."""

    categories_: dict[str, list[str]]
    kind_: str
    feature_names_in_: np.ndarray

    def _prepare(self, X: Any) -> pd.DataFrame:
        import pandas as pd

        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(np.asarray(X), columns=[f"x{i}" for i in range(np.asarray(X).shape[1])])
        if not self.categories_ or self.kind_ not in ("lightgbm", "xgboost"):
            return X
        X = X.copy(deep=False)  # whole columns are replaced below: the caller's frame stays as it was
        for col in self.categories_:
            # categories unseen in fit become missing values
            X[col] = pd.Categorical.from_codes(self._codes(col, X[col]), dtype=self._lookup(col)[1])
        return X

    def _lookup(self, col: str) -> tuple[dict[Any, int], Any, Any]:
        """(category → code, the CategoricalDtype, a pandas Index of the categories) of a fitted column,
        built once and kept beside the fitted state (rebuilt when ``categories_`` is replaced)."""
        import pandas as pd

        cache = self.__dict__.get("_lookups")
        if cache is None or cache[0] is not self.categories_:
            built = {c: ({v: i for i, v in enumerate(cats)}, pd.CategoricalDtype(cats), pd.Index(cats, dtype=object))
                     for c, cats in self.categories_.items()}
            cache = self.__dict__["_lookups"] = (self.categories_, built)
        return cache[1][col]  # type: ignore[no-any-return]

    def _codes(self, col: str, values: Any) -> np.ndarray:
        """Category codes of ``values`` as fitted (-1: missing or unseen); a value matches by its text,
        ``str(v)``, as in ``fit``. A dict lookup for a few rows, a hash join for many."""
        import pandas as pd

        mapping, _, index = self._lookup(col)
        if len(values) <= 64:  # one request: pandas' machinery costs more than the lookups
            out = []
            for v in values.tolist():
                code = mapping.get(v) if isinstance(v, str) else None
                if code is None:
                    code = -1 if v is None or pd.isna(v) else mapping.get(str(v), -1)
                out.append(code)
            return np.asarray(out, dtype=np.int64)
        if not isinstance(values, pd.Series):
            values = pd.Series(np.asarray(values, dtype=object), dtype=object)
        codes = np.asarray(index.get_indexer(values.to_numpy(dtype=object)), dtype=np.int64)
        retry = (codes < 0) & np.asarray(values.notna())
        if retry.any():  # non-text values (numbers, booleans) match by their text
            codes[retry] = index.get_indexer([str(v) for v in values[retry].tolist()])
        return codes

    def _lgb_matrix(self, X: Any) -> np.ndarray | None:
        """The float64 matrix LightGBM's booster reads (category codes, NaN for missing/unseen), built
        without its per-call pandas conversion; None when a column is of a type only that handles.
        ``X``: a DataFrame, or a mapping of column → 1-D array (a request that never becomes a frame)."""
        import pandas as pd

        cats = self.categories_
        names = [str(c) for c in self.feature_names_in_]
        numeric = [c for c in names if c not in cats]
        frame = isinstance(X, pd.DataFrame)
        if frame:  # one pass over the dtypes: X[c] per column costs more than the model
            dtypes = dict(zip(X.columns, X.dtypes, strict=True))
        else:
            X = {c: np.asarray(X[c]) for c in names}
            dtypes = {c: X[c].dtype for c in names}
        if not all((isinstance(dtypes[c], np.dtype) and dtypes[c].kind in "iuf") or (
                frame and pd.api.types.is_numeric_dtype(dtypes[c]) and not pd.api.types.is_bool_dtype(dtypes[c]))
                for c in numeric):
            return None
        n = len(X) if frame else (len(X[names[0]]) if names else 0)
        out = np.empty((n, len(names)), dtype=np.float64)
        pos = {c: i for i, c in enumerate(names)}
        if numeric and frame:
            out[:, [pos[c] for c in numeric]] = X[numeric].to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            for c in numeric:
                out[:, pos[c]] = X[c]
        for col in cats:
            codes = self._codes(col, X[col])
            out[:, pos[col]] = np.where(codes < 0, np.nan, codes)
        return out


    def _fit_columns(self, X: pd.DataFrame, kind: str, categorical_features: Sequence[str] | None) -> None:
        """Record the model kind, the columns and each categorical column's categories seen in ``fit``."""
        given = getattr(self, "categorical_features", None)
        cats = list(categorical_features if categorical_features is not None else given or [])
        unknown = [c for c in cats if c not in X.columns]
        if unknown:
            raise ModelInputError(f"categorical_features {unknown} are not columns{suggest(unknown[0], list(X.columns))}; "
                                  f"columns: {list(X.columns)}")
        cats = sorted(set(cats) | set(categorical_columns(X)), key=list(X.columns).index)
        self.kind_ = kind
        self.categorical_features_ = cats
        self.categories_ = {c: sorted(X[c].dropna().astype(str).unique().tolist()) for c in cats}
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]

    def _fit_estimator(self, est: Any, kind: str, Xp: pd.DataFrame, y: np.ndarray, sets: Sequence[tuple[Any, Any]],
                       callbacks: Sequence[Any] | None, eval_metric: str, early_stopping_rounds: int | None,
                       started: float) -> None:
        """Fit ``est``; LightGBM and XGBoost get the validation sets, callbacks and early stopping."""
        if kind == "lightgbm" and (sets or callbacks):
            import lightgbm as lgb

            stop = [lgb.early_stopping(int(early_stopping_rounds), first_metric_only=True, verbose=False)] if (
                early_stopping_rounds and sets) else []
            est.fit(Xp, y, eval_X=tuple(a for a, _ in sets) or None, eval_y=tuple(b for _, b in sets) or None,
                    eval_metric=eval_metric, callbacks=[*list(callbacks or []), *stop])
        elif kind == "xgboost" and (sets or callbacks):
            est.set_params(callbacks=list(callbacks or []) or None, eval_metric=eval_metric)
            if early_stopping_rounds and sets:
                est.set_params(early_stopping_rounds=int(early_stopping_rounds))
            est.fit(Xp, y, eval_set=list(sets) or None, verbose=False)
        else:
            est.fit(Xp, y)
        self.fit_seconds_ = time.perf_counter() - started
        kept = getattr(est, "best_iteration_", None) if kind == "lightgbm" else (
            getattr(est, "best_iteration", None) if kind == "xgboost" and early_stopping_rounds else None)
        # LightGBM counts kept rounds from 1 (0: no early stop); XGBoost's best round is 0-based
        self.best_iteration_ = (int(kept) + (kind == "xgboost")) if kept else None
        self.estimator_ = est

    def _require_columns(self, present: Any) -> None:
        """Raise naming the columns seen in ``fit`` that ``present`` (column names) lacks."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "estimator_")
        have = set(present)
        if not have.issuperset(self.feature_names_in_):
            missing = [c for c in self.feature_names_in_ if c not in have]
            raise ModelInputError(f"X lacks the columns {missing} the model was trained on")

    def _check(self, X: Any) -> pd.DataFrame:
        """``X`` prepared, in the columns seen in ``fit`` (an error names the missing ones)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "estimator_")
        Xp = self._prepare(X)
        missing = [c for c in self.feature_names_in_ if c not in Xp.columns]
        if missing:
            raise ModelInputError(f"X lacks the columns {missing} the model was trained on")
        return Xp[list(self.feature_names_in_)]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(cast("dict[str, Any]", super().__getstate__()))  # BaseEstimator's, next in the MRO
        state.pop("_lookups", None)  # a cache: rebuilt on first use
        return state



class Trainer(_CategoricalInput, ClassifierMixin, BaseEstimator):
    """One scikit-learn classifier for every supported model type.

    ``params`` go to the underlying estimator unchanged. Categorical columns (strings/categories,
    or ``categorical_features``) reach LightGBM and XGBoost natively as pandas categories and are
    one-hot encoded for the linear and forest models. ``class_weight='balanced'`` handles
    imbalance (``scale_pos_weight`` for XGBoost). ``calibration='sigmoid'|'isotonic'`` wraps the
    model in a 3-fold ``CalibratedClassifierCV``. ``model='voting'`` soft-votes ``voting_models``.
    """

    def __init__(
        self,
        model: str = "lightgbm",
        params: Mapping[str, Any] | None = None,
        *,
        categorical_features: Sequence[str] | None = None,
        class_weight: str | None = "balanced",
        calibration: str | None = None,
        voting_models: Sequence[str] = ("lightgbm", "logistic", "random_forest"),
        voting_params: Mapping[str, Mapping[str, Any]] | None = None,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.model = model
        self.params = params
        self.categorical_features = categorical_features
        self.class_weight = class_weight
        self.calibration = calibration
        self.voting_models = voting_models
        self.voting_params = voting_params
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- building -----------------------------------------------------------------------------
    def _estimator(self, kind: str, y: np.ndarray) -> Any:
        params = dict(self.params or {})
        balanced = self.class_weight == "balanced"
        if kind == "lightgbm":
            import lightgbm as lgb

            base: dict[str, Any] = {"random_state": self.random_state, "n_jobs": self.n_jobs, "verbose": -1}
            if balanced:
                base["class_weight"] = "balanced"
            return lgb.LGBMClassifier(**{**base, **params})
        if kind == "xgboost":
            import xgboost as xgb

            base = {"random_state": self.random_state, "n_jobs": self.n_jobs, "tree_method": "hist",
                    "enable_categorical": True, "max_cat_to_onehot": 1}
            if balanced:
                pos = max(int((y == 1).sum()), 1)
                base["scale_pos_weight"] = float((y != 1).sum()) / pos
            return xgb.XGBClassifier(**{**base, **params})
        from sklearn.pipeline import Pipeline

        from battleground.model.data import Preprocess

        if kind == "logistic":
            from sklearn.linear_model import LogisticRegression

            lr_base: dict[str, Any] = {"max_iter": 1000, "random_state": self.random_state}
            if balanced:
                lr_base["class_weight"] = "balanced"
            est: Any = LogisticRegression(**{**lr_base, **params})
            return Pipeline([("prep", Preprocess(categorical_features=self.categorical_features_)), ("model", est)])
        if kind == "random_forest":
            from sklearn.ensemble import RandomForestClassifier

            rf_base: dict[str, Any] = {"random_state": self.random_state, "n_jobs": self.n_jobs}
            if balanced:
                rf_base["class_weight"] = "balanced"
            est = RandomForestClassifier(**{**rf_base, **params})
            prep = Preprocess(categorical_features=self.categorical_features_, scale=False)
            return Pipeline([("prep", prep), ("model", est)])
        from sklearn.ensemble import VotingClassifier

        members = [canonical_model(m) for m in self.voting_models]
        if not members or "voting" in members:
            raise ModelInputError(f"voting_models={list(self.voting_models)} must list base models from {list(TUNABLE)}")
        vp = dict(self.voting_params or {})
        estimators = [
            (m, Trainer(m, params=vp.get(m), categorical_features=self.categorical_features_,
                        class_weight=self.class_weight, random_state=self.random_state, n_jobs=self.n_jobs))
            for m in members
        ]
        return VotingClassifier(estimators, voting="soft", **params)

    def predict_proba_columns(self, columns: Mapping[str, Any]) -> np.ndarray | None:
        """``predict_proba`` of rows given as a mapping of column → 1-D array, without building a
        DataFrame (the model server's path for a request: the same numbers as :meth:`predict_proba`);
        None when this model has no such path (then score a DataFrame)."""
        self._require_columns(columns)
        kind = getattr(self, "kind_", None)
        if kind == "lightgbm":
            return self._fast_proba(columns)
        if kind == "logistic":
            return self._fast_linear(columns)
        return None

    def _fast_proba(self, X: pd.DataFrame | Mapping[str, Any],
                    booster_predict: Callable[[Any, np.ndarray, bool], np.ndarray | None] | None = None,
                    ) -> np.ndarray | None:
        """``predict_proba`` straight from LightGBM's booster(s) on :meth:`_lgb_matrix`, the same numbers as
        the estimator's ``predict_proba`` on the prepared frame (tested to the last bit); None when the
        fitted estimator is not a plain or sigmoid/isotonic-calibrated LightGBM classifier.
        ``booster_predict(booster, matrix, raw_score)``: another walk of the trees giving the same
        numbers (batch scoring's compiled one), or None to let the booster predict."""
        est = self.estimator_
        calibrated = getattr(est, "calibrated_classifiers_", None)
        members = [cc.estimator for cc in calibrated] if calibrated is not None else [est]
        if not all(type(m).__name__ == "LGBMClassifier" and len(getattr(m, "classes_", ())) == 2
                   and isinstance(getattr(m, "objective_", None), str) for m in members):
            return None
        mat = self._lgb_matrix(X)
        if mat is None:
            return None

        def predict(m: Any, raw_score: bool) -> np.ndarray:
            out = booster_predict(m.booster_, mat, raw_score) if booster_predict is not None else None
            if out is not None:
                return out
            return np.asarray(m.booster_.predict(mat, raw_score=raw_score, **_lgb_threads(m)))

        if calibrated is None:
            p = np.asarray(predict(est, False), dtype=np.float64)
            return np.column_stack([1.0 - p, p])  # as LGBMClassifier.predict_proba stacks them
        total = np.zeros((len(mat), 2), dtype=np.float64)
        for cc in calibrated:  # sklearn's _CalibratedClassifier.predict_proba for two classes, in order
            m = cc.estimator
            if getattr(cc, "method", None) not in ("sigmoid", "isotonic") or len(cc.calibrators) != 1:
                return None
            # sklearn calibrates decision_function (LightGBM's raw score) when there is one
            raw = predict(m, hasattr(m, "decision_function"))
            proba = np.empty((len(mat), 2), dtype=np.float64)
            proba[:, 1] = cc.calibrators[0].predict(raw)
            proba[:, 0] = 1.0 - proba[:, 1]
            proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
            total += proba
        return total / len(calibrated)  # type: ignore[no-any-return]

    def _fast_linear(self, X: pd.DataFrame | Mapping[str, Any]) -> np.ndarray | None:
        """``predict_proba`` of the ``Preprocess`` + two-class ``LogisticRegression`` pipeline on the
        preprocessed matrix, without the pandas frame between the steps and scikit-learn's per-call
        validation of it (the same numbers, tested); None for any other fitted estimator."""
        from scipy.special import expit
        from sklearn.pipeline import Pipeline

        from battleground.model.data import Preprocess

        est = self.estimator_
        if not (isinstance(est, Pipeline) and len(est.steps) == 2):
            return None
        prep, lr = est.steps[0][1], est.steps[1][1]
        if type(prep) is not Preprocess or type(lr).__name__ != "LogisticRegression" or len(lr.classes_) != 2 or (
                not isinstance(lr.coef_, np.ndarray)):
            return None
        values = prep.transform_values(X)
        if values.shape[1] != lr.coef_.shape[1]:
            return None
        # LinearClassifierMixin.decision_function and _predict_proba_lr, for dense input and two classes
        prob = (values @ lr.coef_.T + lr.intercept_).reshape(-1)
        prob = expit(prob, out=prob)
        return np.stack([1 - prob, prob], axis=1)

    # -- fitting ------------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        categorical_features: Sequence[str] | None = None,
        eval_set: Sequence[tuple[Any, Any]] | None = None,
        callbacks: Sequence[Any] | None = None,
        eval_metric: str = "auc",
        early_stopping_rounds: int | None = None,
    ) -> Trainer:
        """Fit; ``categorical_features`` here overrides the constructor's (seed ``000``'s fit_params).

        ``eval_set``/``callbacks``/``eval_metric`` reach LightGBM and XGBoost (validation curves);
        ``early_stopping_rounds`` stops boosting when the first ``eval_set``'s metric stops improving
        (``best_iteration_`` then holds the number of rounds kept)."""
        import pandas as pd

        kind = canonical_model(self.model)
        if kind == "linear":
            raise ModelInputError("model='linear' (Ridge) is a regressor; for a classifier use model='logistic', "
                                  "for a numeric target RegressionTrainer('linear') (config task: regression)")
        if self.calibration not in (None, "sigmoid", "isotonic"):
            raise ModelInputError(f"calibration={self.calibration!r} is unknown; valid: [None, 'sigmoid', 'isotonic']")
        if self.class_weight not in (None, "balanced"):
            raise ModelInputError(f"class_weight={self.class_weight!r} is unknown; valid: [None, 'balanced']")
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(np.asarray(X), columns=[f"x{i}" for i in range(np.asarray(X).shape[1])])
        y_arr = np.asarray(y)
        classes = np.unique(y_arr)
        if len(classes) != 2:
            raise ModelInputError(f"y must have exactly two classes, got {classes.tolist()}; check the label column")
        if len(X) != len(y_arr):
            raise ModelInputError(f"X has {len(X)} rows but y has {len(y_arr)}")
        check_params(kind, self.params)
        self._fit_columns(X, kind, categorical_features)
        self.classes_ = classes
        est = self._estimator(kind, y_arr)
        Xp = self._prepare(X)
        started = time.perf_counter()
        if self.calibration is not None:
            from sklearn.calibration import CalibratedClassifierCV

            est = CalibratedClassifierCV(est, method=self.calibration, cv=3)
            est.fit(Xp, y_arr)
            self.fit_seconds_, self.best_iteration_, self.estimator_ = time.perf_counter() - started, None, est
            return self
        sets = [(self._prepare(a), np.asarray(b)) for a, b in (eval_set or [])]
        self._fit_estimator(est, kind, Xp, y_arr, sets, callbacks, eval_metric, early_stopping_rounds, started)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        import pandas as pd

        if getattr(self, "kind_", None) in ("lightgbm", "logistic") and isinstance(X, pd.DataFrame) and len(X):
            self._require_columns(X.columns)
        if getattr(self, "kind_", None) == "lightgbm" and isinstance(X, pd.DataFrame) and len(X):
            fast = self._fast_proba(X)
            if fast is not None:
                return fast
        if getattr(self, "kind_", None) == "logistic" and isinstance(X, pd.DataFrame) and len(X):
            fast = self._fast_linear(X)
            if fast is not None:
                return fast
        return np.asarray(pipeline_proba(self.estimator_, self._check(X)))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]

    @property
    def feature_importances_(self) -> np.ndarray:
        est = self.estimator_
        return np.asarray(getattr(est, "feature_importances_", np.zeros(self.n_features_in_)))


def pipeline_proba(model: Any, X: Any) -> Any:
    """``model.predict_proba(X)``, walking a scikit-learn ``Pipeline``'s steps directly.

    Same result as ``Pipeline.predict_proba`` without fit params; skips its per-call fitted check and
    metadata routing (about 0.3 ms a call, which matters when one row is scored per HTTP request).
    """
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        for _, step in model.steps[:-1]:
            if step is not None and not (isinstance(step, str) and step == "passthrough"):
                X = step.transform(X)
        return pipeline_proba(model.steps[-1][1], X)
    return model.predict_proba(X)


class RegressionTrainer(_CategoricalInput, RegressorMixin, BaseEstimator):
    """One scikit-learn regressor for LightGBM, XGBoost, linear (``Ridge``) and random forest models:
    :class:`Trainer`'s handling of categorical columns and parameters, for a numeric target.

    ``params`` go to ``LGBMRegressor``/``XGBRegressor``/``Ridge``/``RandomForestRegressor`` unchanged;
    categorical columns reach LightGBM and XGBoost natively and are one-hot encoded (and, for
    ``linear``, numbers standardised) for the others. ``predict`` returns the predicted values.

    Example:
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(0)
        >>> X = pd.DataFrame({"x": rng.normal(size=300), "kind": rng.choice(["a", "b"], 300)})
        >>> y = 2 * X["x"] + (X["kind"] == "b") + rng.normal(0, 0.1, 300)
        >>> reg = RegressionTrainer("linear").fit(X, y)
        >>> bool(score("rmse", y, reg.predict(X)) < 0.2)
        True
    """

    def __init__(
        self,
        model: str = "lightgbm",
        params: Mapping[str, Any] | None = None,
        *,
        categorical_features: Sequence[str] | None = None,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.model = model
        self.params = params
        self.categorical_features = categorical_features
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _estimator(self, kind: str) -> Any:
        params = dict(self.params or {})
        if kind == "lightgbm":
            import lightgbm as lgb

            return lgb.LGBMRegressor(**{"random_state": self.random_state, "n_jobs": self.n_jobs, "verbose": -1,
                                        **params})
        if kind == "xgboost":
            import xgboost as xgb

            return xgb.XGBRegressor(**{"random_state": self.random_state, "n_jobs": self.n_jobs,
                                       "tree_method": "hist", "enable_categorical": True, "max_cat_to_onehot": 1,
                                       **params})
        from sklearn.pipeline import Pipeline

        from battleground.model.data import Preprocess

        if kind == "linear":
            from sklearn.linear_model import Ridge

            return Pipeline([("prep", Preprocess(categorical_features=self.categorical_features_)),
                             ("model", Ridge(**params))])
        from sklearn.ensemble import RandomForestRegressor

        est = RandomForestRegressor(**{"random_state": self.random_state, "n_jobs": self.n_jobs, **params})
        return Pipeline([("prep", Preprocess(categorical_features=self.categorical_features_, scale=False)),
                         ("model", est)])

    def fit(
        self,
        X: Any,
        y: Any,
        categorical_features: Sequence[str] | None = None,
        eval_set: Sequence[tuple[Any, Any]] | None = None,
        callbacks: Sequence[Any] | None = None,
        eval_metric: str = "rmse",
        early_stopping_rounds: int | None = None,
    ) -> RegressionTrainer:
        """Fit on a numeric target; the keyword arguments mean what they mean for :meth:`Trainer.fit`
        (``eval_metric`` is LightGBM's/XGBoost's name: ``rmse``, ``l1``/``mae``, ...)."""
        import pandas as pd

        kind = canonical_model(self.model)
        if kind not in REGRESSORS:
            raise ModelInputError(f"model={self.model!r} is not a regressor; valid regressors: {list(REGRESSORS)} "
                                  "(or LGBMRegressor, XGBRegressor, Ridge, RandomForestRegressor)")
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(np.asarray(X), columns=[f"x{i}" for i in range(np.asarray(X).shape[1])])
        y_arr = _targets(y, "y")
        if len(X) != len(y_arr):
            raise ModelInputError(f"X has {len(X)} rows but y has {len(y_arr)}")
        check_params(kind, self.params, task="regression")
        self._fit_columns(X, kind, categorical_features)
        est = self._estimator(kind)
        Xp = self._prepare(X)
        sets = [(self._prepare(a), _targets(b, "eval_set y")) for a, b in (eval_set or [])]
        self._fit_estimator(est, kind, Xp, y_arr, sets, callbacks, eval_metric, early_stopping_rounds,
                            time.perf_counter())
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The predicted values, one float per row (categories unseen in ``fit`` count as missing)."""
        import pandas as pd

        if getattr(self, "kind_", None) in ("lightgbm", "linear") and isinstance(X, pd.DataFrame) and len(X):
            self._require_columns(X.columns)
            fast = self._fast_values(X)
            if fast is not None:
                return fast
        return np.asarray(self.estimator_.predict(self._check(X)), dtype=np.float64).ravel()

    def predict_columns(self, columns: Mapping[str, Any]) -> np.ndarray | None:
        """``predict`` of rows given as a mapping of column → 1-D array, without building a DataFrame
        (the model server's path for a request, as :meth:`Trainer.predict_proba_columns`); None when
        this model has no such path (then predict a DataFrame)."""
        self._require_columns(columns)
        return self._fast_values(columns)

    def _fast_values(self, X: pd.DataFrame | Mapping[str, Any]) -> np.ndarray | None:
        """The predicted values straight from LightGBM's booster on :meth:`_lgb_matrix`, or from the
        ``Preprocess`` + ``Ridge`` pipeline's coefficients on the preprocessed matrix: the estimator's
        own numbers (tested) without its per-call pandas conversion and validation; None otherwise."""
        from sklearn.pipeline import Pipeline

        from battleground.model.data import Preprocess

        est = self.estimator_
        if type(est).__name__ == "LGBMRegressor":
            mat = self._lgb_matrix(X)
            if mat is None:
                return None
            return np.asarray(est.booster_.predict(mat, **_lgb_threads(est)), dtype=np.float64).ravel()
        if not (isinstance(est, Pipeline) and len(est.steps) == 2):
            return None
        prep, ridge = est.steps[0][1], est.steps[1][1]
        coef = getattr(ridge, "coef_", None)
        if type(prep) is not Preprocess or type(ridge).__name__ != "Ridge" or not (
                isinstance(coef, np.ndarray) and coef.ndim == 1):
            return None
        values = prep.transform_values(X)
        if values.shape[1] != coef.shape[0]:
            return None
        # LinearModel._decision_function for dense input and one target
        return np.asarray(values @ coef + ridge.intercept_, dtype=np.float64)

    @property
    def feature_importances_(self) -> np.ndarray:
        est = self.estimator_
        inner = est.steps[-1][1] if hasattr(est, "steps") else est
        return np.asarray(getattr(inner, "feature_importances_", np.zeros(self.n_features_in_)))


def _targets(y: Any, where: str) -> np.ndarray:
    """A numeric target as float64, or a ModelInputError naming ``where``."""
    try:
        out = np.asarray(y, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ModelInputError(f"{where} must be numeric for a regression model; got dtype "
                              f"{np.asarray(y).dtype}; check the label column (task: regression)") from None
    if not np.isfinite(out).all():
        raise ModelInputError(f"{where} has {int((~np.isfinite(out)).sum())} missing or infinite targets; drop those "
                              "rows before training")
    return out


def make_trainer(task: str, model: str, params: Mapping[str, Any] | None = None, *, random_state: int = 0,
                 n_jobs: int = 1, class_weight: str | None = "balanced",
                 calibration: str | None = None) -> Trainer | RegressionTrainer:
    """A :class:`Trainer` (``task='classification'``) or :class:`RegressionTrainer` (``'regression'``);
    ``class_weight`` and ``calibration`` only apply to classification."""
    if task == "regression":
        return RegressionTrainer(model, params=params, random_state=random_state, n_jobs=n_jobs)
    if task != "classification":
        raise ModelInputError(f"task={task!r} is unknown; valid tasks: {list(TASKS)}")
    return Trainer(model, params=params, random_state=random_state, n_jobs=n_jobs, class_weight=class_weight,
                   calibration=calibration)


def predict_scores(trainer: Any, X: Any) -> np.ndarray:
    """What a metric scores: P(class 1) of a classifier, the predicted values of a regressor."""
    if hasattr(trainer, "predict_proba"):
        return np.asarray(trainer.predict_proba(X))[:, 1]
    return np.asarray(trainer.predict(X), dtype=np.float64).ravel()


# -- search spaces and tuning ----------------------------------------------------------------------


def parse_search_space(spec: str | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Parse ``{model: {param: [low, high] | [low, high, log] | {choices: [...]} | value}}``."""
    import yaml

    raw = yaml.safe_load(spec) if isinstance(spec, str) else spec
    if not isinstance(raw, Mapping):
        raise ModelInputError("a search space must map model names to {param: [low, high(, log)]}")
    out: dict[str, dict[str, Any]] = {}
    for model, params in raw.items():
        kind = canonical_model(model)
        if not isinstance(params, Mapping):
            raise ModelInputError(f"search space for {model!r} must be a mapping of parameters")
        out[kind] = {}
        for name, rng in params.items():
            if isinstance(rng, list):
                if len(rng) not in (2, 3) or (len(rng) == 3 and rng[2] != "log"):
                    raise ModelInputError(f"{model}.{name}={rng!r}: use [low, high] or [low, high, log]")
                if not all(isinstance(v, int | float) for v in rng[:2]) or rng[0] >= rng[1]:
                    raise ModelInputError(f"{model}.{name}={rng!r}: low and high must be numbers with low < high")
            elif isinstance(rng, Mapping) and set(rng) != {"choices"}:
                raise ModelInputError(f"{model}.{name}={rng!r}: a mapping must be {{choices: [...]}}")
            out[kind][str(name)] = rng
    return out


def _suggest_params(trial: optuna.Trial, space: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, rng in space.items():
        if isinstance(rng, list):
            log = len(rng) == 3
            if isinstance(rng[0], int) and isinstance(rng[1], int) and not isinstance(rng[0], bool):
                params[name] = trial.suggest_int(name, rng[0], rng[1], log=log)
            else:
                params[name] = trial.suggest_float(name, float(rng[0]), float(rng[1]), log=log)
        elif isinstance(rng, Mapping):
            params[name] = trial.suggest_categorical(name, list(rng["choices"]))
        else:
            params[name] = rng
    return params


def higher_is_better(metric: str) -> bool:
    """Whether a larger ``metric`` is the better model (``False`` for log_loss, brier, rmse and mae).

    Example:
        >>> higher_is_better("roc_auc"), higher_is_better("rmse")
        (True, False)
    """
    metric = {"fbeta_score": "fbeta", "validation_score": "roc_auc"}.get(metric, metric)
    if metric not in METRICS:
        raise ModelInputError(f"metric={metric!r} is unknown{suggest(metric, METRICS)}; valid metrics: {list(METRICS)}")
    return metric not in LOWER_IS_BETTER


def metric_task(metric: str) -> str:
    """``'regression'`` for rmse, mae and r2; ``'classification'`` for the others."""
    higher_is_better(metric)  # validates the name
    return "regression" if metric in REGRESSION_METRICS else "classification"


def score(metric: str, y: Any, proba: np.ndarray, *, beta: float = 0.5, threshold: float = 0.5) -> float:
    """One validation number of ``metric``; :func:`higher_is_better` says which way is better.

    ``proba`` is P(class 1) for a classification metric and the predicted value for rmse, mae and r2.

    Example:
        >>> score("rmse", [1.0, 3.0], np.array([1.0, 2.0]))
        0.7071067811865476
    """
    from sklearn import metrics as m

    if metric in REGRESSION_METRICS:
        yy, pp = np.asarray(y, dtype=float).ravel(), np.asarray(proba, dtype=float).ravel()
        err = pp - yy
        if metric == "rmse":
            return float(np.sqrt(np.mean(err * err)))
        if metric == "mae":
            return float(np.mean(np.abs(err)))
        centred = yy - yy.mean()
        ss_tot = float(centred @ centred)
        return float(1.0 - float(err @ err) / ss_tot) if ss_tot > 0 else float("nan")
    y = np.asarray(y)
    if metric in ("roc_auc", "validation_score"):
        return float(m.roc_auc_score(y, proba))
    if metric == "pr_auc":
        return float(m.average_precision_score(y, proba))
    if metric in ("fbeta", "fbeta_score"):
        return float(m.fbeta_score(y, (proba >= threshold).astype(int), beta=beta, zero_division=0.0))
    if metric in ("neg_log_loss", "log_loss"):
        loss = float(m.log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1]))
        return loss if metric == "log_loss" else -loss
    if metric == "brier":
        return float(m.brier_score_loss(y, proba))
    raise ModelInputError(f"metric={metric!r} is unknown{suggest(metric, METRICS)}; valid metrics: {list(METRICS)}")


@dataclass(frozen=True)
class TuneResult:
    """What a study produced: best parameters, the refitted model, the trials table and the Optuna
    study itself (``extra`` is a free dict for callers, e.g. the MLflow run of the model)."""

    model: str
    study_name: str
    best_params: dict[str, Any]
    best_value: float
    n_complete: int
    n_pruned: int
    trials: pd.DataFrame
    trainer: Trainer | RegressionTrainer
    csv_path: Path | None = None
    seconds: float = 0.0
    study: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _storage(storage: str | None, n_workers: int) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if storage is None:
        if n_workers > 1:
            raise ModelInputError("n_workers > 1 needs a shared storage: a journal file path or a postgresql:// URL "
                             "(settings.optuna_storage / BATTLEGROUND_OPTUNA_STORAGE)")
        return None
    if storage.startswith("sqlite"):
        if n_workers > 1:
            raise ModelInputError(f"storage={storage!r}: SQLite breaks under parallel workers ('database is locked'); "
                             "use a journal file path or a postgresql:// URL")
        return storage
    if storage.startswith(("postgresql", "mysql")):
        return storage
    Path(storage).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(storage)))


# the boosting libraries' validation curve that *is* the objective metric: (LightGBM, XGBoost, sign).
# Optuna stores a pruned trial's last reported value as its value, so the curve must be the objective's
# own metric; F-beta at a threshold has no such curve, so its trials are never pruned.
EARLY_STOPPING_ROUNDS = 20  # boosting stops when the objective's validation curve has not improved this long
PRUNE_CURVES: dict[str, tuple[str, str, float]] = {
    "roc_auc": ("auc", "auc", 1.0), "validation_score": ("auc", "auc", 1.0),
    "pr_auc": ("average_precision", "aucpr", 1.0), "neg_log_loss": ("binary_logloss", "logloss", -1.0),
    "log_loss": ("binary_logloss", "logloss", 1.0),  # a minimised study: the loss itself is reported
    "rmse": ("rmse", "rmse", 1.0), "mae": ("l1", "mae", 1.0),
}


def prunable(metric: str) -> bool:
    """Whether trials tuned on ``metric`` can be pruned on that same metric's validation curve."""
    return metric in PRUNE_CURVES


def _pruning_callback(kind: str, trial: optuna.Trial, metric: str) -> Any:
    import optuna

    lgb_name, xgb_name, sign = PRUNE_CURVES[metric]
    if kind == "lightgbm":
        def lgb_callback(env: Any) -> None:
            if env.iteration % 10:
                return
            for _, name, value, _ in env.evaluation_result_list:
                if name == lgb_name:
                    trial.report(sign * float(value), env.iteration)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned at iteration {env.iteration}")
        return lgb_callback
    import xgboost as xgb

    class XGBPruning(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if epoch % 10:
                return False
            for metrics in evals_log.values():
                if xgb_name in metrics:
                    trial.report(sign * float(metrics[xgb_name][-1]), epoch)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned at iteration {epoch}")
            return False
    return XGBPruning()


def _objective(kind: str, space: Mapping[str, Any], data: tuple[Any, Any, Any, Any], metric: str,
               beta: float, seed: int, base_params: Mapping[str, Any] | None, prune: bool = True,
               class_weight: str | None = "balanced", task: str = "classification") -> Any:
    X_train, y_train, X_valid, y_valid = data

    def objective(trial: optuna.Trial) -> float:
        params = {**dict(base_params or {}), **_suggest_params(trial, space)}
        trainer = make_trainer(task, kind, params, random_state=seed, n_jobs=1, class_weight=class_weight)
        if prune and prunable(metric) and kind in ("lightgbm", "xgboost"):
            lgb_name, xgb_name, _ = PRUNE_CURVES[metric]
            trainer.fit(X_train, y_train, eval_set=[(X_valid, y_valid)],
                        callbacks=[_pruning_callback(kind, trial, metric)],
                        eval_metric=lgb_name if kind == "lightgbm" else xgb_name,
                        early_stopping_rounds=EARLY_STOPPING_ROUNDS)
            if trainer.best_iteration_:  # the refit keeps as many rounds as the validation fold wanted
                trial.set_user_attr("best_iteration", trainer.best_iteration_)
        else:
            trainer.fit(X_train, y_train)
        proba = predict_scores(trainer, X_valid)
        if metric in ("fbeta", "fbeta_score"):  # at the threshold tuned on validation, as the model will be used
            return best_fbeta(y_valid, proba, beta=beta)[1]
        return score(metric, y_valid, proba, beta=beta)

    return objective


def best_fbeta(y: Any, proba: Any, *, beta: float = 0.5) -> tuple[float, float]:
    """(threshold, F-beta): the threshold on P(class 1) that maximises F-beta on these rows."""
    from battleground.model.eval import EvalClassifierModel

    report = EvalClassifierModel(beta=beta).calculate(np.asarray(proba, dtype=float), np.asarray(y))
    return report.best_threshold, report.best_fbeta


_CLAIMS: Any = None
_BARRIER: Any = None


def _init_worker(counter: Any, barrier: Any = None) -> None:
    global _BARRIER, _CLAIMS
    _CLAIMS = counter
    _BARRIER = barrier
    # import the libraries every trial needs now, so a pre-warmed worker's first trial starts at once
    import lightgbm  # noqa: F401
    import optuna  # noqa: F401
    import pandas  # noqa: F401
    import sklearn.ensemble
    import sklearn.linear_model  # noqa: F401


def _ready() -> int:
    """Runs once in each worker (the barrier makes the tasks land in distinct processes)."""
    import os

    if _BARRIER is not None:
        _BARRIER.wait(timeout=300)
    return os.getpid()


class TuningWorkers:
    """``n_workers - 1`` spawned worker processes for :func:`tune`, started once and reused.

    ``tune(..., n_workers=2)`` alone spawns its helper per call, and the helper spends seconds importing
    pandas, scikit-learn, LightGBM and Optuna before its first trial. A long-lived tuning service (or a
    notebook that tunes several models) starts the pool once; :meth:`start` returns after every worker
    has imported its libraries. Use as a context manager, or call :meth:`close`.

    Example:
        >>> with TuningWorkers(2).start() as workers:  # doctest: +SKIP
        ...     tune("lightgbm", X, y, Xv, yv, n_workers=2, storage="optuna.journal", workers=workers)
    """

    def __init__(self, n_workers: int = 2) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        if int(n_workers) < 2:
            raise ModelInputError(f"n_workers={n_workers!r} must be at least 2 (this process is worker 0)")
        self.n_workers = int(n_workers)
        # spawn, not fork: a forked child of a process that already ran OpenMP can dead-lock
        ctx = mp.get_context("spawn")
        self.counter = ctx.Value("i", 0)
        self._barrier = ctx.Barrier(self.n_workers - 1)
        self.pool = ProcessPoolExecutor(max_workers=self.n_workers - 1, mp_context=ctx, initializer=_init_worker,
                                        initargs=(self.counter, self._barrier))
        self.pids: list[int] = []

    def start(self) -> TuningWorkers:
        """Start every worker process and wait until each has imported its libraries."""
        futures = [self.pool.submit(_ready) for _ in range(self.n_workers - 1)]
        self.pids = sorted(f.result() for f in futures)
        return self

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> TuningWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run_claimed(study: optuna.Study, objective: Any, counter: Any, n_trials: int, timeout: float | None) -> None:
    """Run trials one at a time while the shared counter says the study still needs some, so a
    worker that started late simply runs fewer trials and the total is exactly ``n_trials``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        with counter.get_lock():
            if counter.value >= n_trials:
                return
            counter.value += 1
        study.optimize(objective, n_trials=1)


def _pruner(prune: bool) -> Any:
    """The same pruner in every worker: median of the trials so far, after 3 trials and 20 rounds."""
    import optuna

    if not prune:  # also for a metric without its own validation curve (see PRUNE_CURVES)
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=20)


def _worker(storage: str, study_name: str, kind: str, space: Mapping[str, Any], data: Any, metric: str,
            beta: float, seed: int, n_trials: int, timeout: float | None, base_params: Any, prune: bool,
            class_weight: str | None = "balanced", task: str = "classification") -> None:
    import optuna

    from battleground.settings import quiet_third_party_telemetry

    quiet_third_party_telemetry()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=_storage(storage, 2),
                              sampler=optuna.samplers.TPESampler(seed=seed), pruner=_pruner(prune and prunable(metric)))
    _run_claimed(study, _objective(kind, space, data, metric, beta, seed, base_params, prune, class_weight, task),
                 _CLAIMS, n_trials, timeout)


def tune(
    model: str,
    X_train: Any,
    y_train: Any,
    X_valid: Any,
    y_valid: Any,
    *,
    search_space: str | Mapping[str, Any] | None = None,
    n_trials: int = 20,
    timeout: float | None = None,
    n_workers: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    metric: str = "roc_auc",
    beta: float = 0.5,
    seed: int = 0,
    output_dir: str | Path | None = None,
    base_params: Mapping[str, Any] | None = None,
    workers: TuningWorkers | None = None,
    prune: bool = True,
    class_weight: str | None = "balanced",
    calibration: str | None = None,
    task: str = "classification",
) -> TuneResult:
    """Tune one model type with seeded TPE (and median pruning for LightGBM/XGBoost).

    ``n_workers > 1`` runs worker processes on a shared study: ``storage`` must be a journal file
    path (one machine) or a ``postgresql://`` URL (several machines). With ``output_dir`` the trials
    are written to ``<output_dir>/study_<model>.csv`` as seed ``002`` does. ``workers`` (a started
    :class:`TuningWorkers`) reuses pre-warmed worker processes instead of spawning them per call.
    ``prune=False`` runs every trial to the end (no validation curve, no median pruner).
    ``class_weight`` reaches every trial and the refitted model; ``calibration`` only the refitted one
    (it moves probabilities, not the ranking the trials are compared on).

    ``task='regression'`` tunes a :class:`RegressionTrainer` (``lightgbm``, ``xgboost``, ``linear``,
    ``random_forest``) on a numeric target with ``metric`` rmse (minimised, pruned on the boosters' rmse
    curve), mae (likewise, l1) or r2 (maximised, not pruned); the study's direction follows the metric.
    """
    import optuna

    kind = canonical_model(model)
    if task not in TASKS:
        raise ModelInputError(f"task={task!r} is unknown; valid tasks: {list(TASKS)}")
    tunable = REGRESSORS if task == "regression" else TUNABLE
    if kind not in tunable:
        raise ModelInputError(f"model={model!r} cannot be tuned for {task}; tunable models: {list(tunable)}")
    if metric_task(metric) != task:  # validates the metric name early, and that it fits the task
        valid = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
        raise ModelInputError(f"metric={metric!r} does not score {task}; valid metrics for {task}: {list(valid)}")
    if int(n_trials) < 1:
        raise ModelInputError(f"n_trials={n_trials!r} must be at least 1")
    spaces = parse_search_space(search_space if search_space is not None else DEFAULT_SEARCH_SPACES)
    if kind not in spaces:
        raise ModelInputError(f"the search space has no entry for {kind!r}; it has {sorted(spaces)}")
    space = spaces[kind]
    check_params(kind, [*space, *(base_params or {})], where="the search space", task=task)
    for part, target in (("y_train", y_train), ("y_valid", y_valid)):
        if task == "regression":
            _targets(target, part)
            continue
        classes = np.unique(np.asarray(target))
        if len(classes) != 2:
            raise ModelInputError(f"{part} must have exactly two classes, got {classes.tolist()}; check the label column")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name or f"{kind}-{int(time.time() * 1000)}"
    started = time.perf_counter()
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = _pruner(prune and prunable(metric))
    direction: Literal["maximize", "minimize"] = "maximize" if higher_is_better(metric) else "minimize"
    study = optuna.create_study(study_name=name, storage=_storage(storage, n_workers), direction=direction,
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    data = (X_train, y_train, X_valid, y_valid)
    if n_workers <= 1:
        study.optimize(_objective(kind, space, data, metric, beta, seed, base_params, prune, class_weight, task),
                       n_trials=int(n_trials),
                       timeout=timeout)
    else:
        assert storage is not None
        if workers is not None and workers.n_workers != n_workers:
            raise ModelInputError(f"workers has {workers.n_workers} workers but n_workers={n_workers}")
        # this process is worker 0, so trials start at once while spawned helpers import their libraries
        pool = workers if workers is not None else TuningWorkers(n_workers)
        try:
            with pool.counter.get_lock():
                pool.counter.value = 0
            futures = [
                pool.pool.submit(_worker, storage, name, kind, space, data, metric, beta, seed + i, int(n_trials),
                                 timeout, base_params, prune, class_weight, task)
                for i in range(1, n_workers)
            ]
            _run_claimed(study, _objective(kind, space, data, metric, beta, seed, base_params, prune, class_weight,
                                           task),
                         pool.counter,
                         int(n_trials), timeout)
            for f in futures:
                f.result()
        finally:
            if workers is None:
                pool.close()
        study = optuna.load_study(study_name=name, storage=_storage(storage, n_workers))
    states = [t.state for t in study.trials]
    complete = sum(s == optuna.trial.TrialState.COMPLETE for s in states)
    if complete == 0:
        raise RuntimeError(f"no trial of study {name!r} completed (pruned or timed out); raise timeout or n_trials")
    best = dict(study.best_params)
    rounds = study.best_trial.user_attrs.get("best_iteration")
    # early stopping on the validation fold chose the best trial's rounds: the refit keeps that many
    refit = {**dict(base_params or {}), **best, **({"n_estimators": int(rounds)} if rounds else {})}
    trials = study.trials_dataframe()
    trainer = make_trainer(task, kind, refit, random_state=seed, n_jobs=1, class_weight=class_weight,
                           calibration=calibration)
    trainer.fit(X_train, y_train)
    csv_path = None
    if output_dir is not None:
        csv_path = Path(output_dir) / f"study_{kind}.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        trials.to_csv(csv_path, index=False)
    return TuneResult(
        model=kind, study_name=name, best_params=best, best_value=float(study.best_value), n_complete=complete,
        n_pruned=sum(s == optuna.trial.TrialState.PRUNED for s in states), trials=trials, trainer=trainer,
        csv_path=csv_path, seconds=time.perf_counter() - started, study=study,
    )


# -- leaderboard and voting -----------------------------------------------------------------------


@dataclass
class LeaderboardResult:
    """A table of validation metrics (best first) and the fitted trainers by model name."""

    table: pd.DataFrame
    trainers: dict[str, Trainer | RegressionTrainer]
    metric: str


def _board_row(task: str, y: Any, p: np.ndarray, beta: float) -> dict[str, float]:
    """The leaderboard's metric columns of one model on the validation rows."""
    if task == "regression":
        return {m: score(m, y, p) for m in REGRESSION_METRICS}
    return {"roc_auc": score("roc_auc", y, p), "pr_auc": score("pr_auc", y, p),
            "fbeta": score("fbeta", y, p, beta=beta), "log_loss": score("log_loss", y, p),
            "brier": score("brier", y, p)}


def leaderboard(
    X_train: Any,
    y_train: Any,
    X_valid: Any,
    y_valid: Any,
    *,
    models: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    metric: str | None = None,
    beta: float = 0.5,
    seed: int = 0,
    cv: int = 0,
    groups: Any = None,
    task: str = "classification",
) -> LeaderboardResult:
    """Fit each model type with default (or given) parameters and rank them, like PyCaret's
    ``compare_models``: ROC AUC, PR AUC, F-beta at 0.5, log loss, Brier and fit seconds; for
    ``task='regression'`` (models from ``REGRESSORS``) RMSE, MAE and R². ``metric`` ranks the rows in its
    own direction (default: roc_auc, for regression rmse, smallest first).

    A model given tuned ``params`` also gets a ``<model> (default)`` row with its untuned defaults, so
    a tuned model that loses to its default shows. ``cv >= 2`` adds ``cv_<metric>_mean``/``_sd`` over
    k folds of the training rows (stratified for classification), grouped by ``groups`` (entity ids:
    no entity in two folds).

    Example:
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(0)
        >>> X = pd.DataFrame({"x": rng.normal(size=400)})
        >>> y = 2 * X["x"] + rng.normal(0, 0.5, 400)
        >>> board = leaderboard(X[:300], y[:300], X[300:], y[300:], models=["linear", "random_forest"],
        ...                     task="regression")
        >>> board.table["model"].tolist(), bool(board.table["rmse"].is_monotonic_increasing)
        (['linear', 'random_forest'], True)
    """
    import pandas as pd

    if task not in TASKS:
        raise ModelInputError(f"task={task!r} is unknown; valid tasks: {list(TASKS)}")
    regression = task == "regression"
    metric = metric or ("rmse" if regression else "roc_auc")
    if metric_task(metric) != task:
        valid = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
        raise ModelInputError(f"metric={metric!r} does not score {task}; valid metrics for {task}: {list(valid)}")
    kinds = [canonical_model(x) for x in (models if models is not None else (REGRESSORS if regression else TUNABLE))]
    wrong = [k for k in kinds if regression and k not in REGRESSORS]
    if wrong:
        raise ModelInputError(f"model={wrong[0]!r} is not a regressor; valid models for regression: {list(REGRESSORS)}")
    if cv and int(cv) < 2:
        raise ModelInputError(f"cv={cv!r} must be 0 (no cross-validation) or at least 2 folds")
    entries: list[tuple[str, str, Mapping[str, Any] | None]] = []
    for kind in kinds:
        given = (params or {}).get(kind)
        entries.append((kind, kind, given))
        if given:
            entries.append((f"{kind} (default)", kind, None))
    rows = []
    trainers: dict[str, Trainer | RegressionTrainer] = {}
    y = _targets(y_valid, "y_valid") if regression else np.asarray(y_valid)
    for label, kind, kind_params in entries:
        trainer = make_trainer(task, kind, kind_params, random_state=seed).fit(X_train, y_train)
        p = predict_scores(trainer, X_valid)
        folds = _cv_scores(task, kind, kind_params, X_train, y_train, groups, int(cv), metric, beta, seed) if cv \
            else None
        rows.append({
            "model": label, **_board_row(task, y, p, beta), "fit_seconds": trainer.fit_seconds_,
            "_score": score(metric, y, p, beta=beta),
            **({} if folds is None else {f"cv_{metric}_mean": float(np.mean(folds)),
                                         f"cv_{metric}_sd": float(np.std(folds, ddof=1))}),
        })
        trainers[label] = trainer
    table = pd.DataFrame(rows).sort_values("_score", ascending=not higher_is_better(metric),
                                           kind="stable").drop(columns="_score")
    return LeaderboardResult(table=table.reset_index(drop=True), trainers=trainers, metric=metric)


def _cv_scores(task: str, kind: str, params: Mapping[str, Any] | None, X: Any, y: Any, groups: Any, k: int,
               metric: str, beta: float, seed: int) -> list[float]:
    """``metric`` on each of ``k`` folds (stratified for classification; with ``groups``, entity-grouped)."""
    import pandas as pd
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    X = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    yy = np.asarray(y)
    splitter: Any
    if task == "regression":
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed) if groups is not None else KFold(
            n_splits=k, shuffle=True, random_state=seed)
    elif groups is not None:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    splits = splitter.split(X, yy, None if groups is None else np.asarray(groups))
    out = []
    for fit_idx, test_idx in splits:
        t = make_trainer(task, kind, params, random_state=seed).fit(X.iloc[fit_idx], yy[fit_idx])
        out.append(score(metric, yy[test_idx], predict_scores(t, X.iloc[test_idx]), beta=beta))
    return out


def top_k_voting(board: LeaderboardResult, X_train: Any, y_train: Any, *, k: int = 3,
                 params: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0) -> Trainer:
    """A soft-voting ensemble of the ``k`` best model types of a leaderboard, fitted on the data."""
    names = [str(n) for n in board.table["model"].tolist() if n != "voting" and not str(n).endswith("(default)")]
    names = names[: int(k)]
    if int(k) < 2 or len(names) < 2:
        raise ModelInputError(f"k={k} must be at least 2 and the leaderboard needs two base models, has {names}")
    return Trainer("voting", voting_models=names, voting_params=params, random_state=seed).fit(X_train, y_train)
