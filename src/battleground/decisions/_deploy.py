"""Deployed policies: their specification, versions (checkpoints) and the live pointer, in one folder.

``<home>/decisions/<key>/``::

    spec.json        what the policy serves (arms, features, experiment, control slice, updater)
    v00001.npz …     every version that went live (``BasePolicy.save``)
    live.json        {"version": n, "history": [every promotion and rejection of the guard]}
    candidate.npz    the updater's candidate (trained on everything seen so far)
    updater.json     the updater's watermark (the last reward ``seq`` trained on)

Files are replaced atomically (write, then rename), so a crash leaves the previous state.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground.errors import BanditError

if TYPE_CHECKING:
    from battleground.bandit._base import BasePolicy
    from battleground.settings import Settings
    from battleground.storage.decisions import RewardRule

__all__ = ["DecisionInputError", "PolicySpec", "PolicyStore", "deploy_policy"]

_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
GUARD_ESTIMATORS = ("SNIPS", "IPS", "DR")


class DecisionInputError(BanditError, ValueError):
    """A decision request, policy specification or reward the decision service cannot use."""


@dataclass(frozen=True)
class PolicySpec:
    """What a deployed policy serves.

    Attributes:
        key: the policy key clients send (letters, digits, ``_.-``; starts with a letter).
        n_arms: number of actions.
        n_features: context width.
        experiment: registered experiment (name) the policy runs in against a control slice, or ``None``.
        bandit_variant: the experiment's variant whose units the policy serves; every other variant is
            the control slice (its decisions never train the policy).
        control: what the control slice gets: ``"random"`` (uniform, propensity 1/n_arms) or an arm.
        batch_size: rewarded decisions per mini-batch of the updater.
        guard_estimator: the OPE estimator of the guard (``SNIPS``, ``IPS`` or ``DR``).
        alpha: the guard's interval level (a candidate goes live when its estimate is at least the
            live version's lower ``1 − alpha`` bound on the same fresh batch).
        seed: seed of the control slice's draws.
        reward_event: the event type whose ingested events are the decisions' rewards, matched by time
            (:class:`battleground.storage.decisions.RewardRule`); ``None``: rewards come from
            ``POST /reward`` only.
        reward_window: seconds after a decision in which its unit's ``reward_event`` events count
            (``None``: until the unit's next decision).
        reward_value: ``"sum"`` (Σ the events' values, an empty value counting 1) or ``"any"`` (1 if
            the unit had such an event in the window, else 0).
    """

    key: str
    n_arms: int
    n_features: int
    experiment: str | None = None
    bandit_variant: str = "bandit"
    control: str | int = "random"
    batch_size: int = 256
    guard_estimator: str = "SNIPS"
    alpha: float = 0.05
    seed: int = 0
    reward_event: str | None = None
    reward_window: float | None = 3600.0
    reward_value: str = "sum"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY.match(self.key):
            raise DecisionInputError(
                f"policy key must start with a letter and hold letters, digits, '_', '.' or '-', got {self.key!r}")
        for name in ("n_arms", "n_features", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DecisionInputError(f"{name} must be an integer >= 1, got {v!r}")
        if not (self.control == "random" or (isinstance(self.control, int) and 0 <= self.control < self.n_arms)):
            raise DecisionInputError(
                f"control must be 'random' or an arm in 0..{self.n_arms - 1}, got {self.control!r}")
        if self.guard_estimator not in GUARD_ESTIMATORS:
            raise DecisionInputError(f"guard_estimator must be one of {GUARD_ESTIMATORS}, got {self.guard_estimator!r}")
        if not 0 < float(self.alpha) < 1:
            raise DecisionInputError(f"alpha must lie in (0, 1), got {self.alpha!r}")
        if self.reward_event is not None:
            try:
                self.reward_rule()
            except ValueError as exc:
                raise DecisionInputError(f"{exc} (policy {self.key!r})") from None

    def reward_rule(self) -> RewardRule | None:
        """How ingested events become this policy's rewards, or ``None`` (``POST /reward`` only)."""
        if self.reward_event is None:
            return None
        from battleground.storage.decisions import RewardRule

        return RewardRule(self.reward_event, self.reward_window, self.reward_value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, default=str))
    os.replace(tmp, path)


class PolicyStore:
    """The folders of every deployed policy under ``<home>/decisions``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def of(cls, settings: Settings) -> PolicyStore:
        return cls(settings.home / "decisions")

    def folder(self, key: str) -> Path:
        return self.root / key

    def deployed(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "spec.json").exists())

    def spec(self, key: str) -> PolicySpec:
        path = self.folder(key) / "spec.json"
        if not path.exists():
            raise DecisionInputError(
                f"no policy {key!r} is deployed (known: {self.deployed()}); deploy it with "
                "`battleground decisions deploy` or battleground.decisions.deploy_policy")
        return PolicySpec(**json.loads(path.read_text()))

    def live(self, key: str) -> dict[str, Any]:
        return dict(json.loads((self.folder(key) / "live.json").read_text()))

    def load_version(self, key: str, version: int) -> BasePolicy:
        from battleground.bandit._base import load_policy

        return load_policy(self.folder(key) / f"v{version:05d}.npz")

    def save_version(self, key: str, policy: BasePolicy, note: dict[str, Any]) -> int:
        """Save ``policy`` as the next version and make it live; returns the version."""
        state: dict[str, Any] = (self.live(key) if (self.folder(key) / "live.json").exists()
                                 else {"version": 0, "history": []})
        version = int(state["version"]) + 1
        policy.save(self.folder(key) / f"v{version:05d}.npz")
        state["history"].append({**note, "version": version, "live": True})
        state["version"] = version
        _write_json(self.folder(key) / "live.json", state)
        return version

    def note(self, key: str, note: dict[str, Any]) -> None:
        """Record a guard decision that did not change the live version."""
        state = self.live(key)
        state["history"].append({**note, "live": False})
        _write_json(self.folder(key) / "live.json", state)

    def updater_state(self, key: str) -> dict[str, Any]:
        path = self.folder(key) / "updater.json"
        return dict(json.loads(path.read_text())) if path.exists() else {"reward_seq": 0, "batches": 0}

    def save_updater_state(self, key: str, state: dict[str, Any]) -> None:
        _write_json(self.folder(key) / "updater.json", state)


def deploy_policy(settings: Settings, spec: PolicySpec, policy: BasePolicy | None = None) -> int:
    """Deploy ``policy`` (default: an untrained ``LinTS``) under ``spec.key`` as its first version.

    Re-deploying a key keeps its history and makes ``policy`` the next live version. Returns the version.
    """
    from battleground.bandit._base import BasePolicy

    if policy is None:
        from battleground.bandit._policies import LinTS

        policy = LinTS(n_arms=spec.n_arms, random_state=spec.seed)
    if not isinstance(policy, BasePolicy):
        raise DecisionInputError(f"policy must be a battleground bandit policy, got {type(policy).__name__}")
    if policy.n_arms != spec.n_arms:
        raise DecisionInputError(f"the policy has n_arms={policy.n_arms} but the spec says {spec.n_arms}; make them agree")
    if policy.is_fitted and policy.n_features_in_ != spec.n_features:
        raise DecisionInputError(
            f"the policy was fitted on {policy.n_features_in_} features but the spec says {spec.n_features}")
    store = PolicyStore.of(settings)
    folder = store.folder(spec.key)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "spec.json", spec.to_dict())
    version = store.save_version(spec.key, policy, {"reason": "deployed"})
    policy.save(folder / "candidate.npz")
    return version
