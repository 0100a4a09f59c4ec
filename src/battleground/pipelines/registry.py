"""Pipeline registry and programmatic runner (Kedro's ``OmegaConfigLoader``, ``DataCatalog`` and
``SequentialRunner``). Kedro is imported inside functions: importing it configures logging."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground.errors import ModelError

if TYPE_CHECKING:
    from kedro.pipeline import Pipeline

    from battleground.settings import Settings

__all__ = ["CONFIG_LOADER_ARGS", "CONF_DIR", "ENVIRONMENTS", "PIPELINE_NAMES", "PipelineError", "PipelineInputError", "PipelineRun", "load_config",
           "register_pipelines", "run_pipeline"]

CONF_DIR = Path(__file__).parent / "conf"
ENVIRONMENTS = ("base", "game2_env", "regression_env")  # regression_env: a numeric target (task: regression)
_BASE_NAMES = (
    "sub_churn_raw", "sub_churn_standard_features", "sub_churn_train", "sub_churn_score", "sub_churn_batch_predict",
    "sub_churn_batch_score", "sub_churn_train_from_raw", "sub_churn_score_from_raw",
    "sub_churn_batch_score_from_raw",
)
PIPELINE_NAMES = (*_BASE_NAMES, *(f"{n}_game2" for n in _BASE_NAMES))


class PipelineError(ModelError, ValueError):
    """A pipeline name, environment or parameter that cannot be run; the message says the valid ones."""


class PipelineInputError(ModelError, FileNotFoundError):
    """A pipeline's input that no earlier run (or the configuration) has provided."""


def _base_pipelines() -> dict[str, Pipeline]:
    from kedro.pipeline import Node, Pipeline

    from battleground.pipelines import nodes

    raw = Pipeline([Node(nodes.generate_raw, "params:churn", "raw_tables", name="generate_raw")])
    features = Pipeline([Node(nodes.build_features, ["raw_tables", "params:churn"],
                              ["features_train", "features_test"], name="build_features")])
    train = Pipeline([Node(nodes.train_model, ["features_train", "features_test", "params:churn", "params:paths.home"],
                           "churn_model",
                           name="train_model")])
    score = Pipeline([Node(nodes.score_model, ["churn_model", "features_test", "params:churn",
                                               "params:paths.plots_dir"],
                           ["score_report_txt", "score_report_html"], name="score_model")])
    predict = Pipeline([Node(nodes.batch_predict, ["raw_tables", "params:churn", "params:paths.home"], "predictions",
                             name="batch_predict")])
    bscore = Pipeline([Node(nodes.batch_score, ["predictions", "raw_tables", "params:churn"], "batch_score_report",
                            name="batch_score")])
    return {
        "sub_churn_raw": raw, "sub_churn_standard_features": features, "sub_churn_train": train,
        "sub_churn_score": score, "sub_churn_batch_predict": predict, "sub_churn_batch_score": bscore,
        "sub_churn_train_from_raw": raw + features + train,
        "sub_churn_score_from_raw": raw + features + score,
        "sub_churn_batch_score_from_raw": raw + predict + bscore,
    }


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline by name; ``<name>_game2`` twins are the same graph, run in ``game2_env``.

    ``__default__`` is ``sub_churn_train_from_raw`` (so ``kedro run`` trains from raw data).
    """
    base = _base_pipelines()
    out = {**base, **{f"{k}_game2": v for k, v in base.items()}}
    out["__default__"] = base["sub_churn_train_from_raw"]
    return out


def env_for(name: str, env: str | None = None) -> str:
    """The environment a pipeline runs in: ``*_game2`` twins default to (and require) ``game2_env``."""
    if name not in PIPELINE_NAMES:
        raise PipelineError(f"pipeline {name!r} is unknown; valid names: {', '.join(PIPELINE_NAMES)}")
    if env is not None and env not in ENVIRONMENTS:
        raise PipelineError(f"env={env!r} is unknown; valid environments: {', '.join(ENVIRONMENTS)}")
    if name.endswith("_game2"):
        if env not in (None, "game2_env"):
            raise PipelineError(f"{name} is the game2 twin and runs only in game2_env; drop --env or use game2_env")
        return "game2_env"
    return env or "base"


# the config loader arguments, shared with Kedro's own tools (battleground/pipelines/settings.py)
CONFIG_LOADER_ARGS: dict[str, Any] = {"base_env": "base", "default_run_env": "base",
                                      "merge_strategy": {"parameters": "soft", "catalog": "soft"}}


def load_config(env: str, data_dir: Path, conf_source: Path = CONF_DIR, *,
                home: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(catalog, parameters) from ``conf/base`` overlaid by ``conf/<env>``."""
    from kedro.config import OmegaConfigLoader

    if not (Path(conf_source) / "base").is_dir():
        raise PipelineInputError(f"conf_source {str(conf_source)!r} has no base/ folder; copy it from "
                                f"{CONF_DIR} or run `battleground pipeline kedro-project`")
    runtime = {"data_dir": str(data_dir), **({"home": str(home)} if home is not None else {})}
    args = {**CONFIG_LOADER_ARGS, "default_run_env": env}
    loader = OmegaConfigLoader(str(conf_source), runtime_params=runtime, **args)
    return dict(loader["catalog"]), dict(loader["parameters"])


def _flatten(params: Mapping[str, Any], prefix: str = "params:") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        out[f"{prefix}{key}"] = value
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
    return out


@dataclass(frozen=True)
class PipelineRun:
    """What a run did: pipeline, environment, data folder, outputs written and parameters used."""

    name: str
    env: str
    data_dir: Path
    outputs: dict[str, str]
    parameters: dict[str, Any]


def run_pipeline(name: str, settings: Settings, *, env: str | None = None,
                 params: Mapping[str, Any] | None = None, conf_source: Path = CONF_DIR) -> PipelineRun:
    """Run pipeline ``name`` in ``env``; data goes to ``<home>/pipelines/<env>/``.

    ``params`` overrides top-level keys of the ``churn`` parameters (e.g. ``{"n_characters": 500}``).
    """
    import logging
    import warnings

    from battleground.settings import quiet_third_party_telemetry

    quiet_third_party_telemetry()
    run_env = env_for(name, env)
    data_dir = settings.home / "pipelines" / run_env
    data_dir.mkdir(parents=True, exist_ok=True)
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    for noisy in ("kedro", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from battleground.pipelines.nodes import check_params

    with warnings.catch_warnings():  # omegaconf's resolver deprecation notice, raised inside Kedro
        warnings.simplefilter("ignore")
        catalog_conf, parameters = load_config(run_env, data_dir, conf_source, home=settings.home)
    check_params(dict(params or {}))
    churn = {**dict(parameters.get("churn", {})), **dict(params or {}), "env": run_env}
    check_params(churn)
    parameters = {**parameters, "churn": churn}
    catalog = DataCatalog.from_config(catalog_conf)
    for key, value in _flatten(parameters).items():
        catalog[key] = MemoryDataset(value, copy_mode="assign")
    pipeline = register_pipelines()[name]
    missing = [d for d in pipeline.inputs() if d not in catalog or not catalog.exists(d)]
    if missing:
        raise PipelineInputError(f"{name} needs {missing}, which no earlier run has written in {data_dir}; "
                                "run the *_from_raw or upstream pipeline first")
    SequentialRunner().run(pipeline, catalog)
    outputs = {d: str(catalog_conf[d]["filepath"]) for d in sorted(pipeline.all_outputs()) if d in catalog_conf}
    return PipelineRun(name=name, env=run_env, data_dir=data_dir, outputs=outputs, parameters=churn)
