"""Tracking with MLflow (embedded SQLite store by default) and the champion model.

The seed ``002`` workflow: ``split`` → ``train`` (tune every supported model, log each trial and
model) → ``evaluate`` (pick the best by the comparison metric on validation, score it on test, set
the registry alias ``champion`` only when the test score clears ``deployment_score_thresh``).
MLflow is imported inside the functions: it takes seconds to import.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from battleground.errors import ModelError
from battleground.settings import Settings, quiet_third_party_telemetry

if TYPE_CHECKING:
    import pandas as pd

    from battleground.model.gate import GateDecision

__all__ = [
    "Champion",
    "ChampionRefusedError",
    "ChampionThresholdError",
    "ConfigError",
    "ModelSelector",
    "TrainResult",
    "TrainingConfig",
    "TrainingOrchestrator",
    "evaluate_from_config",
    "load_champion",
    "log_seed",
    "run_churn_demo",
    "split_from_config",
    "train_from_config",
]

log = logging.getLogger("battleground.model")
DEFAULT_MODEL_NAME = "churn"
CHAMPION = "champion"
_NON_FEATURES = ("char_id", "cutoff")
_SYNTHETIC_KEYS = ("n_characters", "seed", "variant", "cutoffs")
F = TypeVar("F", bound=Callable[..., Any])


class ConfigError(ModelError, ValueError):
    """A training config key or value is wrong."""


class ChampionRefusedError(ModelError, RuntimeError):
    """The champion gate refused the candidate: it stays registered (tagged with the reason), the alias
    did not move. ``decision`` is the :class:`~battleground.model.gate.GateDecision`."""

    def __init__(self, decision: GateDecision) -> None:
        super().__init__(f"champion not moved: {decision.summary()}")
        self.decision = decision
        self.model = decision.name
        self.score = decision.candidate_score
        self.thresh = decision.threshold


class ChampionThresholdError(ChampionRefusedError):
    """The candidate's held-out score is below ``deployment_score_thresh``; the alias did not move."""


