"""What ``/decide`` and ``/reward`` do, without HTTP: resolve the key, decide, log through the writer.

A key names a deployed policy (``<home>/decisions/<key>``) or, failing that, a registered experiment:

* **A/B experiment**: the unit's variant by the deterministic assignment (``experiment/assign.py``);
  the action is the variant's index, the propensity its weight.
* **policy in an experiment** (bandit vs control): the unit's variant first; units of the bandit
  variant get the live policy's action and propensity (its own ``select_one``), the others the control
  slice (uniform random, or a fixed arm), logged with ``trains = false`` so they never train the policy.
* **policy alone**: the live policy for every unit.

Every decision is logged exactly once (the writer's group commit; the first decision of a unit in an
experiment also writes its exposure event) before the answer leaves.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from battleground.decisions._deploy import DecisionInputError, PolicySpec, PolicyStore
from battleground.errors import ExperimentError
from battleground.storage.decisions import DecisionRow, RewardRow

if TYPE_CHECKING:
    from battleground.bandit._base import BasePolicy
    from battleground.decisions._updater import PolicyUpdater
    from battleground.experiment._records import ExperimentRecord
    from battleground.experiment.assign import Assigner
    from battleground.settings import Settings

__all__ = ["DecisionService", "NotRunningError"]

_EXPERIMENT_TTL = 5.0
_OUTSIDE = {"holdout": "held out by the project's holdout", "layer": "its layer bucket is outside the "
            "experiment's range", "traffic": "outside its traffic"}


def _outside(unit: str, experiment: str, why: str | None) -> DecisionInputError:
    return DecisionInputError(f"unit {unit!r} is outside experiment {experiment!r} "
                              f"({_OUTSIDE[why or 'traffic']}); show it the default experience")


class NotRunningError(ExperimentError, RuntimeError):
    """The experiment behind a key is not running, so no decision is logged for it."""


@dataclass
class _Live:
    spec: PolicySpec
    version: int
    policy: BasePolicy
    rng: np.random.Generator
    updater: PolicyUpdater | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class DecisionService:
    """Decisions and rewards over one settings' registry, event store and deployed policies.

    Args:
        settings: where the registry, the event store and ``<home>/decisions`` live.
        updaters: run the background updater of every deployed policy served.
        update_interval: seconds between the updaters' passes.
        idle: seconds without traffic after which the writer lets the store go; ``None`` (default):
            it keeps the store (and an embedded DuckDB file open) for the service's life.
    """

    def __init__(self, settings: Settings, *, updaters: bool = True, update_interval: float = 1.0,
                 idle: float | None = None) -> None:
        from battleground.decisions._writer import GroupWriter
        from battleground.experiment.register import Registry
        from battleground.storage.decisions import open_decision_log

        self.settings = settings
        self.registry = Registry(settings.registry_url)
        self.log = open_decision_log(settings)
        self.writer = GroupWriter(self.log, idle=idle)
        self.store = PolicyStore.of(settings)
        self.updaters = updaters
        self.update_interval = update_interval
        self._live: dict[str, _Live] = {}
        # key -> (when read, the record, its assigner): the registry is read again after _EXPERIMENT_TTL
        self._experiments: dict[str, tuple[float, ExperimentRecord, Assigner]] = {}
        self._recent: dict[str, DecisionRow] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        for live in self._live.values():
            if live.updater is not None:
                live.updater.stop()
        self.writer.close()

    # ------------------------------------------------------------------ keys
    def _policy(self, key: str) -> _Live | None:
        live = self._live.get(key)
        if live is not None:
            return live
        if not self.is_policy(key):
            return None
        with self._lock:
            if key in self._live:
                return self._live[key]
            spec = self.store.spec(key)
            version = int(self.store.live(key)["version"])
            policy = self.store.load_version(key, version)
            live = _Live(spec, version, policy, np.random.default_rng([spec.seed, version]))
            if self.updaters:
                from battleground.decisions._updater import PolicyUpdater

                def on_live(v: int, p: BasePolicy, k: str = key) -> None:
                    self._go_live(k, v, p)

                live.updater = PolicyUpdater(spec, self.store, self.writer, (version, policy), on_live,
                                             interval=self.update_interval).start()
            self._live[key] = live
        return live

    def is_policy(self, key: str) -> bool:
        """Whether ``key`` names a deployed policy (else it names an experiment)."""
        return key in self._live or (self.store.folder(key) / "spec.json").is_file()

    def _go_live(self, key: str, version: int, policy: BasePolicy) -> None:
        live = self._live[key]
        live.policy, live.version = policy, version  # the event loop picks the new one up at its next call

    def _experiment(self, key: str) -> tuple[ExperimentRecord, Assigner]:
        cached = self._experiments.get(key)
        if cached is not None and time.monotonic() - cached[0] < _EXPERIMENT_TTL:
            return cached[1], cached[2]
        from battleground.experiment.assign import Assigner

        record = self.registry.get(key)
        if record.status != "running":
            raise NotRunningError(
                f"experiment {record.name!r} is {record.status}; decisions are logged only for running "
                f"experiments: start it (battleground experiment start {record.id})")
        assigner = Assigner(record)
        self._experiments[key] = (time.monotonic(), record, assigner)
        return record, assigner

    # ------------------------------------------------------------------ decide
    def decide(self, unit_id: str, key: str, context: Any = (), decision_id: str | None = None) -> tuple[DecisionRow, Future[tuple[DecisionRow, bool]]]:
        """Decide for ``unit_id`` under ``key``; the future resolves once the decision is logged."""
        unit = str(unit_id)
        if not unit or len(unit) > 200:
            raise DecisionInputError(f"unit_id must be 1 to 200 characters, got {unit[:40]!r}")
        did = decision_id or uuid.uuid4().hex
        if len(did) > 200:
            raise DecisionInputError("decision_id must be at most 200 characters; use a UUID")
        live = self._policy(key)
        now = _now()
        if live is None:  # a plain A/B experiment
            exp, assigner = self._experiment(key)
            names = [v.name for v in exp.variants]
            weights = [v.weight for v in exp.variants]
            variant = assigner.assign(unit)
            if variant is None:
                raise _outside(unit, exp.name, assigner.exclusion(unit))
            i = names.index(variant)
            row = DecisionRow(did, exp.name, exp.id, variant, unit, (), i, float(weights[i]), 0, False, now)
            return row, self.writer.decide(row)
        spec = live.spec
        x = self._context(context, spec)
        exp_id: int | None = None
        variant = None
        if spec.experiment is not None:
            exp, assigner = self._experiment(spec.experiment)
            variant = assigner.assign(unit)
            if variant is None and assigner.exclusion(unit) == "holdout":
                # a held-out unit sees nothing experimental, the bandit included (docs/ab-testing.md)
                raise _outside(unit, exp.name, "holdout")
            exp_id = exp.id if variant is not None else None
        if variant is None or variant == spec.bandit_variant:
            policy, version = live.policy, live.version
            action, propensity = policy.select_one(x)
            trains = True
        else:  # the control slice: its data never trains the policy
            if spec.control == "random":
                action, propensity = int(live.rng.integers(spec.n_arms)), 1.0 / spec.n_arms
            else:
                action, propensity = int(spec.control), 1.0
            version, trains = 0, False
        row = DecisionRow(did, spec.key, exp_id, variant, unit, tuple(x.tolist()), int(action), float(propensity),
                          int(version), trains, now)
        return row, self.writer.decide(row)

    @staticmethod
    def _context(context: Any, spec: PolicySpec) -> np.ndarray:
        try:
            x = np.asarray(context, dtype=np.float64)
        except (TypeError, ValueError):
            raise DecisionInputError(f"context must be a list of {spec.n_features} numbers") from None
        if x.shape != (spec.n_features,) or not np.isfinite(x).all():
            raise DecisionInputError(
                f"context must be {spec.n_features} finite numbers for policy {spec.key!r}, got shape {x.shape}")
        return x

    def remember(self, row: DecisionRow) -> None:
        """Keep a logged decision at hand for its reward (a bounded cache)."""
        if len(self._recent) > 100_000:
            self._recent.clear()
        self._recent[row.decision_id] = row

    # ------------------------------------------------------------------ reward
    def reward(self, decision_id: str, reward: float) -> Future[str]:
        """Attach ``reward`` to a logged decision; the future gives the outcome."""
        r = float(reward)
        if not np.isfinite(r):
            raise DecisionInputError(f"reward must be a finite number, got {reward!r}")
        return self.writer.reward(RewardRow(str(decision_id), r, _now()), self._recent.get(str(decision_id)))

    def status(self) -> list[dict[str, Any]]:
        """Every deployed policy: key, live version, experiment, the updater's batches."""
        out = []
        for key in self.store.deployed():
            spec = self.store.spec(key)
            live = self._live.get(key)
            version = live.version if live else int(self.store.live(key)["version"])
            out.append({"policy": key, "live_version": version, "experiment": spec.experiment,
                        "batches": live.updater.batches if live and live.updater else None})
        return out
