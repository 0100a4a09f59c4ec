"""The policy contract shared by every bandit policy: parameters, decisions, persistence."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from battleground.errors import BanditError

__all__ = ["BasePolicy", "Decision", "NotFittedPolicyError", "PolicyInputError", "load_policy"]

_FORMAT_VERSION = 1


class PolicyInputError(BanditError, ValueError):
    """Contexts, actions or rewards of the wrong shape or value, or a bad hyperparameter."""


class NotFittedPolicyError(BanditError, ValueError):
    """The policy has seen no data yet and cannot say how many features its contexts have."""


@dataclass(frozen=True)
class Decision:
    """Actions chosen for a batch of contexts and the probability each had of being chosen.

    Unpacks like a tuple: ``actions, propensities = policy.select(contexts)``.
    """

    actions: NDArray[np.int64]
    propensities: NDArray[np.float64]

    def __iter__(self) -> Any:
        return iter((self.actions, self.propensities))

    def __len__(self) -> int:
        return int(self.actions.shape[0])


class BasePolicy:
    """Base class of the bandit policies, with scikit-learn's parameter conventions.

    Hyperparameters are the keyword arguments of ``__init__``, stored unchanged; ``get_params`` and
    ``set_params`` find them by introspection, so ``sklearn.base.clone`` works. Learned state ends in
    ``_`` and is created on the first ``update`` (or ``select``, which then knows the context width).
    """

    _state_arrays: ClassVar[tuple[str, ...]] = ()

    n_arms: int
    random_state: int | None

    # -- parameters ---------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyperparameters, as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BasePolicy:
        """Set hyperparameters by name; unknown names raise a ``PolicyInputError``."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise PolicyInputError(
                    f"{type(self).__name__} has no parameter {name!r}; valid parameters: {valid}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- validation ---------------------------------------------------------------------------
    def _validate_params(self) -> None:
        if isinstance(self.n_arms, bool) or not isinstance(self.n_arms, int | np.integer) or self.n_arms < 1:
            raise PolicyInputError(f"n_arms must be an integer >= 1, got {self.n_arms!r}")
        rs = self.random_state
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, int | np.integer) or rs < 0):
            raise PolicyInputError(f"random_state must be None or an integer >= 0, got {rs!r}")

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "n_features_in_")

    def _check_contexts(self, contexts: ArrayLike) -> NDArray[np.float64]:
        x = np.asarray(contexts, dtype=np.float64)
        if x.ndim != 2:
            raise PolicyInputError(
                f"contexts must be a 2-D array (n_rounds, n_features), got shape {x.shape}; "
                "use select_one/update_one for a single context"
            )
        if not np.isfinite(x).all():
            raise PolicyInputError("contexts contain NaN or infinite values; impute them first")
        if not self.is_fitted:
            self._init_state(x.shape[1])
        elif x.shape[1] != self.n_features_in_:
            raise PolicyInputError(
                f"contexts have {x.shape[1]} features but the policy was fitted with "
                f"{self.n_features_in_}; pass the same features as in training"
            )
        return x

    def _check_feedback(
        self, contexts: ArrayLike, actions: ArrayLike, rewards: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
        x = self._check_contexts(contexts)
        a = np.asarray(actions)
        r = np.asarray(rewards, dtype=np.float64)
        n = x.shape[0]
        if a.shape != (n,) or r.shape != (n,):
            raise PolicyInputError(
                f"actions and rewards must be 1-D with one entry per context ({n}), "
                f"got actions {a.shape} and rewards {r.shape}"
            )
        if n and not np.issubdtype(a.dtype, np.integer) and not np.all(np.equal(np.mod(a, 1), 0)):
            raise PolicyInputError("actions must be integer arm indices, got non-integer values")
        a = a.astype(np.int64)
        if n and (a.min() < 0 or a.max() >= self.n_arms):
            bad = a[(a < 0) | (a >= self.n_arms)][0]
            raise PolicyInputError(
                f"actions must lie in 0..{self.n_arms - 1} (n_arms={self.n_arms}), got {bad}"
            )
        if not np.isfinite(r).all():
            raise PolicyInputError("rewards contain NaN or infinite values")
        return x, a, r

    # -- state --------------------------------------------------------------------------------
    def _init_state(self, n_features: int) -> None:
        self._validate_params()
        self.n_features_in_ = int(n_features)
        self.n_updates_ = 0
        self.counts_ = np.zeros(self.n_arms, dtype=np.int64)
        self.rng_ = np.random.default_rng(self.random_state)

    def _after_load(self) -> None:
        """Rebuild derived working arrays after :func:`load_policy` restored the state."""

    def reset(self) -> BasePolicy:
        """Forget everything learned (the hyperparameters stay)."""
        for name in [*self._state_arrays, "n_features_in_", "n_updates_", "counts_", "rng_"]:
            if hasattr(self, name):
                delattr(self, name)
        return self

    def fit(self, contexts: ArrayLike, actions: ArrayLike, rewards: ArrayLike) -> BasePolicy:
        """Learn from logged feedback from scratch (offline training); returns ``self``."""
        self.reset()
        return self.update(contexts, actions, rewards)

    def partial_fit(self, contexts: ArrayLike, actions: ArrayLike, rewards: ArrayLike) -> BasePolicy:
        """Alias of :meth:`update`, for code written against scikit-learn's incremental API."""
        return self.update(contexts, actions, rewards)

    # -- the policy API (subclasses implement) -----------------------------------------------
    def select(self, contexts: ArrayLike) -> Decision:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, contexts: ArrayLike, actions: ArrayLike, rewards: ArrayLike) -> BasePolicy:  # pragma: no cover - abstract
        raise NotImplementedError

    def select_one(self, context: ArrayLike) -> tuple[int, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def update_one(self, context: ArrayLike, action: int, reward: float) -> BasePolicy:  # pragma: no cover - abstract
        raise NotImplementedError

    def action_dist(self, contexts: ArrayLike) -> NDArray[np.float64]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the policy (hyperparameters, learned state, random generator) to one ``.npz`` file."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "format": _FORMAT_VERSION,
            "class": type(self).__name__,
            "params": _jsonable(self.get_params()),
            "fitted": self.is_fitted,
        }
        arrays: dict[str, Any] = {}
        if self.is_fitted:
            meta["n_features_in_"] = self.n_features_in_
            meta["n_updates_"] = int(self.n_updates_)
            meta["rng_state"] = _jsonable(self.rng_.bit_generator.state)
            arrays["counts_"] = self.counts_
            for name in self._state_arrays:
                arrays[name] = getattr(self, name)
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays["__meta__"] = np.array(json.dumps(meta))
        np.savez(tmp, **arrays)
        tmp.replace(path)
        return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def load_policy(path: str | Path) -> BasePolicy:
    """Read a policy written by :meth:`BasePolicy.save`; it continues exactly where it stopped."""
    from battleground.bandit._policies import POLICY_CLASSES

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved policy at {path}; train one first (battleground bandit train)")
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["__meta__"]))
        arrays = {k: data[k] for k in data.files if k != "__meta__"}
    if meta.get("format") != _FORMAT_VERSION or meta.get("class") not in POLICY_CLASSES:
        raise PolicyInputError(
            f"{path} is not a battleground policy file (format {meta.get('format')!r}, "
            f"class {meta.get('class')!r})"
        )
    policy = POLICY_CLASSES[meta["class"]](**meta["params"])
    if meta["fitted"]:
        policy._init_state(int(meta["n_features_in_"]))
        policy.n_updates_ = int(meta["n_updates_"])
        policy.rng_.bit_generator.state = meta["rng_state"]
        for name, value in arrays.items():
            setattr(policy, name, value)
        policy._after_load()
    return policy