# -- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingConfig:
    """Seed ``002``'s ``train:`` keys plus ours; load it with :meth:`from_yaml` / :meth:`from_mapping`.

    ``data`` keys: ``input`` (a features Parquet/CSV; empty → synthetic churn data), ``synthetic``
    (``n_characters``, ``seed``, ``variant``, ``cutoffs``), ``label``, ``split_method``
    (``stratified``/``time``), ``fractions``, ``time_column``, ``splits_dir``, ``artifacts_dir``.

    ``task: regression`` trains regressors (``LGBMRegressor``/``lightgbm``, ``XGBRegressor``,
    ``Ridge``/``linear``, ``RandomForestRegressor``) on a numeric ``data.label``: ``comparison_metric``
    is ``rmse`` (default), ``mae`` or ``r2``, and ``deployment_score_thresh`` must be given (for rmse and
    mae it is the largest error the champion may have). ``class_weight``/``calibration`` do not apply.
    """

    supported_models: tuple[str, ...] = ("LGBMClassifier", "LogisticRegression")
    max_search_iters: int = 10
    model_opt_timeout_secs: float | None = 180.0
    experiment_tracker: str = "mlflow"
    project_name: str = "battleground-churn"
    workspace_name: str = "local"
    comparison_metric: str = "fbeta_score"
    fbeta_score_beta_val: float = 0.5
    deployment_score_thresh: float = 0.7
    champion_margin: float = 0.0
    seed: int | None = 0
    registered_model_name: str = DEFAULT_MODEL_NAME
    n_workers: int = 1
    search_space: Mapping[str, Any] | None = None
    tuned_models: tuple[str, ...] | None = None
    voting_top_k: int = 0
    class_weight: str | None = "balanced"
    calibration: str | None = "auto"
    task: str = "classification"
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> TrainingConfig:
        from battleground._suggest import suggest

        if not isinstance(raw, Mapping):
            raise ConfigError("the training config must be a mapping with a 'train:' section")
        valid = [f.name for f in fields(cls)]
        if "train" in raw:
            extra = [k for k in raw if k not in ("train", "data")]
            if extra:
                raise ConfigError(f"unknown top-level section {extra[0]!r}{suggest(str(extra[0]), ['train', 'data'])}; "
                                  "valid sections: ['train', 'data']")
        else:
            odd = [k for k in raw if k not in valid]
            sections = [k for k in odd if suggest(str(k), ["train"])]
            if sections:
                raise ConfigError(f"unknown top-level section {sections[0]!r} (did you mean 'train'?); "
                                  "valid sections: ['train', 'data']")
        body = dict(raw.get("train", raw) or {})
        if "data" in raw and "train" in raw:
            body.setdefault("data", raw["data"])
        for key in body:
            if key not in valid:
                raise ConfigError(f"unknown config key {key!r}{suggest(key, valid)}; valid keys: {valid}")
        if body.get("experiment_tracker", "mlflow") != "mlflow":
            tracker = body["experiment_tracker"]
            raise ConfigError(
                f"experiment_tracker={tracker!r} is not supported: "
                + ("Comet ML needs a hosted service and an API key, which battleground does not use; "
                   if tracker == "comet_ml" else "")
                + "set experiment_tracker: mlflow (local SQLite store, or BATTLEGROUND_MLFLOW_URI for a server)"
            )
        for key in ("supported_models", "tuned_models"):
            if key in body and body[key] is not None:
                if isinstance(body[key], str):
                    body[key] = [body[key]]
                body[key] = tuple(body[key])
        from battleground.model.train import canonical_model

        for key in ("supported_models", "tuned_models"):
            for m in body.get(key) or ():
                try:
                    canonical_model(m)
                except ValueError as exc:
                    raise ConfigError(f"{key}: {exc}") from None
        if body.get("search_space") is not None:
            from battleground.model.train import check_params, parse_search_space

            try:
                for kind, space in parse_search_space(body["search_space"]).items():
                    check_params(kind, list(space), where=f"search_space.{kind}")
            except ValueError as exc:
                raise ConfigError(f"search_space: {exc}") from None
        _check_task(body)
        numbers = {"max_search_iters": int, "n_workers": int, "voting_top_k": int, "fbeta_score_beta_val": float,
                   "deployment_score_thresh": float, "champion_margin": float, "model_opt_timeout_secs": float, "seed": int}
        for key, typ in numbers.items():
            if key in body and not (body[key] is None and key in ("model_opt_timeout_secs", "seed")):
                body[key] = _number(key, body[key], typ)
        for key in ("project_name", "workspace_name", "registered_model_name"):
            if key in body and not isinstance(body[key], str | int):
                raise ConfigError(f"{key}={body[key]!r} must be a string")
            if key in body:
                body[key] = str(body[key])
        if body.get("class_weight", "balanced") not in (None, "balanced"):
            raise ConfigError(f"class_weight={body['class_weight']!r} is unknown; valid: ['balanced', null]")
        if body.get("calibration", "auto") not in (None, "auto", "sigmoid", "isotonic"):
            raise ConfigError(f"calibration={body['calibration']!r} is unknown; valid: ['auto', 'sigmoid', "
                              "'isotonic', null] (auto: sigmoid when class_weight is balanced)")
        if not float(body.get("champion_margin", 0.0)) >= 0:
            raise ConfigError(f"champion_margin={body['champion_margin']!r} must be >= 0 (0: any improvement)")
        if int(body.get("n_workers", 1)) < 1:
            raise ConfigError(f"n_workers={body['n_workers']!r} must be >= 1")
        if not float(body.get("fbeta_score_beta_val", 0.5)) > 0:
            raise ConfigError(f"fbeta_score_beta_val={body['fbeta_score_beta_val']!r} must be > 0")
        metrics: tuple[str, ...] = ("fbeta_score", "roc_auc", "pr_auc", "validation_score", "log_loss", "brier")
        if body.get("task", "classification") == "regression":
            metrics = ("rmse", "mae", "r2")
        if body.get("comparison_metric", "fbeta_score") not in metrics:
            raise ConfigError(f"comparison_metric={body['comparison_metric']!r} is unknown; valid: {list(metrics)}")
        if int(body.get("max_search_iters", 1)) < 0:
            raise ConfigError(f"max_search_iters={body['max_search_iters']!r} must be >= 0")
        data = dict(body.get("data") or {})
        data_keys = ("input", "synthetic", "label", "split_method", "fractions", "time_column", "splits_dir",
                     "artifacts_dir", "id_columns", "drop_columns")
        for key in data:
            if key not in data_keys:
                raise ConfigError(f"unknown data key {key!r}{suggest(key, data_keys)}; valid keys: {list(data_keys)}")
        syn = data.get("synthetic") or {}
        if not isinstance(syn, Mapping):
            raise ConfigError(f"data.synthetic={syn!r} must be a mapping of {list(_SYNTHETIC_KEYS)}")
        for key in syn:
            if key not in _SYNTHETIC_KEYS:
                raise ConfigError(f"unknown data.synthetic key {key!r}{suggest(str(key), _SYNTHETIC_KEYS)}; "
                                  f"valid keys: {list(_SYNTHETIC_KEYS)}")
        if "cutoffs" in syn and (isinstance(syn["cutoffs"], str) or not list(syn["cutoffs"] or [])):
            raise ConfigError(f"data.synthetic.cutoffs={syn['cutoffs']!r} must be a non-empty list of dates, "
                              "e.g. ['2022-06-01', '2022-09-01']")
        for key in ("id_columns", "drop_columns"):
            if key in data:
                value = data[key]
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"data.{key}={data[key]!r} must be a list of column names")
                data[key] = list(value)
        if data.get("split_method", "stratified") not in ("stratified", "time"):
            raise ConfigError(f"data.split_method={data['split_method']!r} is unknown; valid: ['stratified', 'time']")
        if data.get("split_method") == "time" and not data.get("time_column"):
            raise ConfigError("data.split_method='time' needs data.time_column (e.g. 'cutoff')")
        body["data"] = data
        return cls(**body)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainingConfig:
        import yaml

        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        cfg = cls.from_mapping(raw)
        # relative folders are relative to the config file
        data = dict(cfg.data)
        for key in ("input", "splits_dir", "artifacts_dir"):
            if data.get(key) and not Path(data[key]).is_absolute():
                data[key] = str((p.parent / data[key]).resolve())
        return _replace(cfg, data=data)

    @property
    def splits_dir(self) -> Path:
        return Path(self.data.get("splits_dir", "splits"))

    @property
    def artifacts_dir(self) -> Path:
        return Path(self.data.get("artifacts_dir", "artifacts"))

    @property
    def label(self) -> str:
        return str(self.data.get("label", "churned"))

    @property
    def calibration_method(self) -> str | None:
        """``calibration`` resolved: ``auto`` calibrates (sigmoid) exactly when classes are re-weighted,
        since balanced weights inflate P(class 1) far above the base rate."""
        if self.task == "regression":
            return None
        if self.calibration == "auto":
            return "sigmoid" if self.class_weight == "balanced" else None
        return self.calibration

    @property
    def id_columns(self) -> tuple[str, ...]:
        """Entity ids: never features; the first one present groups the stratified split."""
        return tuple(self.data.get("id_columns", ["char_id"]))

    @property
    def non_features(self) -> tuple[str, ...]:
        """Columns that are never features: ids, ``drop_columns`` (default the ``cutoff`` date)."""
        return (*self.id_columns, *self.data.get("drop_columns", ["cutoff"]))

    @property
    def metric(self) -> str:
        """Our metric name for the comparison metric."""
        return {"fbeta_score": "fbeta", "validation_score": "roc_auc"}.get(self.comparison_metric,
                                                                            self.comparison_metric)


_REGRESSION_DEFAULT_MODELS = ("LGBMRegressor", "Ridge")


