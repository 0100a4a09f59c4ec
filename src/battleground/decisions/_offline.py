"""Off-policy evaluation from the decision log in the store (not only from simulator logs).

Every logged decision carries the context, the action and the probability the logging policy gave it
(a live version, or the control slice), so any candidate policy's value can be estimated from the
rewarded decisions of a policy key or an experiment with every estimator of :mod:`battleground.ope`.
Mixing rows logged by several versions and the control slice is valid: each row is weighted by the
propensity of the policy that actually logged it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from battleground.decisions._deploy import DecisionInputError, PolicyStore

if TYPE_CHECKING:
    import pandas as pd

    from battleground.bandit._base import BasePolicy
    from battleground.settings import Settings
    from battleground.storage.decisions import LoggedDecisions

__all__ = ["StoreOPE", "control_policy", "ope_from_store", "read_logged"]


@dataclass(frozen=True)
class StoreOPE:
    """Estimates of candidates from stored decisions: ``table`` has one row per candidate × estimator
    (candidate, estimator, value, se, ci_low, ci_high, alpha, ci_method, n_rounds); ``logged_value`` is
    the mean reward the logs saw; ``experiment_id`` the experiment behind the key (if any)."""

    key: str
    experiment_id: int | None
    n_rounds: int
    logged_value: float
    table: pd.DataFrame
    diagnostics: dict[str, dict[str, Any]]


class _Uniform:
    """The uniform-random control slice, for OPE."""

    def __init__(self, n_arms: int) -> None:
        self.n_arms = n_arms

    def action_dist(self, contexts: Any) -> np.ndarray:
        return np.full((np.asarray(contexts).shape[0], self.n_arms), 1.0 / self.n_arms)


class _Fixed:
    """A policy that always plays one arm (the control slice's fixed arm), for OPE."""

    def __init__(self, n_arms: int, arm: int) -> None:
        self.n_arms, self.arm = n_arms, arm

    def action_dist(self, contexts: Any) -> np.ndarray:
        out = np.zeros((np.asarray(contexts).shape[0], self.n_arms))
        out[:, self.arm] = 1.0
        return out


def control_policy(n_arms: int, control: str | int) -> Any:
    """The control slice as a policy: uniform random, or a fixed arm."""
    return _Uniform(n_arms) if control == "random" else _Fixed(n_arms, int(control))


def read_logged(settings: Settings, key: str, *, variant: str | None = None) -> tuple[LoggedDecisions, int | None]:
    """The rewarded decisions of ``key`` (a deployed policy key, or an experiment name or id), after
    attaching the rewards of ingested events (``_rewards.py``)."""
    from battleground.decisions._rewards import attach_event_rewards
    from battleground.storage.decisions import open_decision_log

    log = open_decision_log(settings)
    store = PolicyStore.of(settings)
    attach_event_rewards(settings, key, log=log)  # rewards of ingested events whose window is over
    experiment_id = None
    if key in store.deployed():
        rows = log.read(policy=key, rewarded_only=True)
        spec = store.spec(key)
        if spec.experiment is not None:
            from battleground.experiment.register import Registry

            experiment_id = Registry(settings.registry_url).get(spec.experiment).id
    else:
        from battleground.experiment.register import Registry

        experiment_id = Registry(settings.registry_url).get(key).id
        rows = log.read(experiment_id=experiment_id, rewarded_only=True)
    if variant is not None:
        rows = rows.where(rows.variant == variant)
    return rows, experiment_id


def ope_from_store(
    settings: Settings,
    key: str,
    candidates: dict[str, BasePolicy | Any],
    *,
    variant: str | None = None,
    alpha: float = 0.05,
    ci: str = "analytic",
    reward_model: bool = True,
    random_state: int = 0,
) -> StoreOPE:
    """Estimate each candidate's value from the rewarded decisions of ``key`` with every estimator.

    Args:
        settings: where the store and registry live.
        key: a deployed policy key or an experiment (name or id).
        candidates: name → policy (anything with ``action_dist(contexts)``).
        variant: only decisions of this experiment variant.
        reward_model: fit q̂ by cross-fitting on the contexts (adds DM and the DR family).
    """
    import warnings

    import pandas as pd

    from battleground.ope import OPEReliabilityWarning, evaluate_policy

    if not candidates:
        raise DecisionInputError("give at least one candidate policy to evaluate (--policy-file NAME=path.npz)")
    rows, experiment_id = read_logged(settings, key, variant=variant)
    if len(rows) < 2:
        raise DecisionInputError(
            f"{key!r} has {len(rows)} rewarded decision(s) in the store; OPE needs logged decisions with rewards "
            "(serve it with `battleground serve-decisions`; rewards come from POST /reward or from ingested events "
            "when the policy names its reward_event)")
    if rows.context.shape[1] == 0:
        raise DecisionInputError(f"the decisions of {key!r} carry no context (a plain A/B test); a policy cannot be scored on them")
    frames = []
    diagnostics: dict[str, dict[str, Any]] = {}
    # q̂ depends on the logs only: fit it once for every candidate
    q_hat = None
    if reward_model:
        from battleground.ope import fit_reward_model

        n_arms = int(next(iter(candidates.values())).action_dist(rows.context[:1]).shape[1])
        q_hat = fit_reward_model(rows.context, rows.action, rows.reward, n_arms, random_state=random_state)
    for name, policy in candidates.items():
        dist = policy.action_dist(rows.context)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OPEReliabilityWarning)
            result = evaluate_policy(rows.action, rows.reward, rows.propensity, dist, q_hat=q_hat, alpha=alpha,
                                     ci=ci, random_state=random_state)  # type: ignore[arg-type]
        diagnostics[name] = result.diagnostics.to_dict()
        frame = result.to_frame()
        frame.insert(0, "candidate", name)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    return StoreOPE(key, experiment_id, len(rows), float(rows.reward.mean()), table, diagnostics)
