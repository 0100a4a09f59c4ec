"""Thompson sampling: one posterior draw of the coefficients, shared by every scoring path (the
record API's ``score_linear_model``, the array fast path and GLMix)."""

from __future__ import annotations

import numpy as np

from battleground.incremental._records import IncrementalInputError


def check_exploration(exploration: float, name: str = "exploration") -> None:
    """``exploration`` (the scale c of the draw's variance) must be a finite number >= 0."""
    if not (np.isfinite(exploration) and exploration >= 0):
        raise IncrementalInputError(f"{name} must be a finite number >= 0, got {exploration!r}")


def thompson_draw(mean: np.ndarray, variance: np.ndarray, exploration: float,
                  random_state: int | np.random.Generator | None, *, name: str = "exploration") -> np.ndarray:
    """One posterior draw ``mean + sqrt(exploration · variance) · z``, z standard normal of ``mean``'s
    shape (``mean`` itself when exploration is 0)."""
    check_exploration(exploration, name)
    if exploration == 0:
        return mean
    rng = np.random.default_rng(random_state)
    return mean + rng.standard_normal(mean.shape) * np.sqrt(exploration * variance)


def diagonal_of_inverse(H: np.ndarray) -> np.ndarray:
    """diag(H⁻¹) of a symmetric positive definite H: the marginal posterior variances."""
    from scipy.linalg import cho_factor, cho_solve

    return np.diag(cho_solve(cho_factor(H), np.eye(H.shape[0])))