def _check_task(body: dict[str, Any]) -> None:
    """``task`` and what it implies, checked (and defaults filled) in the raw config ``body``."""
    from battleground.model.train import REGRESSORS, canonical_model

    task = body.get("task", "classification")
    if task not in ("classification", "regression"):
        raise ConfigError(f"task={task!r} is unknown; valid: ['classification', 'regression']")
    if task != "regression":
        for key in ("supported_models", "tuned_models"):
            linear = [m for m in body.get(key) or () if canonical_model(m) == "linear"]
            if linear:
                raise ConfigError(f"{key}: {linear[0]!r} is a regressor; set task: regression for a numeric target, "
                                  "or use LogisticRegression")
        return
    body.setdefault("supported_models", _REGRESSION_DEFAULT_MODELS)
    body.setdefault("comparison_metric", "rmse")
    for key in ("supported_models", "tuned_models"):
        wrong = [m for m in body.get(key) or () if canonical_model(m) not in REGRESSORS]
        if wrong:
            raise ConfigError(f"{key}: {wrong[0]!r} is not a regressor (task: regression); valid: "
                              "['LGBMRegressor', 'XGBRegressor', 'Ridge', 'RandomForestRegressor'] or "
                              f"{list(REGRESSORS)}")
    if "deployment_score_thresh" not in body:
        raise ConfigError("task: regression needs deployment_score_thresh on the comparison metric's own scale "
                          f"(for {body['comparison_metric']}: the "
                          + ("largest error the champion may have, e.g. 3.5)" if body["comparison_metric"] != "r2"
                             else "smallest R² the champion must reach, e.g. 0.5)"))
    if int(body.get("voting_top_k", 0) or 0) >= 2:
        raise ConfigError(f"voting_top_k={body['voting_top_k']!r}: the soft-voting ensemble is for classification; "
                          "set voting_top_k: 0 with task: regression")


def _search_space(cfg: TrainingConfig) -> dict[str, dict[str, Any]]:
    """The default search spaces with the config's ``search_space`` entries replacing whole models."""
    from battleground.model.train import DEFAULT_SEARCH_SPACES, parse_search_space

    spaces = parse_search_space(DEFAULT_SEARCH_SPACES)
    if cfg.search_space:
        spaces.update(parse_search_space(cfg.search_space))
    return spaces


def _number(key: str, value: Any, typ: type) -> int | float:
    kind = "an integer" if typ is int else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{key}={value!r} must be {kind}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{key}={value!r} must be {kind}") from None
    if typ is int:
        if number != int(number):
            raise ConfigError(f"{key}={value!r} must be {kind}")
        return int(number)
    return number


def _replace(cfg: TrainingConfig, **changes: Any) -> TrainingConfig:

    return dataclasses.replace(cfg, **changes)


def _as_config(config: TrainingConfig | Mapping[str, Any] | str | Path) -> TrainingConfig:
    if isinstance(config, TrainingConfig):
        return config
    if isinstance(config, str | Path):
        return TrainingConfig.from_yaml(config)
    return TrainingConfig.from_mapping(config)


# -- seeds, hashes, environment ------------------------------------------------------------------


def _seed_everything(seed: int | None) -> int:
    if seed is None:
        seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    random.seed(seed)
    np.random.seed(seed)
    return int(seed)


def log_seed(arg: Any = None) -> Any:
    """Seed ``random`` and NumPy and log the seed.

    ``log_seed(config)`` (a mapping with ``seed``, a :class:`TrainingConfig`, an int or ``None`` to
    draw one) returns the seed. ``@log_seed`` on a function is seed ``001``'s node decorator: before
    each call it takes the seed from the function's ``params`` argument (a mapping with a ``seed``
    key, as Kedro passes ``params:...``), or draws one when there is none, seeds ``random`` and NumPy,
    logs it, and passes ``params`` on with ``seed`` filled in, so the node can hand it to its models.

    Example:
        >>> @log_seed
        ... def node(params):
        ...     return params["seed"]
        >>> node({"seed": 7})
        7
    """
    if callable(arg) and not isinstance(arg, TrainingConfig | Mapping):
        return _seeded(arg)
    if isinstance(arg, TrainingConfig):
        seed = arg.seed
    elif isinstance(arg, Mapping):
        seed = dict(arg.get("train", arg)).get("seed")
    else:
        seed = arg
    value = _seed_everything(None if seed is None else int(seed))
    log.info("random seed: %d", value)
    return value


def _seeded(func: F) -> F:
    import inspect

    signature = inspect.signature(func)
    has_params = "params" in signature.parameters

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs) if has_params else None
        params = bound.arguments.get("params") if bound is not None else None
        given = params.get("seed") if isinstance(params, Mapping) else None
        seed = _seed_everything(None if given is None else int(given))
        log.info("random seed for %s: %d", getattr(func, "__qualname__", func), seed)
        if bound is not None and isinstance(params, Mapping):
            bound.arguments["params"] = {**params, "seed": seed}
            return func(*bound.args, **bound.kwargs)
        return func(*args, **kwargs)

    wrapper.__wrapped_seeded__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def data_hash(X: pd.DataFrame, y: Any = None) -> str:
    """xxh64 of the rows (and labels): which data a model saw, in 16 hex digits."""
    import pandas as pd
    import xxhash

    h = xxhash.xxh64()
    h.update(pd.util.hash_pandas_object(X, index=False).to_numpy().tobytes())
    h.update(",".join(map(str, X.columns)).encode())
    if y is not None:
        arr = np.asarray(y)  # labels as integers (as always); numeric targets keep their fractions
        h.update((arr.astype(np.float64) if arr.dtype.kind == "f" else arr.astype(np.int64)).tobytes())
    return h.hexdigest()


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def system_metrics() -> dict[str, float]:
    import os

    import psutil

    proc = psutil.Process(os.getpid())
    return {
        "system_cpu_percent": float(psutil.cpu_percent(interval=None)),
        "system_memory_percent": float(psutil.virtual_memory().percent),
        "process_rss_mb": proc.memory_info().rss / 2**20,
    }


