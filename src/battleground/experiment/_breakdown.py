"""Dimension breakdowns of an experiment: every metric's effect per slice of a declared user attribute,
from the per-stratum sums of the one SQL scan (``EventStore.strata_sums``, the post-stratification
query grouped by one attribute) to :func:`battleground.stats.breakdown_test`.

An experiment declares the attributes it may be broken down by in its metadata, ``breakdown_by`` (an
attribute name or a list of up to 8); an attribute is carried as for ``post_stratify_by``: events of
type ``a`` whose ``value`` codes the user's slice, logged at or before the user's first exposure.
Attributes declared for post-stratification may be broken down by too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from battleground._suggest import suggest
from battleground.experiment._metric_sums import SourceSettingError, _arm_summary, post_stratify_by
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

BREAKDOWN_KEY = "breakdown_by"


def breakdown_by(metadata: Any) -> tuple[str, ...]:
    """The attributes an experiment's metadata declares for breakdowns (``()`` when none).

    Example:
        >>> breakdown_by({"breakdown_by": ["country", "platform"]}), breakdown_by({"breakdown_by": "new_user"})
        (('country', 'platform'), ('new_user',))
    """
    raw = metadata.get(BREAKDOWN_KEY) if isinstance(metadata, Mapping) else None
    if raw is None:
        return ()
    names = [raw] if isinstance(raw, str) else raw
    if (not isinstance(names, list | tuple) or not names or len(names) > 8
            or not all(isinstance(a, str) and a.strip() and a != "exposure" for a in names)
            or len(set(names)) != len(names)):
        raise SourceSettingError(
            f"metadata {BREAKDOWN_KEY} must be an attribute name or a list of 1 to 8 distinct names "
            f"(event types other than 'exposure' whose value codes the user's slice), got {raw!r}; e.g. "
            f'{{"{BREAKDOWN_KEY}": ["country", "platform"]}}'
        )
    return tuple(str(a) for a in names)


def breakdown_attributes(metadata: Any) -> tuple[str, ...]:
    """Every attribute an experiment may be broken down by: ``breakdown_by`` then ``post_stratify_by``."""
    return tuple(dict.fromkeys((*breakdown_by(metadata), *post_stratify_by(metadata))))


def check_breakdown_attribute(metadata: Any, attribute: str) -> str:
    """``attribute`` if the experiment declares it, else an error naming the declared ones."""
    declared = breakdown_attributes(metadata)
    if attribute not in declared:
        raise SourceSettingError(
            f"by={attribute!r} is not an attribute this experiment declares{suggest(attribute, declared)}; "
            f"declared: {list(declared)!r}; add it to the experiment's metadata, e.g. "
            f'{{"{BREAKDOWN_KEY}": [{attribute!r}]}}'
        )
    return attribute


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
        slices = {slice_label(key[0]): {s.variant: _arm_summary(s, kind) for s in sums.metrics[j] if s.users > 0}
                  for key, sums in strata}
        if not any(control in arms for arms in slices.values()):
            continue
        result = breakdown_test(slices, control=control, relative=relative, proportion=kind == "proportion",
                                correction=correction, alpha=alpha)
        out.append(MetricBreakdown(name, kind, result))
    return tuple(out)
