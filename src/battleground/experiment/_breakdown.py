"""Dimension breakdowns of an experiment: every metric's effect per slice of a declared user attribute,
from the per-stratum sums of the one SQL scan (``EventStore.strata_sums``, the post-stratification
query grouped by one attribute) to :func:`battleground.stats.breakdown_test`.

An experiment declares the attributes it may be broken down by in its metadata, ``breakdown_by`` (an
attribute name or a list of up to 8); an attribute is carried as for ``post_stratify_by``: events of
type ``a`` whose ``value`` codes the user's slice, logged at or before the user's first exposure.
Attributes declared for post-stratification may be broken down by too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from battleground.experiment._metric_sums import (
    BREAKDOWN_KEY,
    _arm_summary,
    breakdown_attributes,
    breakdown_by,
    check_breakdown_attribute,
)
from battleground.stats import BreakdownResult, Result
from battleground.storage.sums import ExperimentSums

__all__ = [
    "BREAKDOWN_KEY",
    "ExperimentBreakdown",
    "MetricBreakdown",
    "breakdown_attributes",
    "breakdown_by",
    "breakdown_metrics",
    "check_breakdown_attribute",
    "slice_label",
]

def slice_label(value: float | None) -> str:
    """A slice's label: its attribute code (``"(none)"`` for users without the attribute)."""
    return "(none)" if value is None else format(value, "g")


@dataclass(frozen=True)
class MetricBreakdown(Result):
    """One metric's breakdown (``result``: per slice × treatment variant)."""

    metric: str
    kind: str
    result: BreakdownResult


@dataclass(frozen=True)
class ExperimentBreakdown(Result):
    """Every metric of an experiment broken down by ``attribute`` (slices labelled by its codes).

    ``users`` maps each slice to its exposed users (all arms); ``flagged`` lists (metric, slice, variant)
    whose effect differs from the rest's after correction."""

    experiment_id: int
    attribute: str
    correction: str
    alpha: float
    relative: bool
    users: dict[str, float]
    metrics: tuple[MetricBreakdown, ...]

    @property
    def flagged(self) -> tuple[tuple[str, str, str], ...]:
        return tuple((m.metric, s.slice, s.variant) for m in self.metrics for s in m.result.flagged)

    def slice_records(self) -> list[dict[str, Any]]:
        """One record per metric × slice × treatment variant (what the CLI and the JSON API list)."""
        return [s.to_dict() | {"metric": m.metric} for m in self.metrics for s in m.result.slices]

    def record(self) -> dict[str, Any]:
        """The breakdown as one JSON-ready record: its settings, the slices' users and every slice row."""
        return {"experiment_id": self.experiment_id, "attribute": self.attribute, "correction": self.correction,
                "alpha": self.alpha, "relative": self.relative, "users": dict(self.users),
                "slices": self.slice_records()}


def breakdown_metrics(
    metrics: Sequence[tuple[str, str]], strata: Sequence[tuple[Sequence[float | None], ExperimentSums]], *,
    control: str, relative: bool = True, correction: str = "holm", alpha: float = 0.05,
) -> tuple[MetricBreakdown, ...]:
    """Each metric's :func:`battleground.stats.breakdown_test` from per-slice sums of one attribute
    (:meth:`battleground.storage.events.EventStore.strata_sums`); ``metrics`` are ``(name, kind)`` in
    the sums' order. Arms without users in a slice are left out of it (the slice is then not tested)."""
    from battleground.stats import breakdown_test

    out = []
    for j, (name, kind) in enumerate(metrics):
        if kind == "quantile":
            continue  # slices of a quantile need their own order statistics (not offered per slice yet)
        slices = {slice_label(key[0]): {s.variant: _arm_summary(s, kind) for s in sums.metrics[j] if s.users > 0}
                  for key, sums in strata}
        if not any(control in arms for arms in slices.values()):
            continue
        result = breakdown_test(slices, control=control, relative=relative, proportion=kind == "proportion",
                                correction=correction, alpha=alpha)
        out.append(MetricBreakdown(name, kind, result))
    return tuple(out)