def _mlflow(settings: Settings | str) -> Any:
    import os

    quiet_third_party_telemetry()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    uri = settings if isinstance(settings, str) else settings.mlflow_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return mlflow


def use_experiment(mlflow: Any, name: str, settings: Settings) -> str:
    """Select (creating if needed) the MLflow experiment ``name``; returns its id.

    With a local store (``sqlite:``/``file:``) new experiments keep their artifacts in
    ``<home>/mlartifacts``: MLflow's own default is ``./mlruns`` in whatever folder the process runs.
    """
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        location = None
        if settings.mlflow_uri.startswith(("sqlite:", "file:")) or "://" not in settings.mlflow_uri:
            location = (settings.home / "mlartifacts").absolute().as_uri()
        try:
            exp_id = mlflow.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # created meanwhile by another process
            exp_id = mlflow.get_experiment_by_name(name).experiment_id
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return str(exp_id)


def _features(frame: pd.DataFrame, label: str, drop: Sequence[str] = _NON_FEATURES) -> tuple[pd.DataFrame, pd.Series]:
    """(features, label): every column but the label and the non-feature columns ``drop``."""
    if label not in frame.columns:
        raise ConfigError(f"label {label!r} is not a column; columns: {list(frame.columns)}")
    y = frame[label]
    X = frame.drop(columns=[label, *[c for c in drop if c in frame.columns]])
    return X, y


# -- split ---------------------------------------------------------------------------------------


def split_from_config(config: TrainingConfig | Mapping[str, Any] | str | Path) -> dict[str, Path]:
    """The split step: features (a file, or synthetic churn data at ``synthetic.cutoffs``) →
    train/valid/(calib)/test Parquet files in ``splits_dir``."""
    import pandas as pd

    from battleground.datasets import build_churn_features, make_churn_tables
    from battleground.model.data import split_data, write_splits

    cfg = _as_config(config)
    seed = log_seed(cfg)
    data = cfg.data
    if data.get("input"):
        src = Path(str(data["input"]))
        if not src.exists():
            raise ConfigError(f"data.input {str(src)!r} does not exist")
        frame = pd.read_parquet(src) if src.suffix == ".parquet" else pd.read_csv(src)
    else:
        syn = dict(data.get("synthetic") or {})
        variant = str(syn.get("variant", "game"))
        tables = make_churn_tables(int(syn.get("n_characters", 5000)), seed=int(syn.get("seed", seed)),
                                   variant=variant)  # type: ignore[arg-type]
        year = "2022" if variant == "game" else "2023"
        cutoffs = list(syn.get("cutoffs", [f"{year}-06-01", f"{year}-09-01", f"{year}-12-01"]))
        parts = []
        for c in cutoffs:
            f = build_churn_features(tables, c)
            f.insert(1, "cutoff", pd.Timestamp(c))
            parts.append(f)
        frame = pd.concat(parts, ignore_index=True)
    method = str(data.get("split_method", "stratified"))
    group = next((c for c in cfg.id_columns if c in frame.columns), None) if method == "stratified" else None
    splits = split_data(frame, label=cfg.label, method=method, fractions=data.get("fractions"),
                        time_column=data.get("time_column"), seed=seed, group_column=group)
    return write_splits(splits, cfg.splits_dir)


# -- training ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRun:
    model: str
    run_id: str
    model_uri: str
    valid_score: float
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class TrainResult:
    """The runs a training produced, best first by the comparison metric on validation."""

    experiment: str
    batch_id: str
    seed: int
    runs: tuple[ModelRun, ...]
    trainers: Mapping[str, Any] = field(default_factory=dict)  # model type → fitted Trainer (predict_proba)


def _log_model_run(mlflow: Any, *, kind: str, trainer: Any, X_train: pd.DataFrame, y_train: Any,
                   X_valid: pd.DataFrame, y_valid: Any, cfg: TrainingConfig, seed: int, batch_id: str,
                   params: Mapping[str, Any], tune_result: Any = None) -> ModelRun:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.models import infer_signature

    from battleground.model.eval import EvalClassifierModel, EvalRegressorModel

    with warnings.catch_warnings():  # MLflow nags about type hints when the class is defined
        warnings.simplefilter("ignore")
        from battleground.model._pyfunc import PredictionModel, ProbabilityModel

    from battleground.model.train import predict_scores, score

    client = mlflow.MlflowClient()
    regression = cfg.task == "regression"
    proba = predict_scores(trainer, X_valid)  # P(class 1), or the predicted values of a regressor
    best_threshold: float | None = None
    if regression:
        reg = EvalRegressorModel().calculate(proba, y_valid)
        metrics = {f"valid_{k}": v for k, v in reg.metrics().items()}
        valid_score = score(cfg.metric, y_valid, proba)
    else:
        report = EvalClassifierModel(beta=cfg.fbeta_score_beta_val).calculate(proba, y_valid)
        metrics = {f"valid_{k}": v for k, v in report.metrics().items()}
        best_threshold = float(report.best_threshold)
        # F-beta is scored at the threshold tuned on validation (the one stored with the model), not at 0.5
        valid_score = score(cfg.metric, y_valid, proba, beta=cfg.fbeta_score_beta_val, threshold=best_threshold)
    metrics["validation_score"] = valid_score
    with mlflow.start_run(run_name=f"{kind}-{batch_id}") as run:
        now = int(time.time() * 1000)
        tags = {
            "battleground.kind": "model", "battleground.batch": batch_id, "model_type": kind,
            "workspace_name": cfg.workspace_name, "seed": str(seed), "data_hash": data_hash(X_train, y_train),
            "git_revision": git_revision(), "comparison_metric": cfg.comparison_metric,
            "input_schema": json.dumps([[c, str(X_train[c].dtype)] for c in X_train.columns]),
            "task": cfg.task,
        }
        if best_threshold is not None:
            tags["decision_threshold"] = repr(best_threshold)
        plist = {**{k: str(v) for k, v in params.items()}, "seed": str(seed), "model_type": kind}
        mvals = {**metrics, **system_metrics(), "fit_seconds": float(getattr(trainer, "fit_seconds_", 0.0))}
        # one batched call instead of one request per value
        client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in mvals.items()],
                         params=[Param(k, v[:6000]) for k, v in plist.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()])
        if tune_result is not None:
            for t in tune_result.trials.itertuples(index=False):
                with mlflow.start_run(run_name=f"{kind}-trial-{t.number}", nested=True) as child:
                    tp = {k.removeprefix("params_"): str(getattr(t, k)) for k in tune_result.trials.columns
                          if k.startswith("params_")}
                    tm = [Metric("trial_value", float(t.value), now, 0)] if t.value == t.value else []
                    client.log_batch(child.info.run_id, metrics=tm, params=[Param(k, v) for k, v in tp.items()],
                                     tags=[RunTag("trial_state", str(t.state)), RunTag("battleground.kind", "trial"),
                                           RunTag("seed", str(seed)), RunTag("battleground.batch", batch_id),
                                           RunTag("model_type", kind)])
            if tune_result.csv_path is not None:
                mlflow.log_artifact(str(tune_result.csv_path))
        sample = X_train.head(20)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            signature = infer_signature(sample, predict_scores(trainer, sample))
            wrapper = PredictionModel(trainer) if regression else ProbabilityModel(trainer)
            info = mlflow.pyfunc.log_model(name="model", python_model=wrapper, signature=signature)
        client.set_tag(run.info.run_id, "model_uri", info.model_uri)
    return ModelRun(model=kind, run_id=run.info.run_id, model_uri=info.model_uri, valid_score=valid_score,
                    metrics=metrics)


