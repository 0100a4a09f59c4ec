"""A seeded retail simulator with RetailSynth's structure, vectorised over customers (numpy only).

Each step every customer is offered a coupon level ``a ∈ {0..10}`` (5 % off per level), store-wide or
one level per category, and the simulator draws, in RetailSynth's order:

1. **Discounts.** Each product is on or off promotion by a two-state Markov chain; on promotion its
   price is cut by a product-specific depth. Price paid: ``p_ij = max(1, p0_j·(1 − d_jt)·(1 − c_ic))``.
2. **Redemption.** The coupon is redeemed with probability ``σ(ρ0_i + ρ1·depth)`` (rising with its
   depth); a customer who does not redeem it shops as without one.
3. **Utility.** ``u_ij = α_j + β_x,i·x_j + β_w,i·log p_ij`` with price sensitivity ``β_w,i < 0``
   (heterogeneous across customers), plus Gumbel noise.
4. **Store visit.** ``P_t = θ·P_{t−1} + (1 − θ)·σ(δ0_i + δ1·(SV_it − SV⁰_i) + δ2·coupon_i)``: smoothed,
   with the store inclusive value ``SV = log Σ_c exp(γ0_ic + γ1_i·CV_ic)``.
5. **Product choice** within each category: a softmax over its products (Gumbel-max draw).
6. **Category purchase:** ``σ(γ0_ic + γ1_i·CV_ic)`` with ``CV_ic = log Σ_j∈c exp u_ij`` (the category's
   inclusive value).
7. **Quantity:** ``1 + Poisson(λ_ic·exp(κ·(u_ij − u⁰_ij)))``: more units when the utility is above the
   one at the base price (capped at 3× the rate).

The reward is the customer's revenue that step. Deep coupons raise visits and purchases but cut the
price of every unit, so revenue rises and then falls with the coupon level. The context is
RetailSynth's running averages of each customer's past behaviour plus the current price level.

Example:
    >>> sim = RetailSimulator(n_customers=200, seed=1)
    >>> contexts = sim.reset()
    >>> contexts.shape
    (200, 8)
    >>> result = sim.step([0] * 200)
    >>> bool((result.rewards >= 0).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from battleground.errors import BanditError

__all__ = ["CONTEXT_FEATURES", "RetailSimulator", "SimulatorInputError", "StepResult"]

CONTEXT_FEATURES: tuple[str, ...] = (
    "bias",
    "log_avg_revenue",
    "visit_rate",
    "avg_category_share",
    "avg_promo_depth_bought",
    "avg_units_per_visit",
    "last_visit",
    "store_discount_now",
)


class SimulatorInputError(BanditError, ValueError):
    """A simulator parameter or a vector of actions that cannot be used."""


@dataclass(frozen=True)
class StepResult:
    """What happened to every customer in one step (arrays of length ``n_customers``)."""

    rewards: NDArray[np.float64]
    """Revenue: price paid (after promotion and coupon) × quantity, summed over categories."""
    demand: NDArray[np.int64]
    """Units bought."""
    visits: NDArray[np.bool_]
    categories: NDArray[np.int64]
    """Bitmask of the categories bought (bit c set when category c was bought)."""
    gross: NDArray[np.float64]
    """What the same basket would have cost without the coupon (for the empirical discount)."""
    redeemed: NDArray[np.bool_]
    """Whether the customer redeemed the coupon offered (always False without a coupon)."""


_PS_MEAN, _PS_SD = 1.4, 0.8
_MIN_PRICE = 1.0
_QTY_KAPPA, _QTY_CAP = 0.3, 3.0  # quantity rate × exp(κ·Δutility), at most 3×


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class RetailSimulator:
    """Customers shopping for products in categories, one coupon decision per customer per step.

    Args:
        n_customers: customers simulated side by side (vectorised).
        n_products: products; must be a multiple of ``n_categories``.
        n_categories: product categories (at most 63, they are stored as a bitmask).
        n_coupon_levels: arms; level ``a`` takes ``a·coupon_step`` off every price.
        coupon_step: discount per coupon level (0.05: levels 0..10 are 0–50 % off).
        warmup_steps: coupon-free steps run by :meth:`reset` so that the running averages exist.
        seed: seeds the latent customers and products and every random draw.
    """

    def __init__(
        self,
        n_customers: int = 1000,
        n_products: int = 100,
        n_categories: int = 10,
        n_coupon_levels: int = 11,
        coupon_step: float = 0.05,
        warmup_steps: int = 5,
        seed: int = 0,
    ) -> None:
        self.n_customers = n_customers
        self.n_products = n_products
        self.n_categories = n_categories
        self.n_coupon_levels = n_coupon_levels
        self.coupon_step = coupon_step
        self.warmup_steps = warmup_steps
        self.seed = seed

    # -- parameters and latent structure -------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {
            "n_customers": self.n_customers,
            "n_products": self.n_products,
            "n_categories": self.n_categories,
            "n_coupon_levels": self.n_coupon_levels,
            "coupon_step": self.coupon_step,
            "warmup_steps": self.warmup_steps,
            "seed": self.seed,
        }

    @property
    def n_arms(self) -> int:
        return int(self.n_coupon_levels)

    @property
    def n_features(self) -> int:
        return len(CONTEXT_FEATURES)

    def _validate(self) -> None:
        def positive_int(name: str, value: Any, low: int = 1) -> None:
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise SimulatorInputError(f"{name} must be an integer >= {low}, got {value!r}")

        positive_int("n_customers", self.n_customers)
        positive_int("n_categories", self.n_categories)
        positive_int("n_products", self.n_products)
        positive_int("n_coupon_levels", self.n_coupon_levels, 2)
        positive_int("warmup_steps", self.warmup_steps, 0)
        positive_int("seed", self.seed, 0)
        if self.n_categories > 63:
            raise SimulatorInputError(f"n_categories must be <= 63, got {self.n_categories}")
        if self.n_products % self.n_categories:
            raise SimulatorInputError(
                f"n_products ({self.n_products}) must be a multiple of n_categories "
                f"({self.n_categories}); try n_products={self.n_categories * max(1, self.n_products // self.n_categories)}"
            )
        step = float(self.coupon_step)
        if not (step > 0 and step * (self.n_coupon_levels - 1) < 1):
            raise SimulatorInputError(
                f"coupon_step must be > 0 with coupon_step*(n_coupon_levels-1) < 1, got {self.coupon_step!r}"
            )

    def _draw_world(self) -> None:
        n, c, j = self.n_customers, self.n_categories, self.n_products
        per = j // c
        rng = np.random.default_rng([self.seed, 1])
        # Products: base prices around a category level, quality, Markov promotion chains.
        cat_level = rng.uniform(math.log(2.0), math.log(15.0), size=c)
        self.base_price_ = np.exp(np.repeat(cat_level, per) + rng.normal(0.0, 0.3, size=j))
        self.ref_price_ = np.repeat(np.exp(cat_level), per)
        self.product_intercept_ = rng.normal(0.0, 0.5, size=j)
        self.product_quality_ = rng.normal(0.0, 1.0, size=j)
        self.promo_depth_ = rng.uniform(0.1, 0.35, size=j)
        self.p_promo_on_ = 0.15
        self.p_promo_off_ = 0.5
        # Customers: price sensitivity (the segmenting variable), tastes, habits.
        self.price_sensitivity_ = -np.exp(rng.normal(math.log(_PS_MEAN), _PS_SD, size=n))
        self.quality_taste_ = rng.normal(0.8, 0.3, size=n)
        self.category_intercept_ = rng.normal(-3.6, 0.7, size=(n, c))
        self.category_slope_ = rng.uniform(0.6, 0.9, size=n)
        self.visit_intercept_ = rng.normal(-0.2, 0.7, size=n)
        self.visit_store_value_ = 1.0
        self.visit_marketing_ = 0.5
        self.visit_memory_ = 0.3
        self.quantity_rate_ = rng.uniform(0.1, 0.8, size=(n, c))
        self.redeem_intercept_ = rng.normal(0.0, 0.5, size=n)
        self.redeem_slope_ = 6.0
        # The store inclusive value at base prices without a coupon (the visit model's reference).
        self.promo_on_ = np.zeros(j, dtype=bool)
        self.visit_prob_ = np.zeros(n)
        paid, utility = self._prices_and_utility(np.zeros((n, c)))
        self.store_value_ref_ = np.zeros(n)
        self.store_value_ref_ = self._category_terms(paid, utility)[2]
        self.visit_prob_ = _sigmoid(self.visit_intercept_)

    # -- episode -------------------------------------------------------------------------------
    def reset(self, episode: int | Sequence[int] | None = None) -> NDArray[np.float64]:
        """Draw the world from ``seed``, run the coupon-free warm-up, return the first contexts.

        Args:
            episode: seeds the step-by-step draws (visits, purchases, promotions) separately from
                the world, so trajectories ``episode=0, 1, …`` (or tuples such as ``(3, seed, i)``)
                replay the same customers and products with different luck. ``None`` is the
                simulator's own stream (``seed`` alone).
        """
        self._validate()
        stream = [self.seed, 2]
        if episode is not None:
            parts = [episode] if isinstance(episode, int | np.integer) else list(episode)
            if not parts or any(isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 0 for p in parts):
                raise SimulatorInputError(
                    f"episode must be None, an integer >= 0 or a sequence of them, got {episode!r}"
                )
            stream = [self.seed, 3, *(int(p) for p in parts)]
        self._draw_world()
        n = self.n_customers
        self.rng_ = np.random.default_rng(stream)
        self.promo_on_ = self.rng_.random(self.n_products) < self.p_promo_on_ / (self.p_promo_on_ + self.p_promo_off_)
        self.last_visit_ = np.zeros(n, dtype=bool)
        self.t_ = 0
        self._sum_revenue = np.zeros(n)
        self._sum_visits = np.zeros(n)
        self._sum_cat_share = np.zeros(n)
        self._sum_promo_bought = np.zeros(n)
        self._n_bought_units = np.zeros(n)
        self._sum_units = np.zeros(n)
        for _ in range(int(self.warmup_steps)):
            self.step(np.zeros(n, dtype=np.int64))
        self.t_ = 0
        return self.contexts()

    def _check_actions(self, actions: ArrayLike) -> NDArray[np.int64]:
        if not hasattr(self, "rng_"):
            raise SimulatorInputError("call reset() before step() or contexts()")
        a = np.asarray(actions)
        if a.shape not in ((self.n_customers,), (self.n_customers, self.n_categories)):
            raise SimulatorInputError(
                f"actions must have one coupon level per customer, shape ({self.n_customers},), or one per "
                f"customer and category, shape ({self.n_customers}, {self.n_categories}); got {a.shape}"
            )
        a = a.astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= self.n_coupon_levels):
            raise SimulatorInputError(f"coupon levels must lie in 0..{self.n_coupon_levels - 1}, got {a.min()}..{a.max()}")
        return a

    def _coupon_matrix(self, a: NDArray[np.int64]) -> NDArray[np.float64]:
        """Coupon discount per (customer, category): a store-wide level is the same in every category."""
        d = a.astype(np.float64) * float(self.coupon_step)
        return np.repeat(d[:, None], self.n_categories, axis=1) if d.ndim == 1 else d

    def _redemption_probability(self, coupon: NDArray[np.float64]) -> NDArray[np.float64]:
        """P(a customer redeems the coupon offered): rises with its mean discount; 0 without a coupon."""
        depth = coupon.mean(axis=1)
        return np.where(depth > 0, _sigmoid(self.redeem_intercept_ + self.redeem_slope_ * depth), 0.0)

    def _prices_and_utility(self, coupon: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Prices paid ``p_ij ≥ 1`` and utilities ``α_j + β_x,i·x_j + β_w,i·log p_ij`` (RetailSynth's log price).

        ``coupon`` is the discount per (customer, category). Prices paid are ≥ 1 (``_MIN_PRICE``), so
        ``log p ≥ 0`` and a more price-sensitive customer (``β_w`` more negative) always has lower
        utility (with ``log(p/ref)`` the most sensitive quartile spent the most); the intercept adds
        back the average customer's ``log ref``.
        """
        per = self.n_products // self.n_categories
        shelf = self.base_price_ * np.where(self.promo_on_, 1.0 - self.promo_depth_, 1.0)
        paid = np.maximum(shelf[None, :] * (1.0 - np.repeat(coupon, per, axis=1)), _MIN_PRICE)
        utility = (
            (self.product_intercept_ + _PS_MEAN * np.log(self.ref_price_))[None, :]
            + self.quality_taste_[:, None] * self.product_quality_[None, :]
            + self.price_sensitivity_[:, None] * np.log(paid)
        )
        return paid, utility

    def _quantity_rate(self, paid: NDArray[np.float64]) -> NDArray[np.float64]:
        """Poisson rate of the extra units of each product, (n, J): ``λ_ic·exp(κ·(u_ij − u⁰_ij))`` with
        ``u⁰`` the utility at the base price, i.e. ``λ_ic·(p_ij / p⁰_j)^(κ·β_w,i)`` (capped at 3×)."""
        per = self.n_products // self.n_categories
        gain = np.exp(_QTY_KAPPA * self.price_sensitivity_[:, None] * np.log(paid / np.maximum(self.base_price_, _MIN_PRICE)))
        return np.repeat(self.quantity_rate_, per, axis=1) * np.minimum(gain, _QTY_CAP)

    def _category_terms(self, paid: NDArray[np.float64], utility: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        """Per category: softmax choice weights (n, C, per), purchase probability (n, C) and the store
        inclusive value ``log Σ_c exp(γ0_ic + γ1_i·CV_ic)`` (n,)."""
        n, c = self.n_customers, self.n_categories
        u = utility.reshape(n, c, -1)
        top = u.max(axis=2, keepdims=True)
        expu = np.exp(u - top)
        total = expu.sum(axis=2)
        inclusive = np.log(total) + top[:, :, 0]
        logit = self.category_intercept_ + self.category_slope_[:, None] * inclusive
        m = logit.max(axis=1)
        store = m + np.log(np.exp(logit - m[:, None]).sum(axis=1))
        return expu / total[:, :, None], _sigmoid(logit), store

    def _visit_probability(self, store_value: NDArray[np.float64], coupon: NDArray[np.float64]) -> NDArray[np.float64]:
        """RetailSynth's smoothed visit probability ``θ·P_{t−1} + (1 − θ)·σ(δ0_i + δ1·(SV_it − SV⁰_i) + δ2·coupon)``
        with ``SV`` the store inclusive value (``SV⁰``: at base prices, no coupon)."""
        fresh = _sigmoid(self.visit_intercept_ + self.visit_store_value_ * (store_value - self.store_value_ref_)
                         + self.visit_marketing_ * coupon.mean(axis=1))
        return self.visit_memory_ * self.visit_prob_ + (1.0 - self.visit_memory_) * fresh

    def _basket(self, coupon: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Expected revenue given a visit and the visit probability, both (n,), under ``coupon``."""
        n, c = self.n_customers, self.n_categories
        paid, utility = self._prices_and_utility(coupon)
        weights, p_cat, store = self._category_terms(paid, utility)
        units = paid * (1.0 + self._quantity_rate(paid))
        basket = (p_cat * (weights * units.reshape(n, c, -1)).sum(axis=2)).sum(axis=1)
        return basket, self._visit_probability(store, coupon)

    def expected_revenue(self) -> NDArray[np.float64]:
        """The exact expected revenue of every customer under every store-wide coupon level in the
        current state, shape (n_customers, n_arms): the ground truth for off-policy evaluation. A
        coupon is redeemed with probability ``r``; a customer who does not redeem it shops as without one."""
        n = self.n_customers
        out = np.empty((n, self.n_arms))
        basket0, visit0 = self._basket(np.zeros((n, self.n_categories)))
        out[:, 0] = visit0 * basket0
        for level in range(1, self.n_arms):
            coupon = self._coupon_matrix(np.full(n, level, dtype=np.int64))
            basket, visit = self._basket(coupon)
            r = self._redemption_probability(coupon)
            out[:, level] = r * visit * basket + (1.0 - r) * out[:, 0]
        return out

    def step(self, actions: ArrayLike) -> StepResult:
        """Apply one coupon level per customer (or one per customer and category), simulate the step,
        advance the state."""
        a = self._check_actions(actions)
        rng = self.rng_
        n, c = self.n_customers, self.n_categories
        per = self.n_products // c
        offered = self._coupon_matrix(a)
        redeemed = rng.random(n) < self._redemption_probability(offered)
        coupon = offered * redeemed[:, None]  # who does not redeem shops as without a coupon
        paid, utility = self._prices_and_utility(coupon)
        _, p_cat, store = self._category_terms(paid, utility)
        visit_p = self._visit_probability(store, coupon)
        visits = rng.random(n) < visit_p
        u = utility.reshape(n, c, per)
        bought = (rng.random((n, c)) < p_cat) & visits[:, None]
        choice = (u + rng.gumbel(size=u.shape)).argmax(axis=2)  # (n, c) index within category
        product = choice + np.arange(c)[None, :] * per
        rows = np.arange(n)[:, None]
        quantity = np.where(bought, 1 + rng.poisson(self._quantity_rate(paid)[rows, product]), 0)
        shelf = np.maximum(self.base_price_ * np.where(self.promo_on_, 1.0 - self.promo_depth_, 1.0), _MIN_PRICE)
        gross = (quantity * shelf[product]).sum(axis=1)
        revenue = (quantity * paid[rows, product]).sum(axis=1)
        demand = quantity.sum(axis=1)
        cats = (bought * (np.int64(1) << np.arange(c, dtype=np.int64))[None, :]).sum(axis=1)
        promo_bought = (quantity * np.where(self.promo_on_, self.promo_depth_, 0.0)[product]).sum(axis=1)
        # Running averages (RetailSynth's context).
        self._sum_revenue += revenue
        self._sum_visits += visits
        self._sum_cat_share += bought.sum(axis=1) / c
        self._sum_promo_bought += promo_bought
        self._n_bought_units += demand
        self._sum_units += demand
        self.last_visit_ = visits
        self.visit_prob_ = visit_p
        # Promotions move on (Markov on/off).
        flip = rng.random(self.n_products)
        self.promo_on_ = np.where(self.promo_on_, flip >= self.p_promo_off_, flip < self.p_promo_on_)
        self.t_ += 1
        return StepResult(revenue, demand.astype(np.int64), visits, cats.astype(np.int64), gross, redeemed)

    @property
    def steps_seen(self) -> int:
        return int(self.warmup_steps) + int(self.t_)

    def contexts(self) -> NDArray[np.float64]:
        """Per-customer running averages and the current store discount, (n_customers, 8)."""
        if not hasattr(self, "rng_"):
            raise SimulatorInputError("call reset() before step() or contexts()")
        steps = max(self.steps_seen, 1)
        visits = np.maximum(self._sum_visits, 1.0)
        store_discount = float(np.mean(np.where(self.promo_on_, self.promo_depth_, 0.0)))
        return np.column_stack(
            [
                np.ones(self.n_customers),
                np.log1p(self._sum_revenue / steps),
                self._sum_visits / steps,
                self._sum_cat_share / visits,
                self._sum_promo_bought / np.maximum(self._n_bought_units, 1.0),
                self._sum_units / visits / 5.0,
                self.last_visit_.astype(np.float64),
                np.full(self.n_customers, store_discount * 5.0),
            ]
        )

    def customers(self) -> dict[str, NDArray[Any]]:
        """The latent customer table (for segmentation): id and price sensitivity ``−β_w``."""
        if not hasattr(self, "price_sensitivity_"):
            self._validate()
            self._draw_world()
        return {
            "customer": np.arange(self.n_customers),
            "price_sensitivity": -self.price_sensitivity_,
        }
