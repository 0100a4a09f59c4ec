"""The workflow's configuration: embedded defaults, a YAML file on top, ``key=value`` overrides last.

Keys are dotted paths into the nested mapping (``simulator.n_customers=200``,
``agents.linear_ts.variance_scale=0.5``); values are parsed as YAML (``0.5`` is a float, ``[1, 2]`` a
list, ``null`` is None). An unknown key is an error that lists the valid ones, so a typo never
silently does nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from battleground.errors import BanditError

__all__ = ["DEFAULT_CONFIG", "ConfigError", "apply_overrides", "dump_config", "load_config"]


class ConfigError(BanditError, ValueError):
    """A configuration file or override that cannot be used."""


DEFAULT_CONFIG: dict[str, Any] = {
    # The world every step runs in (RetailSimulator's arguments).
    "simulator": {
        "n_customers": 1000,
        "n_products": 100,
        "n_categories": 10,
        "n_coupon_levels": 11,
        "coupon_step": 0.05,
        "warmup_steps": 5,
        "seed": 0,
    },
    # Uniform-random logging policy: the offline data (and the logs that OPE reads).
    "collect": {"n_steps": 30, "seed": 1},
    # Hyperparameters per agent (the tuned values replace these when a tuning log exists).
    "agents": {
        # From a 30-trial tune on the default simulator (1,000 customers, 30 logged steps).
        "linear_ts": {"variance_scale": 0.025, "reg": 30.0, "gamma": 0.999},
        "linear_ucb": {"alpha": 0.05, "reg": 30.0, "gamma": 0.997},
        "epsilon_greedy": {"epsilon": 0.01, "reg": 20.0, "gamma": 0.99},
        "random": {},
    },
    # Optuna search: [low, high] (log scale when "log" is third), or a list of choices under "choices".
    "tune": {
        "n_trials": 20,
        "n_trajectories": 3,
        "n_steps": 20,
        "seed": 0,
        "space": {
            "linear_ts": {"variance_scale": [0.001, 10.0, "log"], "reg": [0.01, 100.0, "log"], "gamma": [0.9, 1.0]},
            "linear_ucb": {"alpha": [0.001, 10.0, "log"], "reg": [0.01, 100.0, "log"], "gamma": [0.9, 1.0]},
            "epsilon_greedy": {"epsilon": [0.0, 0.5], "reg": [0.01, 100.0, "log"], "gamma": [0.9, 1.0]},
            "random": {},
        },
    },
    # Offline training from the logs, one logged step per batch (the training curve has one point each).
    "train": {"seed": 0},
    # Evaluation trajectories in the simulator; the policy keeps learning online unless told not to.
    "eval": {"n_trajectories": 3, "n_steps": 30, "seed": 100, "online_update": True},
    "segment": {"n_segments": 4},
    # Ablation / sensitivity sweep: every agent at its parameters, plus each grid point.
    "sweep": {
        "agents": ["linear_ts", "linear_ucb", "epsilon_greedy", "random"],
        "grid": {},
        "n_trajectories": 2,
        "n_steps": 20,
        "seed": 200,
        "max_workers": 2,
    },
    # Off-policy evaluation of a trained agent from the random-policy logs.
    "ope": {"n_steps": 10, "lambda_": 5.0, "ci": "analytic", "alpha": 0.05, "n_bootstrap": 200, "seed": 0, "n_folds": 3},
}


# Below these paths the names are the user's (agent parameters, search spaces, sweep grids).
_OPEN_PATHS: tuple[tuple[str, ...], ...] = (("agents",), ("tune", "space"), ("sweep", "grid"))


def _is_open(parts: list[str], depth: int) -> bool:
    """Whether the key ``parts[depth]`` may be new: it lies strictly below an open path."""
    return any(len(p) <= depth and tuple(parts[: len(p)]) == p for p in _OPEN_PATHS)


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = config
    for depth, part in enumerate(parts):
        if not isinstance(node, dict):
            raise ConfigError(f"config key {key!r} does not name a setting ({'.'.join(parts[:depth])} is not a mapping)")
        if part not in node and not _is_open(parts, depth):
            where = ".".join(parts[:depth]) or "the top level"
            raise ConfigError(f"unknown config key {key!r}: no {part!r} under {where}; valid keys there: {sorted(node)}")
        if depth == len(parts) - 1:
            node[part] = value
        else:
            node = node.setdefault(part, {})


def _merge(config: dict[str, Any], extra: Mapping[str, Any], prefix: str = "", node: Any = None) -> None:
    """Set every leaf of ``extra`` into ``config``, descending while both sides are mappings."""
    node = config if node is None else node
    for key, value in extra.items():
        dotted = f"{prefix}{key}"
        current = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, Mapping) and isinstance(current, dict):
            _merge(config, value, f"{dotted}.", current)
        else:
            _set(config, dotted, copy.deepcopy(value))


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``config`` with each ``key=value`` override applied (values parsed as YAML)."""
    import yaml

    out = copy.deepcopy(dict(config))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. simulator.n_customers=200)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({exc})") from exc
        _set(out, key, value)
    return out


def load_config(
    path: str | Path | Sequence[str | Path] | None = None, overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """The defaults, then each YAML file of ``path`` in order (if given), then the ``key=value`` overrides."""
    import yaml

    config = copy.deepcopy(DEFAULT_CONFIG)
    paths = [] if path is None else [path] if isinstance(path, str | Path) else list(path)
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"config file {p} must hold a mapping at the top level, got {type(loaded).__name__}")
        _merge(config, loaded)
    return apply_overrides(config, overrides)


def dump_config(config: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``config`` as YAML (the resolved configuration an experiment ran with)."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path