def train_from_config(config: TrainingConfig | Mapping[str, Any] | str | Path,
                      settings: Settings | None = None) -> TrainResult:
    """``make train``: tune each supported model on train/valid, log trials and models to MLflow,
    write ``study_<model>.csv`` files into ``artifacts_dir``."""
    from battleground.model.data import read_splits
    from battleground.model.train import (
        canonical_model,
        leaderboard,
        make_trainer,
        top_k_voting,
        tune,
    )

    cfg = _as_config(config)
    settings = settings or Settings.from_env()
    settings.ensure_home()
    seed = log_seed(cfg)
    splits = read_splits(cfg.splits_dir)
    if "valid" not in splits:
        raise ConfigError(f"{cfg.splits_dir} has no valid.parquet; give data.fractions a 'valid' share")
    X_train, y_train = _features(splits["train"], cfg.label, cfg.non_features)
    X_valid, y_valid = _features(splits["valid"], cfg.label, cfg.non_features)
    mlflow = _mlflow(settings)
    use_experiment(mlflow, cfg.project_name, settings)
    batch_id = f"{int(time.time() * 1000):x}-{random.Random().getrandbits(16):04x}"
    kinds = [canonical_model(m) for m in cfg.supported_models]
    tuned = {canonical_model(m) for m in (cfg.tuned_models if cfg.tuned_models is not None else cfg.supported_models)}
    runs: list[ModelRun] = []
    fitted: dict[str, Any] = {}
    best_params: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        if kind == "voting":
            continue
        if kind in tuned and cfg.max_search_iters > 0:
            result = tune(kind, X_train, y_train, X_valid, y_valid, search_space=_search_space(cfg),
                          n_trials=cfg.max_search_iters, timeout=cfg.model_opt_timeout_secs,
                          n_workers=cfg.n_workers, storage=settings.optuna_storage,
                          study_name=f"{cfg.project_name}-{kind}-{batch_id}", metric=cfg.metric,
                          beta=cfg.fbeta_score_beta_val, seed=seed, output_dir=cfg.artifacts_dir / batch_id,
                          class_weight=cfg.class_weight, calibration=cfg.calibration_method, task=cfg.task)
            trainer, params = result.trainer, result.best_params
        else:
            result = None
            trainer = make_trainer(cfg.task, kind, random_state=seed, class_weight=cfg.class_weight,
                                   calibration=cfg.calibration_method).fit(X_train, y_train)
            params = {}
        fitted[kind] = trainer
        best_params[kind] = dict(params)
        runs.append(_log_model_run(mlflow, kind=kind, trainer=trainer, X_train=X_train, y_train=y_train,
                                   X_valid=X_valid, y_valid=y_valid, cfg=cfg, seed=seed, batch_id=batch_id,
                                   params=params, tune_result=result))
    if ("voting" in kinds or cfg.voting_top_k >= 2) and cfg.task == "classification":
        k = cfg.voting_top_k if cfg.voting_top_k >= 2 else min(3, len(fitted))
        board = leaderboard(X_train, y_train, X_valid, y_valid, models=list(fitted), params=best_params,
                            metric=cfg.metric, beta=cfg.fbeta_score_beta_val, seed=seed)
        voter = top_k_voting(board, X_train, y_train, k=k, params=best_params, seed=seed)
        fitted["voting"] = voter
        runs.append(_log_model_run(mlflow, kind="voting", trainer=voter, X_train=X_train, y_train=y_train,
                                   X_valid=X_valid, y_valid=y_valid, cfg=cfg, seed=seed, batch_id=batch_id,
                                   params={"voting_models": ",".join(voter.voting_models)}))
    from battleground.model.train import higher_is_better

    sign = -1.0 if higher_is_better(cfg.metric) else 1.0
    runs.sort(key=lambda r: sign * r.valid_score)
    return TrainResult(experiment=cfg.project_name, batch_id=batch_id, seed=seed, runs=tuple(runs), trainers=fitted)


# -- selection, evaluation, champion -------------------------------------------------------------


class ModelNotFoundError(ModelError, LookupError):
    """No MLflow experiment, run, metric or registered model by that name (train one first)."""


