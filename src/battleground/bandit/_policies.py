"""Random, epsilon-greedy, LinUCB and linear Thompson sampling, batched and per round.

The linear policies keep, per arm ``k``, the ridge statistics of RetailSynth's (tf-agents') linear
agents: a data Gram matrix ``G_k = Σ γ^age x xᵀ`` and ``b_k = Σ γ^age r x``, the precision
``A_k = G_k + reg·I`` (the prior is never forgotten, so ``A_k`` stays well conditioned), its inverse
and ``θ̂_k = A_k⁻¹ b_k``. With ``gamma = 1`` a per-round update is a rank-one Sherman–Morrison step on
one arm (no ``np.linalg`` call); forgetting (``gamma < 1``) decays every arm once per ``update`` call
and the inverses are recomputed in one batched call.

``θ̂_k`` and ``A_k⁻¹`` live in one working matrix ``W = [Θ; A⁻¹ stacked]`` so that a single matrix
product gives every arm's mean ``xᵀθ̂_k`` and ``A_k⁻¹x``: the per-round path is a handful of small
numpy calls.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from battleground.bandit._base import BasePolicy, Decision, PolicyInputError
from battleground.bandit._propensity import win_probability, win_probability_one

__all__ = [
    "AGENTS",
    "POLICY_CLASSES",
    "EpsilonGreedy",
    "LinTS",
    "LinUCB",
    "RandomPolicy",
    "make_policy",
]

_CHUNK = 8192
_TINY_VAR = 1e-24


def _check_float(name: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False) -> None:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v > low if low_open else v >= low) and v <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high < math.inf else "")
        raise PolicyInputError(f"{name} must be a number {bound}, got {value!r}")


def _check_one(policy: BasePolicy, context: ArrayLike) -> NDArray[np.float64]:
    """Validate one context of the per-round API (initialising the state on first use)."""
    x = context if isinstance(context, np.ndarray) and context.dtype == np.float64 else np.asarray(context, dtype=np.float64)
    if x.ndim != 1:
        raise PolicyInputError(
            f"context must be a 1-D array (n_features,), got shape {x.shape}; use select/update for a batch"
        )
    if not policy.is_fitted:
        policy._init_state(x.shape[0])
    elif x.shape[0] != policy.n_features_in_:
        raise PolicyInputError(f"context must have shape ({policy.n_features_in_},), got {x.shape}")
    if not math.isfinite(float(x.sum())):
        raise PolicyInputError("context contains NaN or infinite values; impute them first")
    return x


def _greedy_propensity(scores: NDArray[np.float64], rng: np.random.Generator) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Argmax per row, ties broken uniformly at random; returns actions and 1/#ties."""
    best = scores.max(axis=1, keepdims=True)
    is_max = scores == best
    n_max = is_max.sum(axis=1)
    if (n_max == 1).all():
        return scores.argmax(axis=1).astype(np.int64), np.ones(scores.shape[0])
    jitter = rng.random(scores.shape) * is_max
    return jitter.argmax(axis=1).astype(np.int64), 1.0 / n_max


class RandomPolicy(BasePolicy):
    """Uniformly random arm; the logging policy of the collect step (propensity ``1/n_arms``).

    Example:
        >>> import numpy as np
        >>> policy = RandomPolicy(n_arms=4, random_state=0)
        >>> decision = policy.select(np.zeros((3, 2)))
        >>> decision.propensities.tolist()
        [0.25, 0.25, 0.25]
    """

    _state_arrays: ClassVar[tuple[str, ...]] = ("reward_sums_",)

    def __init__(self, n_arms: int = 11, random_state: int | None = None) -> None:
        self.n_arms = n_arms
        self.random_state = random_state

    def _init_state(self, n_features: int) -> None:
        super()._init_state(n_features)
        self.reward_sums_ = np.zeros(self.n_arms)

    def select(self, contexts: ArrayLike) -> Decision:
        x = self._check_contexts(contexts)
        actions = np.asarray(self.rng_.integers(self.n_arms, size=x.shape[0]), dtype=np.int64)
        return Decision(actions, np.full(x.shape[0], 1.0 / self.n_arms))

    def update(self, contexts: ArrayLike, actions: ArrayLike, rewards: ArrayLike) -> RandomPolicy:
        _, a, r = self._check_feedback(contexts, actions, rewards)
        self.counts_ += np.bincount(a, minlength=self.n_arms)
        self.reward_sums_ += np.bincount(a, weights=r, minlength=self.n_arms)
        self.n_updates_ += 1
        return self

    def select_one(self, context: ArrayLike) -> tuple[int, float]:
        _check_one(self, context)
        return int(self.rng_.integers(self.n_arms)), 1.0 / self.n_arms

    def update_one(self, context: ArrayLike, action: int, reward: float) -> RandomPolicy:
        _check_one(self, context)
        if not 0 <= action < self.n_arms:
            raise PolicyInputError(f"action must lie in 0..{self.n_arms - 1}, got {action}")
        self.counts_[action] += 1
        self.reward_sums_[action] += reward
        self.n_updates_ += 1
        return self

    def action_dist(self, contexts: ArrayLike) -> NDArray[np.float64]:
        x = self._check_contexts(contexts)
        return np.full((x.shape[0], self.n_arms), 1.0 / self.n_arms)


