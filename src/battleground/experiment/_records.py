"""Frozen snapshots of registry rows, and the registry's errors.

The registry hands these out instead of live ORM objects, so a caller can keep them after the session
closes and can never change stored data by accident.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from battleground.errors import ExperimentError

__all__ = [
    "BUCKETS",
    "DEFAULT_PROJECT",
    "DESIGNS",
    "KINDS",
    "STATUSES",
    "AuditEntry",
    "EndConditions",
    "ExperimentNotFoundError",
    "ExperimentRecord",
    "GuardrailMargin",
    "HoldoutRef",
    "MarginError",
    "MetricRecord",
    "RegistryError",
    "RegistryRuleError",
    "VariantRecord",
]

STATUSES = ("draft", "running", "stopped", "archived")
# sequential designs (EndConditions.design); the group-sequential ones need a target sample size
DESIGNS = ("msprt", "one_sided", "obrien_fleming", "pocock")
GROUP_SEQUENTIAL = ("obrien_fleming", "pocock")
METRIC_KINDS = ("proportion", "mean", "ratio", "quantile")
DIRECTIONS = ("increase", "decrease")
# layers and holdouts split units into this many buckets (``experiment/assign.py`` documents the hash)
BUCKETS = 10_000
# what a registry row is: an ordinary experiment, or a project's holdout (variants "holdout" / "shipped")
KINDS = ("experiment", "holdout")
DEFAULT_PROJECT = "default"


class RegistryError(ExperimentError, ValueError):
    """Bad input to the registry (a ``ValueError``: the CLI prints it as one red line)."""


class RegistryRuleError(RegistryError):
    """A registry rule was broken; ``rule`` names it and ``value`` is the offending value.

    Nothing was changed in the registry when this is raised.
    """

    def __init__(self, rule: str, value: Any, message: str) -> None:
        super().__init__(f"rule '{rule}' broken by {value!r}: {message}")
        self.rule = rule
        self.value = value


class ExperimentNotFoundError(ExperimentError, LookupError):
    """No experiment has the given id or name."""


@dataclass(frozen=True)
class VariantRecord:
    name: str
    weight: float
    is_control: bool


@dataclass(frozen=True)
class MetricRecord:
    """How a metric is computed from events (see ``docs/experiments-data.md``).

    Attributes:
        kind: ``proportion`` (user has ≥1 numerator event), ``mean`` (Σ value per user, count when the
            value is empty), ``ratio`` (Σ numerator / Σ denominator over users, e.g. CTR) or
            ``quantile`` (the ``quantile``-level quantile over users of the per-user Σ value, e.g. p90 of
            order value; Deng, Knoblich and Yu 2018).
        numerator, denominator: event types; ``denominator`` only for ratio metrics.
        direction: ``increase`` when higher is better, ``decrease`` otherwise.
        guardrail: a metric that must not get worse; primary: the decision metric.
        conversion_window_days: count a user's events in [first exposure, + this many days); ``None``:
            until the end of the analysis window. Events before the first exposure never count.
        cuped_lookback_days: the CUPED covariate is this metric over the days before the user's first
            exposure (default 14); ``None`` or 0: no pre-period covariate.
        margin: for a guardrail, the largest harm still called non-inferior (``None``: none declared,
            the guardrail is then only checked for significant deterioration).
        margin_relative: ``margin`` is a share of the control value (0.01 = 1 %), else absolute.
        cap_quantile: winsorise (GrowthBook's "capping"): each user's value (and pre-period covariate)
            is capped at this quantile over the experiment's users, computed in the scan; e.g. 0.999
            (Statsig's suggestion). ``None`` (default): no cap. Not for proportions.
        cap_value: winsorise at this fixed value instead (> 0).
        quantile: the level of a ``quantile`` metric in (0, 1), e.g. 0.9 for p90 (``None`` otherwise).
    """

    name: str
    kind: str
    numerator: str
    denominator: str | None = None
    direction: str = "increase"
    guardrail: bool = False
    primary: bool = False
    conversion_window_days: float | None = None
    cuped_lookback_days: float | None = 14.0
    margin: float | None = None
    margin_relative: bool = True
    cap_quantile: float | None = None
    cap_value: float | None = None
    quantile: float | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "increase"


@dataclass(frozen=True)
class EndConditions:
    """When an experiment may stop: any condition met is enough (``battleground experiment check``).

    Attributes:
        target_sample_size: users per variant.
        max_duration_days: days since the experiment started.
        sequential: stop early when the always-valid (mSPRT) test of the primary metric is significant.
        design: the sequential design (:data:`DESIGNS`): "msprt" (two-sided mixture SPRT, default),
            "one_sided" (gbstats' one-sided confidence sequence in each metric's good direction),
            "obrien_fleming" or "pocock" (group-sequential, Lan–DeMets alpha spending over the
            information fraction users / ``target_sample_size``). Any design but "msprt" is sequential.
        mde: the planned minimum detectable effect (relative, e.g. 0.05), for mid-experiment power.
    """

    target_sample_size: int | None = None
    max_duration_days: float | None = None
    sequential: bool = False
    design: str = "msprt"
    mde: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HoldoutRef:
    """The project holdout an experiment sits behind: units whose holdout bucket (the bucket of
    ``XXH64(f"{salt}:{unit}")``, see :mod:`battleground.experiment.assign`) is below ``buckets`` never
    get one of its variants.

    Attributes:
        id, name: the holdout's registry id and name (a holdout is a registry row of kind "holdout").
        salt: the holdout's hash namespace.
        buckets: how many of the :data:`BUCKETS` buckets are held out (fraction × 10,000).
    """

    id: int
    name: str
    salt: str
    buckets: int

    @property
    def fraction(self) -> float:
        return self.buckets / BUCKETS


@dataclass(frozen=True)
class ExperimentRecord:
    """One registered experiment with its variants, metrics and end conditions.

    Attributes (beyond the obvious ones):
        project: the project it belongs to; a project's running holdout keeps its units out of every
            experiment of the project started while the holdout runs.
        layer: the layer (namespace) of mutually exclusive experiments it is in, or ``None``.
        layer_range: ``(start, end)``, the half-open range of the layer's buckets in [0, 10000) it owns
            (``None`` without a layer). For a holdout (``kind == "holdout"``): the held-out buckets
            ``(0, fraction × 10000)`` of the holdout's own namespace (its salt).
        kind: "experiment" or "holdout" (:data:`KINDS`).
        holdout: the holdout it was started behind (linked when it starts), or ``None``.
    """

    id: int
    name: str
    status: str
    salt: str
    traffic: float
    variants: tuple[VariantRecord, ...]
    metrics: tuple[MetricRecord, ...]
    end_conditions: EndConditions
    description: str | None = None
    hypothesis: str | None = None
    owner: str | None = None
    start_at: dt.datetime | None = None
    end_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    stopped_at: dt.datetime | None = None
    archived_at: dt.datetime | None = None
    stop_reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    project: str = DEFAULT_PROJECT
    layer: str | None = None
    layer_range: tuple[int, int] | None = None
    kind: str = "experiment"
    holdout: HoldoutRef | None = None

    @property
    def is_holdout(self) -> bool:
        return self.kind == "holdout"

    @property
    def holdout_fraction(self) -> float | None:
        """For a holdout, the share of the project's units it holds out; ``None`` for an experiment."""
        if not self.is_holdout or self.layer_range is None:
            return None
        return (self.layer_range[1] - self.layer_range[0]) / BUCKETS

    @property
    def control(self) -> str:
        return next(v.name for v in self.variants if v.is_control)

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    def metric(self, name: str) -> MetricRecord:
        for m in self.metrics:
            if m.name == name:
                return m
        raise ExperimentNotFoundError(
            f"experiment {self.name!r} (id {self.id}) has no metric {name!r}; "
            f"its metrics are {[m.name for m in self.metrics]}"
        )

    def window(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The time window events must fall in: from the planned (else actual) start to the planned end
        or the stop, whichever is earlier; ``None`` means open."""
        start = self.start_at or self.started_at
        ends = [t for t in (self.end_at, self.stopped_at) if t is not None]
        return start, (min(ends) if ends else None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["control"] = self.control
        return d


@dataclass(frozen=True)
class AuditEntry:
    id: int
    experiment_id: int
    at: dt.datetime
    actor: str | None
    action: str
    detail: dict[str, Any]


class MarginError(ExperimentError, ValueError):
    """A guardrail margin that cannot be used; the message names the metric, the value and the fix."""


@dataclass(frozen=True)
class GuardrailMargin:
    """The largest harm a guardrail may suffer and still count as non-inferior.

    Attributes:
        margin: a positive number: a share of the control value when ``relative`` (0.01 = 1 %), else
            in the metric's own unit.
        relative: whether ``margin`` is relative to the control value.
    """

    margin: float
    relative: bool = True

    @classmethod
    def checked(cls, metric: str, margin: Any, relative: Any = True) -> GuardrailMargin:
        """A margin after validation (finite, > 0; relative ones < 1)."""
        if isinstance(margin, bool) or not isinstance(margin, int | float):
            raise MarginError(
                f"margin of guardrail {metric!r} must be a number, got {margin!r}; e.g. margin=0.01 (1 %)"
            )
        m = float(margin)
        if not (math.isfinite(m) and m > 0):
            raise MarginError(
                f"margin of guardrail {metric!r} must be a finite number > 0 (the largest harm tolerated), "
                f"got {margin!r}; e.g. margin=0.01 for 1 %"
            )
        if not isinstance(relative, bool):
            raise MarginError(f"margin_relative of guardrail {metric!r} must be True or False, got {relative!r}")
        if relative and m >= 1:
            raise MarginError(
                f"relative margin of guardrail {metric!r} must be < 1 (a share of the control value), got "
                f"{margin!r}; write 0.02 for 2 %, or set margin_relative=False for an absolute margin"
            )
        return cls(m, relative)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        return f"{self.margin:.2%} of control" if self.relative else f"{self.margin:.4g} (absolute)"