class ModelSelector:
    """Seed ``002``'s selector: the best model run of the latest training batch of a project."""

    def __init__(self, project_name: str, workspace_name: str | None = None,
                 comparison_metric: str = "validation_score", settings: Settings | None = None) -> None:
        self.project_name = project_name
        self.workspace_name = workspace_name
        self.comparison_metric = comparison_metric
        self.settings = settings

    def select_best_model(self) -> tuple[str, str]:
        """``(model type, run id)`` of the best run by ``comparison_metric`` on validation."""
        mlflow = _mlflow(self.settings or Settings.from_env())
        exp = mlflow.get_experiment_by_name(self.project_name)
        if exp is None:
            raise ModelNotFoundError(f"no MLflow experiment named {self.project_name!r}; run `battleground model train` first")
        client = mlflow.MlflowClient()
        runs = client.search_runs([exp.experiment_id], "tags.`battleground.kind` = 'model'",
                                  order_by=["attributes.start_time DESC"], max_results=500)
        if self.workspace_name:
            runs = [r for r in runs if r.data.tags.get("workspace_name") == self.workspace_name]
        if not runs:
            raise ModelNotFoundError(f"experiment {self.project_name!r} has no model runs; run `battleground model train`")
        batch = runs[0].data.tags.get("battleground.batch")
        latest = [r for r in runs if r.data.tags.get("battleground.batch") == batch]
        from battleground.model.train import METRICS, higher_is_better

        ours = {"fbeta_score": "fbeta"}.get(self.comparison_metric, self.comparison_metric)
        key = f"valid_{ours}" if ours in METRICS else self.comparison_metric
        scored = [r for r in latest if key in r.data.metrics]
        if not scored:
            raise ModelNotFoundError(f"no run logged metric {key!r}; valid: {sorted(latest[0].data.metrics)}")
        # rmse, mae, log_loss, brier: the smallest is the best
        pick = max if key == "validation_score" or higher_is_better(ours) else min
        best = pick(scored, key=lambda r: r.data.metrics[key])
        return best.data.tags.get("model_type", "model"), best.info.run_id


@dataclass(frozen=True)
class Champion:
    """A loaded registered model: call ``model.predict(frame)`` for P(churn).

    ``digest`` is the sha256 of its files that the champion gate recorded and the loader re-checked.
    """

    model: Any
    name: str
    version: str
    alias: str
    run_id: str
    model_type: str
    metrics: Mapping[str, float]
    input_schema: tuple[tuple[str, str], ...]
    digest: str = ""
    threshold: float = 0.5  # P(churn) at or above which the class label is 1 (tuned on validation)
    task: str = "classification"  # "regression": ``model.predict`` returns values, there is no label

    @property
    def feature_names(self) -> list[str]:
        return [n for n, _ in self.input_schema]


@dataclass(frozen=True)
class EvaluateResult:
    """The evaluated candidate (``version``, registered either way) and the gate's ``decision``."""

    model_type: str
    run_id: str
    metric: str
    valid_score: float
    test_score: float
    threshold: float
    test_metrics: Mapping[str, float]
    registered: bool
    name: str
    version: str | None
    decision: GateDecision | None = None

    @property
    def promoted(self) -> bool:
        return self.decision is not None and self.decision.promoted

    @property
    def champion_version(self) -> str | None:
        """The version ``@champion`` names after the gate: the candidate, or the kept incumbent."""
        if self.decision is None:
            return None
        return self.decision.version if self.decision.promoted else self.decision.champion_version


def gate_run_model(settings: Settings, cfg: TrainingConfig, model_uri: str, X_holdout: pd.DataFrame,
                   y_holdout: Any, *, source: str, tags: Mapping[str, str] | None = None,
                   strict: bool = True, experiment_id: int | str | None = None) -> GateDecision:
    """Register ``model_uri`` as a candidate of ``cfg.registered_model_name`` and pass it through the
    champion gate on the held-out rows; raise :class:`ChampionRefusedError` when refused and ``strict``.
    ``experiment_id``: the A/B test whose decision led here, recorded with the gate's decision."""
    from battleground.model.gate import champion_gate, register_candidate

    version = register_candidate(settings, model_uri, cfg.registered_model_name, source=source, tags=tags)
    decision = champion_gate(settings, cfg.registered_model_name, version, X_holdout, y_holdout, metric=cfg.metric,
                             threshold=cfg.deployment_score_thresh, margin=cfg.champion_margin,
                             beta=cfg.fbeta_score_beta_val, source=source, seed=cfg.seed or 0,
                             experiment_id=experiment_id)
    if strict and not decision.promoted:
        raise (ChampionThresholdError if decision.below_threshold else ChampionRefusedError)(decision)
    return decision


