"""Offline A/A on an experiment's own data: its per-user metric values from one scan of the event store
(:meth:`~battleground.storage.events.EventStore.per_user_values`), re-split at random many times
(:func:`battleground.stats.aa_resplits`), and the share of re-splits a test calls significant.

A re-split ignores the arms users were really in: every user of the window (or of one ``arm``) is drawn
into a fresh "treatment" with probability ``share``, so there is no effect by construction and a
calibrated metric is called significant in about ``alpha`` of the re-splits. Heavy tails, a few whales
or a tiny sample push the rate away from ``alpha``, and the team sees it on its own metrics before
trusting a result.

The users are put in a canonical order (sorted by their values) before the re-splits, so the result
depends only on the data and the seed, never on the order in which the engine returned the rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from battleground._suggest import suggest
from battleground.errors import ExperimentError
from battleground.stats import AaResult, Result, aa_resplits

__all__ = ["AaInputError", "OfflineAaResult", "offline_aa"]


class AaInputError(ExperimentError, ValueError):
    """A bad choice of metric, arm or share for an offline A/A."""


@dataclass(frozen=True)
class OfflineAaResult(Result):
    """The offline A/A of one experiment: per metric, the empirical false-positive rate of re-splits.

    Attributes:
        experiment_id, experiment: the experiment whose data were re-split.
        arm: the only arm whose users were re-split (``None``: all analysed users).
        users: users re-split.
        share: the treatment share of each re-split.
        resplits, alpha, seed: as given.
        test: the test applied to each re-split.
        metrics: one :class:`~battleground.stats.AaResult` per metric, in the registry's order.
    """

    experiment_id: int
    experiment: str
    arm: str | None
    users: int
    share: float
    resplits: int
    alpha: float
    seed: int
    test: str
    metrics: tuple[AaResult, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; each metric's p-values summarised as counts per tenth of [0, 1] (flat if calibrated)."""
        out = {k: v for k, v in super().to_dict().items() if k != "metrics"}
        out["metrics"] = [_metric_dict(m) for m in self.metrics]
        return out


def _metric_dict(m: AaResult) -> dict[str, Any]:
    d = {k: v for k, v in m.to_dict().items() if k != "p_values"}
    p = m.p_values[np.isfinite(m.p_values)]
    d["p_value_deciles"] = np.histogram(p, bins=10, range=(0.0, 1.0))[0].astype(int).tolist()
    d["verdict"] = verdict(m)
    if d["false_positive_rate"] != d["false_positive_rate"]:
        d["false_positive_rate"] = None  # NaN is not JSON
    return d


def verdict(m: AaResult) -> str:
    """``calibrated`` (within 3 Monte-Carlo SEs of α), ``too_many_false_positives``, ``conservative``, or
    ``no_variance`` (every user has the same value: no test can run)."""
    rate = m.false_positive_rate
    if rate != rate:
        return "no_variance"
    if m.calibrated:
        return "calibrated"
    return "too_many_false_positives" if rate > m.alpha else "conservative"


def offline_aa(
    client: Any = None,
    experiment: int | str | None = None,
    *,
    metrics: list[str] | tuple[str, ...] | None = None,
    resplits: int = 1000,
    share: float | None = None,
    arm: str | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    start: Any = None,
    end: Any = None,
    multiple_exposures: str = "exclude",
) -> OfflineAaResult:
    """Re-split a registered experiment's users at random ``resplits`` times and report, per metric, the
    share of re-splits Welch's z-test (ratio metrics: the delta method) calls significant at ``alpha``.

    Args:
        client: where the registry and events live (as for :class:`~battleground.experiment.Monitor`).
        experiment: the experiment's id or name.
        metrics: names of the registered metrics to check (default: all).
        share: the treatment share of a re-split (default: the experiment's treatment weight for two
            variants, else 0.5).
        arm: re-split only the users of this arm (e.g. ``"control"``, untouched by any treatment).
        start, end: the window of exposures (as for ``Monitor.result``).

    Example:
        >>> from battleground.experiment.monitoring import offline_aa
        >>> r = offline_aa("./.battleground", "checkout-button", resplits=1000)  # doctest: +SKIP
        >>> [(m.metric, round(m.false_positive_rate, 3)) for m in r.metrics]  # doctest: +SKIP
        [('conversion', 0.049), ('revenue', 0.052)]
    """
    from battleground.experiment._source import _Backend
    from battleground.experiment.monitoring import _to_datetime

    if experiment is None:
        raise AaInputError("experiment is required: give its id or name, e.g. offline_aa(client, 'checkout')")
    backend = _Backend(client, multiple_exposures=multiple_exposures)
    eid = backend.resolve_id(experiment)
    info = backend.experiment(eid)
    _, defs = backend._definitions(info)
    names = [m.name for m in info.metrics]
    if not names:
        raise AaInputError(f"experiment {info.name!r} has no metrics to re-split; register one with --metric")
    chosen = list(metrics) if metrics else names
    for name in chosen:
        if name not in names:
            raise AaInputError(f"metric {name!r} is not registered on {info.name!r}{suggest(name, names)}; "
                               f"its metrics are {names}")
    variant_names = [v.name for v in info.variants]
    if arm is not None and arm not in variant_names:
        raise AaInputError(f"arm {arm!r} is not a variant of {info.name!r}{suggest(arm, variant_names)}; "
                           f"its variants are {variant_names}")
    share = _default_share(info) if share is None else float(share)
    if not (math.isfinite(share) and 0 < share < 1):
        raise AaInputError(f"share must be in (0, 1), got {share!r}; e.g. 0.5 for an even re-split")
    lo = _to_datetime(start, "start_dt")
    hi = _to_datetime(end, "end_dt", end=True)
    values = backend.store_for(eid).per_user_values(eid, defs, lo, hi, multiple_exposures=multiple_exposures)
    keep = np.ones(values.users, dtype=bool) if arm is None else values.variants == arm
    results = []
    for name in chosen:
        j = names.index(name)
        kind = info.metrics[j].kind
        x, y = values.x[keep, j], values.y[keep, j]
        order = np.lexsort((y, x))  # canonical order: the rows' order from the engine does not matter
        results.append(aa_resplits(x[order], denominator=y[order] if kind == "ratio" else None, metric=name,
                                   kind=kind, resplits=resplits, share=share, alpha=alpha, seed=seed))
    return OfflineAaResult(
        experiment_id=eid, experiment=info.name, arm=arm, users=int(keep.sum()), share=share,
        resplits=int(resplits), alpha=float(alpha), seed=int(seed),
        test="Welch z, two-sided (ratio metrics: delta method)", metrics=tuple(results),
    )


def _default_share(info: Any) -> float:
    """The treatment weight of a two-variant experiment (its share of both weights), else 0.5."""
    if len(info.variants) != 2:
        return 0.5
    total = sum(v.weight for v in info.variants)
    treated = sum(v.weight for v in info.variants if not v.is_control)
    return treated / total if total > 0 and 0 < treated < total else 0.5
