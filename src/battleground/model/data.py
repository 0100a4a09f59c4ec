"""Data for models: data sets as of cut-off dates, splits, feature selection, preprocessing.

Example (seed ``000``, typos fixed):
    >>> from battleground.model.data import Preprocess, FeatureSelection, CreateDataSet
    >>> dataset = CreateDataSet(feature_list=[], train_dt=[], infer_dt=[], n_characters=400)
    >>> X_train, y_train = dataset.load_train_set()
    >>> X_test, y_test = dataset.load_test_set()
    >>> fs = FeatureSelection(method="variance")
    >>> X_train_selected = fs.fit_transform(X_train, y_train)
    >>> preprocess = Preprocess(numerical_features=[], categorical_features=[], imputation_methods=[])
    >>> X_train = preprocess.fit_transform(X_train, y_train)
    >>> X_test = preprocess.transform(X_test)
    >>> X_train.shape[1] == X_test.shape[1]
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from battleground._suggest import suggest
from battleground.errors import ModelError

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

__all__ = [
    "ALLOWED_STEP_MODULES",
    "CreateDataSet",
    "FeatureSelection",
    "Preprocess",
    "build_preprocessing",
    "read_splits",
    "split_data",
    "write_splits",
]


class ModelInputError(ModelError, ValueError):
    """Data, preprocessing or training inputs that cannot be used (the message says which and why)."""


class MissingSplitsError(ModelError, FileNotFoundError):
    """The data splits a step needs have not been written yet."""


SPLITS = ("train", "valid", "calib", "test")
ALLOWED_STEP_MODULES = (
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.feature_selection",
    "sklearn.decomposition",
    "battleground.model.data",
)
_DEFAULT_CUTOFFS = {"game": (["2022-07-01", "2022-09-01"], ["2022-12-01"]),
                    "game2": (["2023-07-01", "2023-09-01"], ["2023-12-01"])}


def categorical_columns(X: pd.DataFrame) -> list[str]:
    """Columns holding strings, categories or booleans."""
    import pandas as pd

    return [
        c for c in X.columns
        if isinstance(X[c].dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(X[c].dtype)
        or X[c].dtype == object or pd.api.types.is_bool_dtype(X[c].dtype)
    ]


class CreateDataSet:
    """Train and test sets from the churn tables, features computed as of each cut-off date.

    ``train_dt`` cut-offs are stacked into the training set, ``infer_dt`` into the test set; empty
    lists mean the variant's defaults. ``feature_list`` empty means every feature. ``tables`` are the
    four churn tables; without them a seeded synthetic set of ``n_characters`` is generated.
    """

    def __init__(
        self,
        feature_list: Sequence[str] = (),
        train_dt: Sequence[str] = (),
        infer_dt: Sequence[str] = (),
        *,
        tables: Mapping[str, pd.DataFrame] | None = None,
        n_characters: int = 5_000,
        seed: int = 0,
        variant: str = "game",
        horizon_months: int = 3,
    ) -> None:
        self.feature_list = list(feature_list)
        self.train_dt = list(train_dt)
        self.infer_dt = list(infer_dt)
        self.tables = tables
        self.n_characters = n_characters
        self.seed = seed
        self.variant = variant
        self.horizon_months = horizon_months
        self._cache: dict[str, pd.DataFrame] = {}

    def _tables(self) -> dict[str, pd.DataFrame]:
        from battleground.datasets import make_churn_tables

        if self.tables is None:
            self.tables = make_churn_tables(self.n_characters, seed=self.seed, variant=self.variant)  # type: ignore[arg-type]
        return dict(self.tables)

    def _load(self, dates: list[str], which: str) -> tuple[pd.DataFrame, pd.Series]:
        import pandas as pd

        from battleground.datasets import build_churn_features

        field = "train_dt" if which == "train" else "infer_dt"
        if isinstance(dates, str):
            raise ModelInputError(f"{field}={dates!r} must be a list of dates, e.g. [{dates!r}]")
        if not dates:
            dates = _DEFAULT_CUTOFFS.get(self.variant, _DEFAULT_CUTOFFS["game"])[0 if which == "train" else 1]
        for d in dates:
            try:
                pd.Timestamp(d)
            except (ValueError, TypeError):
                raise ModelInputError(f"{field} value {d!r} is not a date; use 'YYYY-MM-DD'") from None
        tables = self._tables()
        frames = [build_churn_features(tables, d, horizon_months=self.horizon_months) for d in dates]
        frame = pd.concat(frames, ignore_index=True)
        y = frame.pop("churned")
        X = frame.drop(columns=["char_id"])
        if self.feature_list:
            unknown = [f for f in self.feature_list if f not in X.columns]
            if unknown:
                raise ModelInputError(
                    f"feature_list has unknown columns {unknown}{suggest(unknown[0], list(X.columns))}; "
                    f"valid columns: {list(X.columns)}"
                )
            X = X[self.feature_list]
        return X, y

    def load_train_set(self) -> tuple[pd.DataFrame, pd.Series]:
        """Features and label for the ``train_dt`` cut-offs."""
        return self._load(self.train_dt, "train")

    def load_test_set(self) -> tuple[pd.DataFrame, pd.Series]:
        """Features and label for the ``infer_dt`` cut-offs."""
        return self._load(self.infer_dt, "test")


def _strata(label: pd.Series) -> Any:
    """What a stratified split balances: the label itself, or the deciles of a float label with more
    than 20 distinct values (a regression target has no classes to keep in proportion)."""
    import pandas as pd

    if label.dtype.kind != "f" or label.nunique() <= 20:
        return label
    return pd.qcut(label.rank(method="first"), q=10, labels=False)


def split_data(
    frame: pd.DataFrame,
    *,
    label: str = "churned",
    method: str = "stratified",
    fractions: Mapping[str, float] | None = None,
    time_column: str | None = None,
    seed: int = 0,
    group_column: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Split into train / valid / calib / test frames (seed ``002``'s ``split_data.py``).

    ``method='stratified'`` keeps the class balance in every part (a numeric target with many values, as
    for regression, is stratified by its deciles); ``method='time'`` orders rows by
    ``time_column`` so the test part is the latest. ``fractions`` default to 0.6/0.2/0/0.2.
    ``group_column`` (e.g. ``char_id``) keeps every row of one entity in one part (stratified by the
    entity's highest label), so no entity is both trained on and tested on.
    """
    from sklearn.model_selection import train_test_split

    fr = dict(fractions or {"train": 0.6, "valid": 0.2, "calib": 0.0, "test": 0.2})
    bad = [k for k in fr if k not in SPLITS]
    if bad:
        raise ModelInputError(f"fractions has unknown part {bad[0]!r}{suggest(bad[0], SPLITS)}; valid parts: {list(SPLITS)}")
    if any(v < 0 for v in fr.values()) or abs(sum(fr.values()) - 1.0) > 1e-6:
        raise ModelInputError(f"fractions={fr} must be non-negative and sum to 1")
    if label not in frame.columns:
        raise ModelInputError(f"label={label!r} is not a column; columns: {list(frame.columns)}")
    if frame[label].nunique() < 2:
        raise ModelInputError(f"label {label!r} has a single class {frame[label].unique().tolist()}; need two")
    if method not in ("stratified", "time"):
        raise ModelInputError(f"method={method!r} is unknown; valid methods: ['stratified', 'time']")
    parts = [p for p in SPLITS if fr.get(p, 0.0) > 0]
    out: dict[str, pd.DataFrame] = {}
    if method == "time":
        if time_column is None or time_column not in frame.columns:
            hint = suggest(str(time_column), [str(c) for c in frame.columns]) if time_column else ""
            raise ModelInputError(f"time_column={time_column!r} must name a column for method='time'{hint}; "
                             f"columns: {list(frame.columns)}")
        ordered = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
        edges = np.round(np.cumsum([0.0] + [fr[p] for p in parts]) * len(ordered)).astype(int)
        for p, lo, hi in zip(parts, edges[:-1], edges[1:], strict=True):
            out[p] = ordered.iloc[lo:hi].reset_index(drop=True)
        return out
    if group_column is not None:
        if group_column not in frame.columns:
            raise ValueError(f"group_column={group_column!r} is not a column{suggest(group_column, list(frame.columns))}")
        groups = frame.groupby(group_column, sort=True)[label].max().reset_index()
        parts_of = split_data(groups, label=label, method="stratified", fractions=fr, seed=seed)
        return {p: frame[frame[group_column].isin(g[group_column])].reset_index(drop=True)
                for p, g in parts_of.items()}
    rest = frame.reset_index(drop=True)
    remaining = 1.0
    for p in parts[:-1]:
        share = fr[p] / remaining
        take, rest = train_test_split(rest, train_size=share, stratify=_strata(rest[label]), random_state=seed)
        out[p] = take.reset_index(drop=True)
        remaining -= fr[p]
    out[parts[-1]] = rest.reset_index(drop=True)
    return out


