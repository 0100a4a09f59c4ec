"""Synthetic logged bandit feedback with known propensities and known true policy values.

Contexts x ~ N(0, I_d); expected reward q(x, a) = σ(x·θ_a + b_a) with seeded θ, b (binary rewards) or the
same linear score plus Gaussian noise (continuous rewards); the logging policy is a softmax of
``beta``·score (``beta=0``: uniform random), so every logged action has its exact propensity and the true
value of any evaluation policy π is mean_i Σ_a π(a|x_i) q(x_i, a).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from battleground.errors import BanditError

__all__ = ["BanditFeedback", "epsilon_greedy_policy", "make_bandit_feedback"]


class BanditFeedbackError(BanditError, ValueError):
    """Bad arguments for the synthetic bandit feedback."""


@dataclass(frozen=True)
class BanditFeedback:
    """Logged rounds (obp conventions) with the ground truth needed to check estimators."""

    context: np.ndarray  # (n, d)
    action: np.ndarray  # (n,)
    reward: np.ndarray  # (n,)
    pscore: np.ndarray  # (n,)
    behavior_dist: np.ndarray  # (n, K) logging policy
    expected_reward: np.ndarray  # (n, K) q(x, a)

    @property
    def n_rounds(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.expected_reward.shape[1])

    def policy_value(self, action_dist: np.ndarray) -> float:
        """True value of ``action_dist`` (n, K) on these contexts: mean Σ_a π(a|x)·q(x,a)."""
        dist = np.asarray(action_dist, dtype=np.float64)
        if dist.ndim == 3:
            dist = dist[:, :, 0]
        if dist.shape != self.expected_reward.shape:
            raise BanditFeedbackError(
                f"action_dist has shape {dist.shape}, expected {self.expected_reward.shape}"
            )
        return float(np.einsum("nk,nk->n", dist, self.expected_reward).mean())


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def make_bandit_feedback(
    n_rounds: int = 10_000,
    n_actions: int = 5,
    dim_context: int = 4,
    *,
    beta: float = 1.0,
    reward_type: Literal["binary", "continuous"] = "binary",
    noise: float = 0.5,
    random_state: int = 0,
) -> BanditFeedback:
    """Seeded logged bandit feedback; ``beta`` is the logging softmax's inverse temperature."""
    if n_rounds < 1 or n_actions < 1 or dim_context < 1:
        raise BanditFeedbackError(
            f"n_rounds={n_rounds}, n_actions={n_actions}, dim_context={dim_context} must all be ≥ 1"
        )
    if reward_type not in ("binary", "continuous"):
        raise BanditFeedbackError(f"reward_type={reward_type!r}; choose 'binary' or 'continuous'")
    rng = np.random.default_rng(random_state)
    theta = rng.normal(0.0, 1.0 / np.sqrt(dim_context), size=(dim_context, n_actions))
    bias = rng.normal(0.0, 0.5, size=n_actions)
    context = rng.normal(size=(n_rounds, dim_context))
    score = context @ theta + bias
    expected = 1.0 / (1.0 + np.exp(-score)) if reward_type == "binary" else score
    behavior = _softmax(beta * score)
    # Inverse-CDF sampling of one action per round, vectorised.
    u = rng.random(n_rounds)[:, None]
    action = np.minimum((behavior.cumsum(axis=1) < u).sum(axis=1), n_actions - 1)
    rows = np.arange(n_rounds)
    q_logged = expected[rows, action]
    if reward_type == "binary":
        reward = (rng.random(n_rounds) < q_logged).astype(np.float64)
    else:
        reward = q_logged + rng.normal(0.0, noise, size=n_rounds)
    return BanditFeedback(context, action, reward, behavior[rows, action], behavior, expected)


def epsilon_greedy_policy(scores: np.ndarray, epsilon: float = 0.1) -> np.ndarray:
    """(n, K) action distribution: greedy on ``scores`` with probability 1−ε, uniform otherwise."""
    s = np.asarray(scores, dtype=np.float64)
    if not 0 <= epsilon <= 1:
        raise BanditFeedbackError(f"epsilon={epsilon!r} must lie in [0, 1]")
    k = s.shape[1]
    dist = np.full(s.shape, epsilon / k)
    dist[np.arange(s.shape[0]), s.argmax(axis=1)] += 1 - epsilon
    return dist