class _LinearPolicy(BasePolicy):
    """Per-arm ridge regression shared by the linear policies."""

    _state_arrays: ClassVar[tuple[str, ...]] = ("gram_", "b_", "theta_", "A_inv_")

    reg: float
    gamma: float

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_float("reg", self.reg, 0.0, low_open=True)
        _check_float("gamma", self.gamma, 0.0, 1.0, low_open=True)

    def _init_state(self, n_features: int) -> None:
        super()._init_state(n_features)
        k, d = self.n_arms, self.n_features_in_
        self.gram_ = np.zeros((k, d, d))
        self.b_ = np.zeros((k, d))
        self._W = np.zeros((k + k * d, d))
        self._W[k:] = np.tile(np.eye(d) / float(self.reg), (k, 1))
        self._bind_views()
        self._pending: list[tuple[NDArray[np.float64], int, float]] = []
        self._last: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None = None

    def _bind_views(self) -> None:
        k, d = self.n_arms, self.n_features_in_
        self.theta_ = self._W[:k]
        self.A_inv_ = self._W[k:].reshape(k, d, d)

    def _after_load(self) -> None:
        k, d = self.n_arms, self.n_features_in_
        w = np.empty((k + k * d, d))
        w[:k] = self.theta_
        w[k:] = np.asarray(self.A_inv_).reshape(k * d, d)
        self._W = w
        self._bind_views()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickle and deepcopy store theta_ and A_inv_ as separate arrays: bind them to one working
        # matrix again, as after load_policy.
        self.__dict__.update(state)
        if "theta_" in state:
            self._after_load()

    def reset(self) -> _LinearPolicy:
        super().reset()
        for name in ("_W", "_pending", "_last"):
            if hasattr(self, name):
                delattr(self, name)
        return self

    # -- learning ------------------------------------------------------------------------------
    def _sync(self) -> None:
        """Fold the per-round observations into ``gram_`` and ``b_`` (θ̂ and A⁻¹ are already current)."""
        if not self._pending:
            return
        xs = np.array([p[0] for p in self._pending])
        acts = np.fromiter((p[1] for p in self._pending), dtype=np.int64, count=len(self._pending))
        rs = np.fromiter((p[2] for p in self._pending), dtype=np.float64, count=len(self._pending))
        self._pending = []
        gram, b = self._arm_sums(xs, acts, rs)
        self.gram_ += gram
        self.b_ += b

    def _arm_sums(self, x: NDArray[np.float64], a: NDArray[np.int64], r: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per-arm ``Σ x xᵀ`` and ``Σ r x``: rows grouped by arm, one ``einsum`` per arm.

        ``einsum`` without ``optimize`` runs its own C loop; a BLAS product over the rounds would be
        as fast on an idle machine but stalls badly when OpenBLAS threads compete for busy cores.
        """
        k, d = self.n_arms, self.n_features_in_
        gram = np.zeros((k, d, d))
        b = np.zeros((k, d))
        order = np.argsort(a, kind="stable")
        bounds = np.searchsorted(a[order], np.arange(k + 1))
        xs, rs = x[order], r[order]
        for arm in range(k):
            lo, hi = bounds[arm], bounds[arm + 1]
            if hi > lo:
                blk = xs[lo:hi]
                gram[arm] = np.einsum("ni,nj->ij", blk, blk)
                b[arm] = np.einsum("ni,n->i", blk, rs[lo:hi])
        return gram, b

    def _refresh(self) -> None:
        d = self.n_features_in_
        precision = self.gram_ + float(self.reg) * np.eye(d)
        # Cholesky-based inverse is the stable route for these symmetric positive definite matrices.
        chol = np.linalg.cholesky(precision)
        eye = np.broadcast_to(np.eye(d), precision.shape)
        l_inv = np.linalg.solve(chol, eye)
        self.A_inv_[...] = np.swapaxes(l_inv, 1, 2) @ l_inv
        self.theta_[...] = (self.A_inv_ @ self.b_[:, :, None])[:, :, 0]

    def update(self, contexts: ArrayLike, actions: ArrayLike, rewards: ArrayLike) -> _LinearPolicy:
        """Learn from a batch of feedback: one forgetting step (if ``gamma < 1``), then the data."""
        x, a, r = self._check_feedback(contexts, actions, rewards)
        self._sync()
        self._last = None
        gamma = float(self.gamma)
        if gamma < 1.0:
            self.gram_ *= gamma
            self.b_ *= gamma
        for start in range(0, x.shape[0], _CHUNK):
            sl = slice(start, start + _CHUNK)
            gram, b = self._arm_sums(x[sl], a[sl], r[sl])
            self.gram_ += gram
            self.b_ += b
        self.counts_ += np.bincount(a, minlength=self.n_arms)
        self.n_updates_ += 1
        self._refresh()
        return self

    def update_one(self, context: ArrayLike, action: int, reward: float) -> _LinearPolicy:
        """Learn from one round. With ``gamma = 1``: a Sherman–Morrison step on the chosen arm."""
        last = self._last if self.is_fitted else None
        # The context select_one just validated (the same object) is not checked twice.
        x = context if last is not None and last[0] is context else _check_one(self, context)
        if not 0 <= action < self.n_arms:
            raise PolicyInputError(f"action must lie in 0..{self.n_arms - 1}, got {action}")
        a = int(action)
        r = float(reward)
        if not math.isfinite(r):
            raise PolicyInputError(f"reward must be finite, got {reward!r}")
        if self.gamma != 1.0:
            self._sync()
            self.update(x[None, :], np.array([a]), np.array([r]))
            return self
        if last is not None and last[0] is x:
            u = last[2][a]
            pred = float(last[1][a])
        else:
            u = self.A_inv_[a] @ x
            pred = float(self.theta_[a] @ x)
        self._last = None
        denom = 1.0 + float(u @ x)
        self.theta_[a] += u * ((r - pred) / denom)
        self.A_inv_[a] -= u[:, None] * (u / denom)
        self._pending.append((x.copy(), a, r))
        if len(self._pending) >= 4096:
            self._sync()
        self.counts_[a] += 1
        self.n_updates_ += 1
        return self

    def save(self, path: Any) -> Any:
        if self.is_fitted:
            self._sync()
        return super().save(path)

    # -- scores -------------------------------------------------------------------------------
    def _means_and_quad(self, x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per-arm ``xᵀθ̂_k`` and ``xᵀA_k⁻¹x`` for a batch of contexts, (n, K) each."""
        k, d = self.n_arms, self.n_features_in_
        y = x @ self._W.T
        mu = y[:, :k]
        quad = np.einsum("nkd,nd->nk", y[:, k:].reshape(x.shape[0], k, d), x)
        return mu, np.maximum(quad, _TINY_VAR)

    def _one(self, context: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        x = _check_one(self, context)
        k = self.n_arms
        y = self._W @ x
        mu = y[:k]
        ax = y[k:].reshape(k, -1)
        self._last = (x, mu, ax)
        return x, mu, ax

    def _pick_one(self, scores: NDArray[np.float64]) -> tuple[int, float]:
        s = scores.tolist()
        best = max(s)
        ties = s.count(best)
        if ties == 1:
            return s.index(best), 1.0
        idx = [i for i, v in enumerate(s) if v == best]
        return idx[int(self.rng_.integers(ties))], 1.0 / ties


class EpsilonGreedy(_LinearPolicy):
    """Greedy on per-arm ridge predictions ``xᵀθ̂_k``; a uniformly random arm with probability ε.

    Propensity: ``ε/K + (1−ε)/#ties`` for a greedy arm, ``ε/K`` otherwise.

    Example:
        >>> import numpy as np
        >>> policy = EpsilonGreedy(n_arms=3, epsilon=0.3, random_state=0)
        >>> policy = policy.fit(np.ones((6, 1)), [0, 1, 2, 0, 1, 2], [0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
        >>> policy.action_dist(np.ones((1, 1))).round(2).tolist()
        [[0.1, 0.8, 0.1]]
    """

    def __init__(self, n_arms: int = 11, epsilon: float = 0.1, reg: float = 1.0, gamma: float = 1.0, random_state: int | None = None) -> None:
        self.n_arms = n_arms
        self.epsilon = epsilon
        self.reg = reg
        self.gamma = gamma
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_float("epsilon", self.epsilon, 0.0, 1.0)

    def select(self, contexts: ArrayLike) -> Decision:
        x = self._check_contexts(contexts)
        n, k, eps = x.shape[0], self.n_arms, float(self.epsilon)
        mu = x @ self.theta_.T
        greedy, tie_p = _greedy_propensity(mu, self.rng_)
        explore = self.rng_.random(n) < eps
        actions = np.where(explore, self.rng_.integers(k, size=n), greedy)
        is_greedy = mu[np.arange(n), actions] == mu.max(axis=1)
        prop = eps / k + np.where(is_greedy, (1.0 - eps) * tie_p, 0.0)
        return Decision(actions.astype(np.int64), prop)

    def select_one(self, context: ArrayLike) -> tuple[int, float]:
        x = _check_one(self, context)
        s = (self.theta_ @ x).tolist()
        best = max(s)
        ties = s.count(best)
        eps, k = float(self.epsilon), self.n_arms
        if self.rng_.random() < eps:
            a = int(self.rng_.integers(k))
        elif ties == 1:
            a = s.index(best)
        else:
            idx = [i for i, v in enumerate(s) if v == best]
            a = idx[int(self.rng_.integers(ties))]
        return a, eps / k + ((1.0 - eps) / ties if s[a] == best else 0.0)

    def action_dist(self, contexts: ArrayLike) -> NDArray[np.float64]:
        x = self._check_contexts(contexts)
        mu = x @ self.theta_.T
        is_max = mu == mu.max(axis=1, keepdims=True)
        eps = float(self.epsilon)
        return eps / self.n_arms + (1.0 - eps) * is_max / is_max.sum(axis=1, keepdims=True)


class LinUCB(_LinearPolicy):
    """Upper confidence bound ``xᵀθ̂_k + α·sqrt(xᵀA_k⁻¹x)``; deterministic (propensity 1, or 1/#ties).

    Example:
        >>> import numpy as np
        >>> policy = LinUCB(n_arms=2, alpha=0.0).fit(np.ones((2, 1)), [0, 1], [1.0, 3.0])
        >>> policy.select(np.ones((1, 1))).actions.tolist()
        [1]
    """

    def __init__(self, n_arms: int = 11, alpha: float = 1.0, reg: float = 1.0, gamma: float = 1.0, random_state: int | None = None) -> None:
        self.n_arms = n_arms
        self.alpha = alpha
        self.reg = reg
        self.gamma = gamma
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_float("alpha", self.alpha, 0.0)

    def _scores(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        mu, quad = self._means_and_quad(x)
        return mu + float(self.alpha) * np.sqrt(quad)

    def select(self, contexts: ArrayLike) -> Decision:
        x = self._check_contexts(contexts)
        parts = [_greedy_propensity(self._scores(x[s : s + _CHUNK]), self.rng_) for s in range(0, x.shape[0], _CHUNK)]
        if not parts:
            return Decision(np.zeros(0, dtype=np.int64), np.zeros(0))
        return Decision(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    def select_one(self, context: ArrayLike) -> tuple[int, float]:
        x, mu, ax = self._one(context)
        quad = ax @ x
        np.sqrt(quad, out=quad)
        quad *= self.alpha
        quad += mu
        return self._pick_one(quad)

    def action_dist(self, contexts: ArrayLike) -> NDArray[np.float64]:
        x = self._check_contexts(contexts)
        out = np.empty((x.shape[0], self.n_arms))
        for s in range(0, x.shape[0], _CHUNK):
            scores = self._scores(x[s : s + _CHUNK])
            is_max = scores == scores.max(axis=1, keepdims=True)
            out[s : s + _CHUNK] = is_max / is_max.sum(axis=1, keepdims=True)
        return out


class LinTS(_LinearPolicy):
    """Linear Thompson sampling: ``θ_k ~ N(θ̂_k, v·A_k⁻¹)`` per arm, play the arm of the largest ``xᵀθ_k``.

    Only the scores matter, so each round samples ``s_k ~ N(xᵀθ̂_k, v·xᵀA_k⁻¹x)`` directly (the same
    distribution of decisions as sampling the whole θ, at a fraction of the cost). ``v`` is
    ``variance_scale``. The propensity of arm ``a`` is the probability that it has the largest of
    independent normal scores, computed by :func:`battleground.bandit._propensity.win_probability`
    (accurate to 1e-7 in every regime, arms' spreads equal or 140× apart). ``select``, ``select_one``
    and ``action_dist`` call the same function, so they report the same number; ``action_dist``'s rows
    sum to 1 within the quadrature error before the final renormalisation.

    Example:
        >>> import numpy as np
        >>> policy = LinTS(n_arms=2, variance_scale=1.0, random_state=0)
        >>> policy = policy.fit(np.ones((2, 1)), [0, 1], [0.0, 0.0])
        >>> policy.action_dist(np.ones((1, 1))).round(3).tolist()
        [[0.5, 0.5]]
    """

    def __init__(self, n_arms: int = 11, variance_scale: float = 1.0, reg: float = 1.0, gamma: float = 1.0, random_state: int | None = None) -> None:
        self.n_arms = n_arms
        self.variance_scale = variance_scale
        self.reg = reg
        self.gamma = gamma
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_float("variance_scale", self.variance_scale, 0.0)

    def _mean_sd(self, x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        mu, quad = self._means_and_quad(x)
        return mu, np.sqrt(np.maximum(quad * float(self.variance_scale), _TINY_VAR))

    @staticmethod
    def _win_probability(mu: NDArray[np.float64], sd: NDArray[np.float64], arms: NDArray[np.int64]) -> NDArray[np.float64]:
        """P(arm ``arms[i]`` has the largest score) for each row i (see :mod:`._propensity`)."""
        return win_probability(mu, sd, arms)

    def select(self, contexts: ArrayLike) -> Decision:
        x = self._check_contexts(contexts)
        actions = np.empty(x.shape[0], dtype=np.int64)
        props = np.empty(x.shape[0])
        for s in range(0, x.shape[0], _CHUNK):
            mu, sd = self._mean_sd(x[s : s + _CHUNK])
            sampled = mu + sd * self.rng_.standard_normal(mu.shape)
            act = sampled.argmax(axis=1)
            actions[s : s + _CHUNK] = act
            props[s : s + _CHUNK] = self._win_probability(mu, sd, act)
        return Decision(actions, props)

    def select_one(self, context: ArrayLike) -> tuple[int, float]:
        x, mu, ax = self._one(context)
        quad = ax @ x
        quad *= self.variance_scale
        np.maximum(quad, _TINY_VAR, out=quad)
        sd = np.sqrt(quad, out=quad)
        s = self.rng_.standard_normal(self.n_arms)
        s *= sd
        s += mu
        a = int(s.argmax())
        return a, win_probability_one(mu, sd, a)

    def action_dist(self, contexts: ArrayLike) -> NDArray[np.float64]:
        x = self._check_contexts(contexts)
        n, k = x.shape[0], self.n_arms
        out = np.empty((n, k))
        step = max(1, _CHUNK // (4 * k))
        for s in range(0, n, step):
            mu, sd = self._mean_sd(x[s : s + step])
            m = mu.shape[0]
            rep_mu = np.repeat(mu, k, axis=0)
            rep_sd = np.repeat(sd, k, axis=0)
            arms = np.tile(np.arange(k), m)
            out[s : s + step] = self._win_probability(rep_mu, rep_sd, arms).reshape(m, k)
        # Each entry is accurate to 1e-7; renormalising moves it by no more than that.
        return out / out.sum(axis=1, keepdims=True)


POLICY_CLASSES: dict[str, type[BasePolicy]] = {
    cls.__name__: cls for cls in (RandomPolicy, EpsilonGreedy, LinUCB, LinTS)
}

AGENTS: dict[str, type[BasePolicy]] = {
    "linear_ts": LinTS,
    "linear_ucb": LinUCB,
    "epsilon_greedy": EpsilonGreedy,
    "random": RandomPolicy,
}


def make_policy(agent: str, **params: Any) -> BasePolicy:
    """Build a policy by its workflow name (``linear_ts``, ``linear_ucb``, ``epsilon_greedy``, ``random``)."""
    if agent not in AGENTS:
        raise PolicyInputError(f"unknown agent {agent!r}; choose one of {sorted(AGENTS)}")
    cls = AGENTS[agent]
    try:
        return cls(**params)
    except TypeError as exc:
        valid = cls._param_names()
        raise PolicyInputError(f"bad parameters {sorted(params)} for agent {agent!r}; valid parameters: {valid}") from exc
