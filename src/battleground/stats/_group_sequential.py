"""Group-sequential tests with alpha spending (Lan & DeMets 1983), as spotify-confidence and gsDesign.

The planned sample is the information 1; a look at information fraction t (users so far / planned)
may spend α(t) of the type-I error in total, with the spending function

    O'Brien–Fleming type:  α(t) = 2 − 2Φ(z₁₋α/₂ / √t)        (two-sided; one-sided: 1 − Φ(z₁₋α / √t))
    Pocock type:           α(t) = α · ln(1 + (e − 1) t)
    power family:          α(t) = α · t^ρ                    (spotify-confidence's default ρ = 2)

The z-boundary cₖ of look k solves P(|Z₁| < c₁, …, |Zₖ₋₁| < cₖ₋₁, |Zₖ| ≥ cₖ) = α(tₖ) − α(tₖ₋₁) under H0,
where Zₖ = Sₖ/√tₖ and S is a Brownian motion (independent increments N(0, tₖ − tₖ₋₁)). The
probability is computed by the recursive numerical integration of Armitage, McPherson & Rowe (1969)
on a fine grid (as gsDesign), so unplanned looks are fine: the bounds depend only on the fractions seen.
After the planned information (t ≥ 1) nothing is left to spend: later looks have an infinite bound.

At each look the **repeated confidence interval** is estimate ± cₖ·SE (Jennison & Turnbull 1989),
intersected over looks; it excludes 0 exactly when a boundary has been crossed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from battleground.stats._base import Result, StatsInputError, check_alpha, check_choice, lazy_module

_st = lazy_module("scipy.stats")
_opt = lazy_module("scipy.optimize")
_sp = lazy_module("scipy.special")
_SQRT2PI = math.sqrt(2.0 * math.pi)

__all__ = [
    "SPENDING",
    "GroupSequentialBounds",
    "GroupSequentialResult",
    "alpha_spent",
    "group_sequential_bounds",
    "group_sequential_test",
]

SPENDING = ("obrien_fleming", "pocock", "power")
_GRID = 601  # grid points per look: the bounds are converged to 1e-9 (tests compare 2401)


def alpha_spent(t: Any, alpha: float = 0.05, spending: str = "obrien_fleming", *, rho: float = 2.0,
                two_sided: bool = True) -> np.ndarray:
    """Cumulative type-I error α(t) allowed by information fraction ``t`` (clipped to [0, 1])."""
    alpha = check_alpha(alpha)
    check_choice("spending", spending, SPENDING)
    tt = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        if spending == "obrien_fleming":
            z = _st.norm.isf(alpha / 2 if two_sided else alpha)
            tail = _st.norm.sf(z / np.sqrt(tt))
            out = 2.0 * tail if two_sided else tail
        elif spending == "pocock":
            out = alpha * np.log1p((math.e - 1.0) * tt)
        else:
            if not (math.isfinite(rho) and rho > 0):
                raise StatsInputError(f"rho of the power spending function must be > 0, got {rho!r}")
            out = alpha * tt**rho
    return np.where(tt > 0, np.minimum(out, alpha), 0.0)


@dataclass(frozen=True)
class GroupSequentialBounds(Result):
    """z-boundaries per look and the nominal (per-look) level each one stands for."""

    information_fractions: tuple[float, ...]
    z_bounds: tuple[float, ...]
    nominal_alpha: tuple[float, ...]
    cumulative_alpha: tuple[float, ...]
    spending: str
    alpha: float
    two_sided: bool


def _simpson(m: int) -> np.ndarray:
    w = np.ones(m)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w / 3.0


def group_sequential_bounds(
    information_fractions: Any,
    *,
    alpha: float = 0.05,
    spending: str = "obrien_fleming",
    rho: float = 2.0,
    two_sided: bool = True,
) -> GroupSequentialBounds:
    """Lan–DeMets boundaries for looks at increasing information fractions in (0, 1] (larger values
    are treated as 1; a look that adds no information gets an infinite bound).

    Example (α·t², 4 equal looks; spotify-confidence gives 2.9552, 2.5593, 2.3008, 2.0919 on its coarser grid):
        >>> b = group_sequential_bounds([0.25, 0.5, 0.75, 1.0], spending="power")
        >>> [round(z, 4) for z in b.z_bounds]
        [2.9552, 2.5594, 2.3009, 2.092]
    """
    alpha = check_alpha(alpha)
    t = np.asarray(information_fractions, dtype=float).ravel()
    if t.size == 0 or not np.isfinite(t).all() or (t <= 0).any():
        raise StatsInputError(
            f"information_fractions must be finite and > 0, got {t.tolist()[:5]!r} "
            "(users so far / planned users per arm)"
        )
    if (np.diff(t) < 0).any():
        raise StatsInputError(f"information_fractions must not decrease, got {t.tolist()[:8]!r}")
    tc = np.minimum(t, 1.0)
    cum = alpha_spent(tc, alpha, spending, rho=rho, two_sided=two_sided)
    norm = _st.norm
    ndtr = _sp.ndtr
    bounds: list[float] = []
    nominal: list[float] = []
    grid: np.ndarray | None = None  # S-values of the continuation region at the last finite look
    dens: np.ndarray | None = None  # sub-density of S there (Simpson-weighted later)
    t_prev, spent_prev = 0.0, 0.0
    for tk, ck in zip(tc, cum, strict=True):
        spend = float(ck - spent_prev)
        dt = tk - t_prev
        if dt <= 1e-12 or spend <= 1e-15:
            bounds.append(math.inf)
            nominal.append(0.0)
            continue
        sd = math.sqrt(dt)
        if dens is None or grid is None:
            # first informative look: closed form
            b = float(norm.isf(spend / 2 if two_sided else spend)) * math.sqrt(tk)
        else:
            wts = dens * _simpson(grid.size) * (grid[1] - grid[0])

            def cross(b: float, wts: np.ndarray = wts, grid: np.ndarray = grid, sd: float = sd,
                      spend: float = spend) -> float:
                up = ndtr((grid - b) / sd)
                lo = ndtr((-b - grid) / sd) if two_sided else 0.0
                return float((wts * (up + lo)).sum()) - spend

            hi = 40.0 * math.sqrt(tk)
            if cross(1e-9) <= 0:  # everything left is less than what may be spent
                b = 0.0
            else:
                b = float(_opt.brentq(cross, 1e-9, hi, xtol=1e-12)) if cross(hi) < 0 else hi
        z = b / math.sqrt(tk)
        bounds.append(z)
        nominal.append(float(norm.sf(z) * (2 if two_sided else 1)))
        # the sub-density of S on the continuation region (−b, b) (one-sided: (−10√t, b))
        low = -b if two_sided else -10.0 * math.sqrt(tk)
        new = np.linspace(low, b, _GRID)
        if dens is None or grid is None:
            d = norm.pdf(new / math.sqrt(tk)) / math.sqrt(tk)
        else:
            wts = dens * _simpson(grid.size) * (grid[1] - grid[0])
            d = np.exp(-0.5 * ((new[:, None] - grid[None, :]) / sd) ** 2) @ wts / (sd * _SQRT2PI)
        grid, dens = new, d
        t_prev, spent_prev = tk, float(ck)
    return GroupSequentialBounds(
        information_fractions=tuple(t.tolist()), z_bounds=tuple(bounds), nominal_alpha=tuple(nominal),
        cumulative_alpha=tuple(cum.tolist()), spending=spending, alpha=alpha, two_sided=two_sided,
    )


@dataclass(frozen=True)
class GroupSequentialResult(Result):
    """A group-sequential test at its latest look.

    Attributes:
        estimate, se, z: the effect, its standard error and z = estimate / se at the latest look.
        z_bound, nominal_alpha: the latest look's boundary and the per-look level it stands for.
        p_value: the nominal two-sided p of the latest look rescaled to the look's level,
            ``p · α / nominal_alpha`` (running minimum over looks, capped at 1): it is ≤ α exactly when
            a boundary has been crossed, so the decision rule reads it like any other p-value.
        ci_lower, ci_upper: the repeated confidence interval, intersected over looks.
        boundary_crossed: a boundary was crossed at this or an earlier look (the test may stop).
    """

    method: str
    spending: str
    estimate: float
    se: float
    z: float
    information_fraction: float
    z_bound: float
    nominal_alpha: float
    p_value: float
    ci_lower: float
    ci_upper: float
    alpha: float
    boundary_crossed: bool
    looks: int


def group_sequential_test(
    estimates: Any,
    ses: Any,
    information_fractions: Any,
    *,
    alpha: float = 0.05,
    spending: str = "obrien_fleming",
    rho: float = 2.0,
) -> GroupSequentialResult:
    """Two-sided group-sequential test over the looks so far (one estimate, SE and fraction per look)."""
    est = np.asarray(estimates, dtype=float).ravel()
    se = np.asarray(ses, dtype=float).ravel()
    if est.shape != se.shape or est.size != np.size(information_fractions):
        raise StatsInputError(
            "estimates, ses and information_fractions need one entry per look, got sizes "
            f"{est.size}, {se.size}, {np.size(information_fractions)}"
        )
    if not (np.isfinite(est).all() and np.isfinite(se).all() and (se > 0).all()):
        raise StatsInputError("every look needs a finite estimate and a finite SE > 0")
    b = group_sequential_bounds(information_fractions, alpha=alpha, spending=spending, rho=rho)
    c = np.asarray(b.z_bounds)
    nom = np.asarray(b.nominal_alpha)
    z = est / se
    p_nom = 2.0 * _st.norm.sf(np.abs(z))
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(nom > 0, np.minimum(1.0, p_nom * alpha / nom), 1.0)
        half = np.where(np.isfinite(c), c * se, np.inf)
    p_run = float(np.minimum.accumulate(scaled)[-1])
    lo = float(np.maximum.accumulate(est - half)[-1])
    hi = float(np.minimum.accumulate(est + half)[-1])
    crossed = bool((np.abs(z) >= c).any())
    return GroupSequentialResult(
        method=f"gst_{spending}", spending=spending, estimate=float(est[-1]), se=float(se[-1]),
        z=float(z[-1]), information_fraction=float(b.information_fractions[-1]), z_bound=float(c[-1]),
        nominal_alpha=float(nom[-1]), p_value=p_run, ci_lower=lo, ci_upper=hi, alpha=b.alpha,
        boundary_crossed=crossed, looks=int(est.size),
    )