def write_splits(splits: Mapping[str, pd.DataFrame], folder: str | Path) -> dict[str, Path]:
    """Write each part as ``<folder>/<part>.parquet``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in splits.items():
        paths[name] = out / f"{name}.parquet"
        frame.to_parquet(paths[name], index=False)
    return paths


def read_splits(folder: str | Path) -> dict[str, pd.DataFrame]:
    """Read the parts written by :func:`write_splits`."""
    import pandas as pd

    out = Path(folder)
    found = {p: pd.read_parquet(out / f"{p}.parquet") for p in SPLITS if (out / f"{p}.parquet").exists()}
    if "train" not in found:
        raise MissingSplitsError(f"{out / 'train.parquet'} not found; run `battleground model split` first")
    return found


_FS_METHODS = ("lightgbm", "variance", "mutual_info", "f_classif")


class FeatureSelection(TransformerMixin, BaseEstimator):
    """Keep the most useful columns of a DataFrame.

    ``method``: ``'lightgbm'`` (split-gain importance), ``'variance'`` (drop near-constant numeric
    columns), ``'mutual_info'`` or ``'f_classif'`` (univariate scores). ``k`` keeps the top k
    (default: columns scoring above ``threshold``; for variance, variance above ``threshold``).
    Categorical columns are scored through their integer codes and always kept by ``'variance'``.
    """

    def __init__(self, method: str = "lightgbm", k: int | None = None, threshold: float = 0.0,
                 random_state: int = 0) -> None:
        self.method = method
        self.k = k
        self.threshold = threshold
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Any = None) -> FeatureSelection:
        import pandas as pd

        if self.method not in _FS_METHODS:
            raise ModelInputError(f"method={self.method!r} is unknown{suggest(str(self.method), _FS_METHODS)}; "
                             f"valid methods: {list(_FS_METHODS)}")
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(X, columns=[f"x{i}" for i in range(np.asarray(X).shape[1])])
        if self.method != "variance" and y is None:
            raise ModelInputError(f"method={self.method!r} needs the target y")
        cats = categorical_columns(X)
        codes = X.copy()
        for c in cats:
            codes[c] = X[c].astype("category").cat.codes
        values = codes.to_numpy(dtype=float)
        if self.method == "variance":
            scores = np.nanvar(values, axis=0)
            scores[[X.columns.get_loc(c) for c in cats]] = np.inf
        elif self.method == "lightgbm":
            import lightgbm as lgb

            model = lgb.LGBMClassifier(n_estimators=100, importance_type="gain", random_state=self.random_state,
                                       n_jobs=1, verbose=-1)
            model.fit(codes, np.asarray(y))
            scores = np.asarray(model.feature_importances_, dtype=float)
        elif self.method == "mutual_info":
            from sklearn.feature_selection import mutual_info_classif

            filled = np.where(np.isnan(values), np.nanmedian(values, axis=0), values)
            mask = np.array([c in cats for c in X.columns])
            scores = mutual_info_classif(filled, np.asarray(y), discrete_features=mask, random_state=self.random_state)
        else:
            from sklearn.feature_selection import f_classif

            filled = np.where(np.isnan(values), np.nanmedian(values, axis=0), values)
            scores = np.nan_to_num(f_classif(filled, np.asarray(y))[0])
        self.scores_ = scores
        if self.k is not None:
            order = np.argsort(-scores, kind="stable")[: int(self.k)]
            keep = np.zeros(len(scores), dtype=bool)
            keep[order] = True
        else:
            keep = scores > self.threshold
        if not keep.any():
            raise ModelInputError(f"FeatureSelection(method={self.method!r}) kept no column; lower threshold or set k")
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.selected_features_ = [c for c, k in zip(X.columns, keep, strict=True) if k]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.selected_features_ if c not in X.columns]
        if missing:
            raise ModelInputError(f"X lacks the selected columns {missing}")
        return X[self.selected_features_]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.selected_features_, dtype=object)


_IMPUTE = ("median", "mean", "most_frequent", "constant", "zero")


class Preprocess(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):  # type: ignore[call-arg]
    """Impute, scale numeric columns and encode categorical ones; DataFrame in, DataFrame out.

    Empty ``numerical_features``/``categorical_features`` mean "infer from dtypes".
    ``imputation_methods``: empty (median / most frequent), one method for all numeric columns
    (``['mean']``), or a mapping column → method. ``encoding='onehot'`` or ``'ordinal'``.
    ``fit_transform(X, y)`` returns X alone, like every scikit-learn transformer.
    """

    def __init__(
        self,
        numerical_features: Sequence[str] = (),
        categorical_features: Sequence[str] = (),
        imputation_methods: Sequence[str] | Mapping[str, str] = (),
        scale: bool = True,
        encoding: str = "onehot",
    ) -> None:
        self.numerical_features = numerical_features
        self.categorical_features = categorical_features
        self.imputation_methods = imputation_methods
        self.scale = scale
        self.encoding = encoding

    def fit(self, X: pd.DataFrame, y: Any = None) -> Preprocess:
        import pandas as pd

        if not isinstance(X, pd.DataFrame):
            raise TypeError("Preprocess needs a pandas DataFrame (it keeps column names)")
        if self.encoding not in ("onehot", "ordinal"):
            raise ModelInputError(f"encoding={self.encoding!r} is unknown; valid: ['onehot', 'ordinal']")
        cats = list(self.categorical_features) or categorical_columns(X)
        nums = list(self.numerical_features) or [c for c in X.columns if c not in cats]
        unknown = [c for c in [*cats, *nums] if c not in X.columns]
        if unknown:
            raise ModelInputError(f"unknown columns {unknown}{suggest(unknown[0], list(X.columns))}; "
                             f"valid columns: {list(X.columns)}")
        methods = self.imputation_methods
        if isinstance(methods, Mapping):
            per_col = {c: methods.get(c, "median") for c in nums}
        else:
            one = next(iter(methods), "median")
            per_col = dict.fromkeys(nums, one)
        for col, m in per_col.items():
            if m not in _IMPUTE:
                raise ModelInputError(f"imputation method {m!r} for {col!r} is unknown{suggest(m, _IMPUTE)}; "
                                 f"valid: {list(_IMPUTE)}")
        fill: dict[str, float] = {}
        for c in nums:
            v = pd.to_numeric(X[c], errors="coerce").astype(float)
            m = per_col[c]
            fill[c] = {"median": v.median(), "mean": v.mean(), "most_frequent": v.mode().iloc[0] if v.notna().any()
                       else 0.0, "constant": 0.0, "zero": 0.0}[m]
            if not np.isfinite(fill[c]):
                fill[c] = 0.0
        filled = pd.DataFrame({c: pd.to_numeric(X[c], errors="coerce").astype(float).fillna(fill[c]) for c in nums})
        self.numerical_features_ = nums
        self.categorical_features_ = cats
        self.fill_values_ = fill
        self.means_ = {c: float(filled[c].mean()) for c in nums} if nums else {}
        self.scales_ = {c: float(filled[c].std(ddof=0)) or 1.0 for c in nums} if nums else {}
        self.categories_ = {c: sorted(X[c].dropna().astype(str).unique().tolist()) for c in cats}
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """One float matrix built with whole-array NumPy operations (a single row costs well under a
        millisecond, which the model server relies on)."""
        import pandas as pd

        return pd.DataFrame(self.transform_values(X), columns=self._output_columns(), index=X.index, copy=False)

    def transform_values(self, X: Any) -> np.ndarray:
        """:meth:`transform`'s float matrix without the DataFrame around it (columns in
        ``get_feature_names_out()`` order). ``X`` may also map each column to a 1-D array (the model
        server's request, which then never becomes a DataFrame); the numbers are the same."""
        import pandas as pd

        frame = isinstance(X, pd.DataFrame)
        names = X.columns if frame else X
        missing = [c for c in [*self.numerical_features_, *self.categorical_features_] if c not in names]
        if missing:
            raise ModelInputError(f"X lacks the columns {missing} seen in fit")
        n = len(X) if frame else len(X[self.feature_names_in_[0]]) if len(self.feature_names_in_) else 0
        blocks: list[np.ndarray] = []
        nums = self.numerical_features_
        if nums:
            if frame:
                dtypes = X.dtypes
                plain = all(pd.api.types.is_numeric_dtype(dtypes[c]) and not pd.api.types.is_bool_dtype(dtypes[c])
                            for c in nums)
            if frame and plain:  # one take and one conversion for the whole numeric block
                block = X[nums].to_numpy(dtype=float, na_value=np.nan)
            elif frame:
                block = np.column_stack([pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                                         for c in nums])
            else:
                block = np.column_stack([_as_float(X[c]) for c in nums])
            fill, means, scales = self._numeric_constants()
            block = np.where(np.isnan(block), fill, block)
            if self.scale:
                block = (block - means) / scales
            blocks.append(block)
        for c in self.categorical_features_:
            raw = X[c].to_numpy(dtype=object) if frame else np.asarray(X[c], dtype=object)
            known = ~pd.isna(raw)
            text = np.array([str(v) for v in raw], dtype=object)
            text[~known] = None
            cats = self.categories_[c]
            if self.encoding == "ordinal":
                lookup = {v: float(i) for i, v in enumerate(cats)}
                blocks.append(np.array([lookup.get(v, -1.0) for v in text], dtype=float).reshape(n, 1))
            elif cats:
                blocks.append((text[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(float))
        return np.hstack(blocks) if blocks else np.empty((n, 0))

    def set_output(self, *, transform: str | None = None) -> Preprocess:
        """Output is always a DataFrame; accepted so ``Pipeline.set_output(transform="pandas")`` works
        (scikit-learn's own output wrapper, which would rebuild the frame on every call, is off)."""
        if transform not in (None, "default", "pandas"):
            raise ModelInputError(f"Preprocess always returns pandas DataFrames; set_output(transform={transform!r}) "
                             "is not supported")
        return self

    def _numeric_constants(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fill values, means and scales as arrays in column order (built once per fitted object)."""
        cached = self.__dict__.get("_constants")
        if cached is None or cached[0] is not self.fill_values_:
            nums = self.numerical_features_
            arrays = (np.array([self.fill_values_[c] for c in nums], dtype=float),
                      np.array([self.means_[c] for c in nums], dtype=float),
                      np.array([self.scales_[c] for c in nums], dtype=float))
            cached = (self.fill_values_, arrays)
            self.__dict__["_constants"] = cached
        return cached[1]

    def _output_columns(self) -> Any:
        import pandas as pd

        cached = self.__dict__.get("_columns")
        if cached is None or cached[0] is not self.categories_:
            cached = (self.categories_, pd.Index(self.get_feature_names_out().tolist()))
            self.__dict__["_columns"] = cached
        return cached[1]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = list(self.numerical_features_)
        for c in self.categorical_features_:
            names += [c] if self.encoding == "ordinal" else [f"{c}={v}" for v in self.categories_[c]]
        return np.asarray(names, dtype=object)


def _as_float(values: Any) -> np.ndarray:
    """A 1-D array of numbers as float (text that is no number and None become NaN, as ``to_numeric``)."""
    import pandas as pd

    arr = np.asarray(values)
    if arr.dtype.kind in "iufb":
        return arr.astype(float)
    return pd.to_numeric(pd.Series(arr, dtype=object), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def build_preprocessing(steps: str | Sequence[Mapping[str, Any]]) -> Pipeline:
    """A scikit-learn ``Pipeline`` from YAML text or a list of ``{class: path, params: {...}}``.

    Only classes from :data:`ALLOWED_STEP_MODULES` may be named, so a config file cannot import
    arbitrary code.

    Example:
        >>> p = build_preprocessing('''
        ... - class: battleground.model.data.Preprocess
        ...   params: {encoding: ordinal}
        ... - class: sklearn.feature_selection.VarianceThreshold
        ... ''')
        >>> [name for name, _ in p.steps]
        ['preprocess', 'variancethreshold']
    """
    import yaml
    from sklearn.pipeline import Pipeline

    spec = yaml.safe_load(steps) if isinstance(steps, str) else steps
    if not isinstance(spec, list) or not spec:
        raise ModelInputError("preprocessing steps must be a non-empty list of {class: ..., params: {...}}")
    built: list[tuple[str, Any]] = []
    for i, step in enumerate(spec):
        if not isinstance(step, Mapping) or "class" not in step:
            raise ModelInputError(f"step {i} = {step!r} needs a 'class' key (and optional 'params')")
        extra = [k for k in step if k not in ("class", "params", "name")]
        if extra:
            raise ModelInputError(f"step {i} has unknown keys {extra}; valid keys: ['class', 'params', 'name']")
        path = str(step["class"])
        module, _, name = path.rpartition(".")
        if module not in ALLOWED_STEP_MODULES:
            raise ModelInputError(f"step {i} class {path!r} is not allowed; allowed modules: {list(ALLOWED_STEP_MODULES)}")
        cls = getattr(importlib.import_module(module), name, None)
        if cls is None:
            raise ModelInputError(f"step {i}: {module} has no class {name!r}")
        built.append((str(step.get("name", name.lower())), cls(**dict(step.get("params") or {}))))
    pipe = Pipeline(built)
    pipe.set_output(transform="pandas")
    return pipe