def evaluate_from_config(config: TrainingConfig | Mapping[str, Any] | str | Path,
                         settings: Settings | None = None, *, plots_dir: str | Path | None = None,
                         strict: bool = True, experiment_id: int | str | None = None) -> EvaluateResult:
    """``make evaluate``: pick the best run of the latest batch, score it on test, register it as a
    candidate of ``<registered_model_name>`` and let the champion gate decide whether it becomes
    ``@champion`` (``deployment_score_thresh`` and ``champion_margin`` over the current champion).

    Raises :class:`ChampionRefusedError` (:class:`ChampionThresholdError` below the threshold) when
    the gate refuses and ``strict``; the candidate stays registered with the reason as a tag.
    ``experiment_id``: the A/B test whose decision this promotion acts on (recorded as the version's
    ``battleground.experiment`` tag; the model version page links to it).
    """
    from mlflow.entities import Metric

    from battleground.model.data import read_splits
    from battleground.model.eval import EvalClassifierModel
    from battleground.model.gate import _experiment_ref
    from battleground.model.train import score

    _experiment_ref(experiment_id)  # a bad id fails before anything is registered
    cfg = _as_config(config)
    settings = settings or Settings.from_env()
    log_seed(cfg)
    selector = ModelSelector(cfg.project_name, cfg.workspace_name, cfg.comparison_metric, settings)
    model_type, run_id = selector.select_best_model()
    mlflow = _mlflow(settings)
    client = mlflow.MlflowClient()
    splits = read_splits(cfg.splits_dir)
    if "test" not in splits:
        raise ConfigError(f"{cfg.splits_dir} has no test.parquet; give data.fractions a 'test' share")
    X_test, y_test = _features(splits["test"], cfg.label, cfg.non_features)
    model_uri = client.get_run(run_id).data.tags.get("model_uri", f"runs:/{run_id}/model")
    model = mlflow.pyfunc.load_model(model_uri)
    proba = np.asarray(model.predict(X_test), dtype=float)
    test_score = score(cfg.metric, y_test, proba, beta=cfg.fbeta_score_beta_val)
    now = int(time.time() * 1000)
    if cfg.task == "regression":
        from battleground.model.eval import EvalRegressorModel

        test_metrics = EvalRegressorModel().calculate(proba, y_test).metrics()
    else:
        test_metrics = EvalClassifierModel(beta=cfg.fbeta_score_beta_val).calculate(proba, y_test).metrics()
    client.log_batch(run_id, metrics=[Metric(f"test_{k}", float(v), now, 0) for k, v in test_metrics.items()]
                     + [Metric("test_score", test_score, now, 0)])
    valid_score = float(client.get_run(run_id).data.metrics.get("validation_score", float("nan")))
    from battleground.model.artifacts import ModelCard, log_evaluation_artifacts

    run_tags = client.get_run(run_id).data.tags
    card = ModelCard(name=cfg.registered_model_name, model_type=model_type, run_id=run_id,
                     data_window=_data_window(splits, cfg))
    # plots, (confusion matrix,) importance, SHAP and the model card, logged to the run (and into plots_dir)
    log_evaluation_artifacts(client, run_id, model, X_test, y_test, card=card, beta=cfg.fbeta_score_beta_val,
                             threshold=float(run_tags.get("decision_threshold", 0.5)), seed=cfg.seed or 0,
                             folder=plots_dir, task=cfg.task)
    decision = gate_run_model(settings, cfg, model_uri, X_test, y_test, source="model evaluate",
                              tags={"model_type": model_type, "run_id": run_id}, strict=strict,
                              experiment_id=experiment_id)
    return EvaluateResult(model_type=model_type, run_id=run_id, metric=cfg.comparison_metric, valid_score=valid_score,
                          test_score=test_score, threshold=cfg.deployment_score_thresh,
                          test_metrics=test_metrics, registered=True, name=cfg.registered_model_name,
                          version=decision.version, decision=decision)


def _data_window(splits: Mapping[str, pd.DataFrame], cfg: TrainingConfig) -> str:
    """Where the evaluated rows came from, for the model card."""
    source = str(cfg.data.get("input") or f"synthetic churn data {dict(cfg.data.get('synthetic') or {})}")
    parts = []
    for name, frame in splits.items():
        text = f"{name} {len(frame)} rows"
        col = cfg.data.get("time_column") or ("cutoff" if "cutoff" in frame.columns else None)
        if col and col in frame.columns and len(frame):
            text += f" ({col} {frame[col].min()} … {frame[col].max()})"
        parts.append(text)
    method = cfg.data.get("split_method", "stratified")
    return f"{source}; {method} split: " + "; ".join(parts)


def load_champion(settings_or_uri: Settings | str | None = None, name: str = DEFAULT_MODEL_NAME,
                  alias: str = CHAMPION) -> Champion:
    """Load ``models:/<name>@<alias>`` with its version, metrics and input schema (column, dtype).

    Only a version the champion gate promoted loads: its files are downloaded, their sha256 checked
    against the gate's signed record, and the model is read from those same files. Raises
    :class:`~battleground.model.gate.UntrustedModelError` otherwise (nothing is unpickled).
    """
    import tempfile

    from battleground.model.gate import verified_model_dir

    if isinstance(settings_or_uri, str):
        settings = dataclasses.replace(Settings.from_env(), mlflow_uri=settings_or_uri)
    else:
        settings = settings_or_uri if settings_or_uri is not None else Settings.from_env()
    mlflow = _mlflow(settings)
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        raise ModelNotFoundError(f"no model {name!r} with alias {alias!r} in the registry; run "
                          "`battleground model train` and `battleground model evaluate` first") from exc
    run = client.get_run(mv.run_id)
    schema_tag = run.data.tags.get("input_schema")
    schema = tuple((str(c), str(t)) for c, t in json.loads(schema_tag)) if schema_tag else ()
    with tempfile.TemporaryDirectory(prefix="bg-champion-") as tmp:
        local = verified_model_dir(settings, name, str(mv.version), mv.tags, Path(tmp))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
    return Champion(model=model, name=name, version=str(mv.version), alias=alias, run_id=mv.run_id,
                    model_type=run.data.tags.get("model_type", ""), metrics=dict(run.data.metrics),
                    input_schema=schema, digest=str(mv.tags.get("battleground.gate.digest", "")),
                    threshold=float(run.data.tags.get("decision_threshold", 0.5)),
                    task=run.data.tags.get("task", "classification"))


class TrainingOrchestrator:
    """Seed ``002``'s orchestrator as a thin face over :func:`battleground.model.train.tune`.

    ``experiment_manager`` is accepted for compatibility and unused (MLflow is configured by settings).
    """

    def __init__(self, experiment_manager: Any = None, *, train_features: pd.DataFrame, train_class: Any,
                 valid_features: pd.DataFrame, valid_class: Any, settings: Settings | None = None,
                 config: TrainingConfig | Mapping[str, Any] | None = None,
                 holdout_features: pd.DataFrame | None = None, holdout_class: Any = None) -> None:
        self.experiment_manager = experiment_manager
        self.train_features = train_features
        self.train_class = train_class
        self.valid_features = valid_features
        self.valid_class = valid_class
        self.settings = settings
        self.config = _as_config(config or {})
        self.holdout_features = holdout_features
        self.holdout_class = holdout_class

    def optimize_model(self, tracker: Any = None, model: Any = "lightgbm",
                       search_space_params: Mapping[str, Any] | None = None,
                       registered_model_name: str | None = None) -> tuple[Any, Any]:
        """Tune ``model`` (a name or a class such as ``LGBMClassifier``), log the best to MLflow.

        The study lives in the configured Optuna storage (``settings.optuna_storage``) under a name
        of its own, and its CSV goes to ``<artifacts_dir>/<batch>/``, so no run overwrites another's.
        With ``registered_model_name`` the model is registered under that name as a candidate and
        the champion gate decides on ``@champion`` (on ``holdout_features``/``holdout_class`` when
        given, else on the validation rows, which tuning has seen: an optimistic score).

        Returns ``(optuna.Study, TuneResult)``: the seed's ``(study, optimizer)`` pair. The result's
        ``trainer`` is the refitted best model, ``trials`` the study as a table,
        ``extra["run"]`` the MLflow run it was logged to and ``extra["decision"]`` the gate's decision."""
        from battleground.model.train import canonical_model, tune

        kind = canonical_model(model if isinstance(model, str) else getattr(model, "__name__", str(model)))
        cfg = self.config
        settings = self.settings or Settings.from_env()
        settings.ensure_home()
        seed = log_seed(cfg)
        batch_id = f"{int(time.time() * 1000):x}-{random.Random().getrandbits(16):04x}"
        space = {kind: dict(search_space_params)} if search_space_params else _search_space(cfg)
        result = tune(kind, self.train_features, self.train_class, self.valid_features, self.valid_class,
                      search_space=space, n_trials=max(cfg.max_search_iters, 1),
                      timeout=cfg.model_opt_timeout_secs, metric=cfg.metric, beta=cfg.fbeta_score_beta_val,
                      seed=seed, output_dir=cfg.artifacts_dir / batch_id, storage=settings.optuna_storage,
                      study_name=f"{cfg.project_name}-{kind}-{batch_id}", n_workers=cfg.n_workers,
                      class_weight=cfg.class_weight, calibration=cfg.calibration_method, task=cfg.task)
        mlflow = _mlflow(settings)
        use_experiment(mlflow, cfg.project_name, settings)
        run = _log_model_run(mlflow, kind=kind, trainer=result.trainer, X_train=self.train_features,
                             y_train=self.train_class, X_valid=self.valid_features, y_valid=self.valid_class,
                             cfg=cfg, seed=seed, batch_id=batch_id, params=result.best_params, tune_result=result)
        result.extra["run"] = run
        if registered_model_name:
            X_hold, y_hold = self.holdout_features, self.holdout_class
            if X_hold is None or y_hold is None:
                log.warning("optimize_model: no holdout_features given; the gate scores on the validation rows, "
                            "which tuning has seen")
                X_hold, y_hold = self.valid_features, self.valid_class
            result.extra["decision"] = gate_run_model(
                settings, _replace(cfg, registered_model_name=str(registered_model_name)), run.model_uri, X_hold,
                y_hold, source="TrainingOrchestrator.optimize_model", tags={"model_type": kind, "run_id": run.run_id},
                strict=False)
        return result.study, result


# -- the demo ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_churn_demo` produced.

    ``models`` maps ``'logistic'`` (the untuned baseline) and ``'lightgbm'`` (the tuned model) to fitted
    :class:`~battleground.model.train.Trainer` objects (``predict_proba(frame)``); ``test_metrics``
    holds each one's metrics on the test split; ``champion`` is ``(registered name, version)``.
    """

    train: TrainResult
    evaluation: EvaluateResult
    folder: Path
    seconds: float
    test_metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @property
    def models(self) -> dict[str, Any]:
        return dict(self.train.trainers)

    @property
    def valid_metrics(self) -> dict[str, dict[str, float]]:
        return {r.model: dict(r.metrics) for r in self.train.runs}

    @property
    def champion(self) -> tuple[str, str | None]:
        """(registered name, the version ``@champion`` names after the gate)."""
        return self.evaluation.name, self.evaluation.champion_version


def demo_config(folder: str | Path, *, n_characters: int = 4000, n_trials: int = 5, seed: int = 0,
                models: Sequence[str] = ("LogisticRegression", "LGBMClassifier")) -> dict[str, Any]:
    """The demo's config: a logistic baseline (untuned) and a tuned LightGBM on synthetic churn data."""
    folder = Path(folder)
    return {
        "train": {
            "supported_models": list(models),
            "tuned_models": ["LGBMClassifier"],
            "max_search_iters": n_trials,
            "model_opt_timeout_secs": 60,
            "experiment_tracker": "mlflow",
            "project_name": "churn-demo",
            "workspace_name": "demo",
            "comparison_metric": "roc_auc",
            "deployment_score_thresh": 0.7,
            "seed": seed,
            "registered_model_name": DEFAULT_MODEL_NAME,
        },
        "data": {
            "synthetic": {"n_characters": n_characters, "seed": seed, "variant": "game"},
            "splits_dir": str(folder / "splits"),
            "artifacts_dir": str(folder / "artifacts"),
        },
    }


def run_churn_demo(settings: Settings, *, n_characters: int = 4000, n_trials: int = 5, seed: int = 0) -> DemoResult:
    """Churn data → logistic baseline + tuned LightGBM → champion ``churn@champion``; for ``make demo``."""
    started = time.perf_counter()
    folder = settings.ensure_home() / "churn_demo"
    cfg = TrainingConfig.from_mapping(demo_config(folder, n_characters=n_characters, n_trials=n_trials, seed=seed))
    from battleground.model.data import read_splits
    from battleground.model.eval import EvalClassifierModel

    split_from_config(cfg)
    trained = train_from_config(cfg, settings)
    # a rerun on the same home trains the same model: the gate keeps the incumbent, the demo goes on
    evaluation = evaluate_from_config(cfg, settings, plots_dir=folder / "plots", strict=False)
    X_test, y_test = _features(read_splits(cfg.splits_dir)["test"], cfg.label, cfg.non_features)
    test_metrics = {kind: EvalClassifierModel().calculate(t.predict_proba(X_test), y_test).metrics()
                    for kind, t in trained.trainers.items()}
    return DemoResult(train=trained, evaluation=evaluation, folder=folder, seconds=time.perf_counter() - started,
                      test_metrics=test_metrics)
