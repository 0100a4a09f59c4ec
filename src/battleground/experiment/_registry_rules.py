"""The registry's input rules: pure functions that normalise and check what a caller registers.

Names, variants and weights, metrics (kinds, directions, windows, CUPED lookbacks, guardrail margins),
end conditions and timestamps. Each takes plain values or records and returns records, or raises
:class:`RegistryError` / :class:`RegistryRuleError` naming the rule and the value; none touches a database.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from battleground._time import TimeInputError, parse_instant
from battleground.experiment._records import (
    BUCKETS,
    DEFAULT_PROJECT,
    DESIGNS,
    DIRECTIONS,
    GROUP_SEQUENTIAL,
    METRIC_KINDS,
    EndConditions,
    MetricRecord,
    RegistryError,
    RegistryRuleError,
    VariantRecord,
)

_NEXT_STATUS = {"draft": "running", "running": "stopped", "stopped": "archived"}
_WEIGHT_TOLERANCE = 1e-9
_UNSET: Any = object()


class RegistryTimeError(TimeInputError, RegistryError):
    """A registry timestamp that breaks the shared time rule (:mod:`battleground._time`)."""


def parse_timestamp(value: Any, field: str) -> dt.datetime | None:
    """A naive UTC datetime from a datetime, date or ISO string by the shared rule of
    :func:`battleground._time.parse_instant` (aware values are converted to UTC; a date is midnight)."""
    return parse_instant(value, field, error=RegistryTimeError)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, VariantRecord | MetricRecord | EndConditions):
        return _jsonable(value.__dict__)
    return value


def _normalize_variants(variants: Any) -> list[VariantRecord]:
    """Variants from records, dicts, ``{name: weight}`` or plain names (equal weights, first = control)."""
    if variants is None:
        variants = ["control", "treatment"]
    if isinstance(variants, Mapping):
        return [
            VariantRecord(str(k), _as_float(w, f"weight of variant {k!r}"), i == 0)
            for i, (k, w) in enumerate(variants.items())
        ]
    if isinstance(variants, str) or not isinstance(variants, Iterable):
        raise RegistryError(
            f"variants must be a list of names, dicts or a {{name: weight}} mapping, got {variants!r}"
        )
    items = list(variants)
    if all(isinstance(v, str) for v in items):
        n = len(items)
        return [VariantRecord(v, 1.0 / n if n else 0.0, i == 0) for i, v in enumerate(items)]
    out = []
    # Control flags given for any variant are taken as given (so zero or two controls break the rule);
    # without any, the first variant is the control.
    explicit_control = any(
        isinstance(v, VariantRecord) or (isinstance(v, Mapping) and ("is_control" in v or "control" in v))
        for v in items
    )
    for i, v in enumerate(items):
        if isinstance(v, VariantRecord):
            out.append(v)
        elif isinstance(v, Mapping):
            unknown = set(v) - {"name", "weight", "is_control", "control"}
            if unknown:
                raise RegistryError(
                    f"variant {v!r} has unknown key(s) {sorted(unknown)}; use name, weight, is_control"
                )
            if "name" not in v:
                raise RegistryError(f"variant {v!r} needs a 'name'")
            weight = v.get("weight", 1.0 / len(items))
            control = bool(v.get("is_control", v.get("control", False))) if explicit_control else i == 0
            out.append(VariantRecord(str(v["name"]), _as_float(weight, f"weight of variant {v['name']!r}"), control))
        else:
            raise RegistryError(f"a variant must be a name, a dict or a VariantRecord, got {v!r}")
    return out


def _as_float(value: Any, field: str) -> float:
    """A finite number (``True`` and ``"0.5"`` are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise RegistryError(f"{field} must be a finite number, got {value!r}")
    return float(value)


def _check_variants(variants: Sequence[VariantRecord]) -> None:
    names = [v.name for v in variants]
    if len(variants) < 2:
        raise RegistryRuleError(
            "at least two variants", names, "an A/B test needs a control and at least one treatment"
        )
    for v in variants:
        if not v.name.strip():
            raise RegistryRuleError("variant names non-empty", v.name, "give every variant a name")
        check_label(v.name, "variant name")
        if not (math.isfinite(v.weight) and 0.0 < v.weight <= 1.0):
            raise RegistryRuleError(
                "weights in (0, 1]", v.weight, f"variant {v.name!r} needs a weight between 0 and 1"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RegistryRuleError("unique variant names", duplicates, "rename the duplicated variants")
    total = sum(v.weight for v in variants)
    if abs(total - 1.0) > _WEIGHT_TOLERANCE:
        raise RegistryRuleError(
            "weights sum to 1", total,
            f"weights {[v.weight for v in variants]} sum to {total:.12g}; make them sum to 1",
        )
    controls = [v.name for v in variants if v.is_control]
    if len(controls) != 1:
        raise RegistryRuleError(
            "exactly one control", controls, "mark exactly one variant with is_control=True"
        )


def _normalize_metric(metric: Any) -> MetricRecord:
    if isinstance(metric, MetricRecord):
        record = metric
    elif isinstance(metric, Mapping):
        allowed = {"name", "kind", "numerator", "denominator", "direction", "guardrail", "primary",
                   "conversion_window_days", "cuped_lookback_days",
                   "margin", "margin_relative", "cap_quantile", "cap_value", "quantile"}
        unknown = set(metric) - allowed
        if unknown:
            raise RegistryError(f"metric {metric!r} has unknown key(s) {sorted(unknown)}; use {sorted(allowed)}")
        missing = {"name", "kind", "numerator"} - set(metric)
        if missing:
            raise RegistryError(f"metric {metric!r} needs {sorted(missing)}")
        record = MetricRecord(
            name=str(metric["name"]), kind=str(metric["kind"]), numerator=str(metric["numerator"]),
            denominator=None if metric.get("denominator") is None else str(metric["denominator"]),
            direction=str(metric.get("direction", "increase")),
            guardrail=bool(metric.get("guardrail", False)), primary=bool(metric.get("primary", False)),
            conversion_window_days=_days(metric, "conversion_window_days", None),
            cuped_lookback_days=_days(metric, "cuped_lookback_days", 14.0),
            margin=metric.get("margin"), margin_relative=metric.get("margin_relative", True),
            cap_quantile=metric.get("cap_quantile"), cap_value=metric.get("cap_value"),
            quantile=metric.get("quantile"),
        )
    else:
        raise RegistryError(f"a metric must be a dict or a MetricRecord, got {metric!r}")
    if not record.name.strip():
        raise RegistryRuleError("metric names non-empty", record.name, "give the metric a name")
    if record.kind not in METRIC_KINDS:
        raise RegistryRuleError("metric kind", record.kind, f"kind must be one of {list(METRIC_KINDS)}")
    if record.direction not in DIRECTIONS:
        raise RegistryRuleError(
            "metric direction", record.direction, f"direction must be one of {list(DIRECTIONS)}"
        )
    if not record.numerator.strip():
        raise RegistryRuleError("numerator event type", record.numerator, "name the numerator event type")
    check_label(record.name, "metric name")
    check_label(record.numerator, "numerator event type")
    if record.denominator:
        check_label(record.denominator, "denominator event type")
    if record.kind == "ratio" and not record.denominator:
        raise RegistryRuleError(
            "ratio metrics need a denominator", record.denominator,
            f"metric {record.name!r} is a ratio: give denominator= (e.g. 'impression' for CTR)",
        )
    if record.kind != "ratio" and record.denominator:
        raise RegistryRuleError(
            "only ratio metrics have a denominator", record.denominator,
            f"metric {record.name!r} is a {record.kind}: drop denominator= or use kind='ratio'",
        )
    _check_quantile(record)
    window, lookback = record.conversion_window_days, record.cuped_lookback_days
    if window is not None and not (isinstance(window, int | float) and 0 < window <= 3650):
        raise RegistryRuleError(
            "conversion window in (0, 3650] days", window,
            f"metric {record.name!r}: give conversion_window_days > 0 (e.g. 7), or None for no window",
        )
    if lookback is not None and not (isinstance(lookback, int | float) and 0 <= lookback <= 3650):
        raise RegistryRuleError(
            "CUPED lookback in [0, 3650] days", lookback,
            f"metric {record.name!r}: give cuped_lookback_days >= 0 (default 14), or None for no covariate",
        )
    from battleground.storage._sums_sql import check_cap

    try:
        check_cap(record.kind, record.cap_quantile, record.cap_value, f"metric {record.name!r}: ")
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    return _checked_margin(record)


def _check_quantile(record: MetricRecord) -> None:
    """A quantile metric names its level in (0, 1); no other kind has one."""
    nu = record.quantile
    if record.kind == "quantile":
        if isinstance(nu, bool) or not isinstance(nu, int | float) or not 0.0 < nu < 1.0:
            raise RegistryRuleError(
                "quantile level in (0, 1)", nu,
                f"metric {record.name!r} is a quantile: give quantile= a level in (0, 1), e.g. 0.5 (median), "
                "0.9 (p90) or 0.99 (p99)",
            )
    elif nu is not None:
        raise RegistryRuleError(
            "only quantile metrics have a quantile level", nu,
            f"metric {record.name!r} is a {record.kind}: drop quantile= or use kind='quantile'",
        )


def _checked_margin(record: MetricRecord) -> MetricRecord:
    """A guardrail's non-inferiority margin, validated (only guardrails have one)."""
    from battleground.experiment._records import GuardrailMargin, MarginError

    if record.margin is None:
        if not isinstance(record.margin_relative, bool):
            raise MarginError(
                f"margin_relative of metric {record.name!r} must be True or False, got {record.margin_relative!r}"
            )
        return record
    if not record.guardrail:
        raise MarginError(
            f"metric {record.name!r} has margin={record.margin!r} but is not a guardrail; only guardrails "
            "have a non-inferiority margin: set guardrail=True or drop margin="
        )
    m = GuardrailMargin.checked(record.name, record.margin, record.margin_relative)
    return replace(record, margin=m.margin, margin_relative=m.relative)


def _days(metric: Mapping[str, Any], key: str, default: float | None) -> float | None:
    """A metric's optional number of days (``None`` stays ``None``)."""
    value = metric.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RegistryRuleError(f"{key} is a number of days", value, f"give {key} as a number (e.g. 7) or None")
    return float(value)


def _check_metrics(metrics: Sequence[MetricRecord]) -> None:
    names = [m.name for m in metrics]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RegistryRuleError("unique metric names", duplicates, "rename the duplicated metrics")
    primaries = [m.name for m in metrics if m.primary]
    if len(primaries) > 1:
        raise RegistryRuleError(
            "at most one primary metric", primaries,
            "the decision follows one primary metric; mark the others as secondary (primary=False)",
        )


# Accepted keys of an end-conditions mapping: English names and the seed's Korean ones. One table for
# ``create_experiment(end_conditions=...)``, ``RegisterExperiment.add_end_condition`` and ``meta``.
END_CONDITION_KEYS: dict[str, tuple[str, ...]] = {
    "target_sample_size": (
        "target_sample_size", "sample_size", "목표samplesize", "목표샘플사이즈", "목표표본크기", "목표표본수",
    ),
    "max_duration_days": ("max_duration_days", "max_days", "duration_days", "최대기간", "최대실험기간", "최대일수"),
    "sequential": ("sequential", "순차검정", "조기종료"),
    "design": ("design", "sequential_design", "순차설계"),
    "mde": ("mde", "planned_mde", "최소검출효과"),
}
MAX_TARGET_SAMPLE_SIZE = 2_000_000_000  # users per variant; the column is a 32-bit integer
MAX_DURATION_DAYS = 3650.0


def alias_key(text: str) -> str:
    """How an alias is compared: case, spaces, ``_`` and ``-`` ignored."""
    return re.sub(r"[\s_\-]", "", text).lower()


_END_LOOKUP = {alias_key(alias): field for field, aliases in END_CONDITION_KEYS.items() for alias in aliases}


def end_condition_fields(given: Mapping[str, Any]) -> dict[str, Any]:
    """``{field: value}`` from a mapping keyed by any alias in :data:`END_CONDITION_KEYS`; an unknown or
    repeated key is an error (never silently dropped)."""
    values: dict[str, Any] = {}
    for k, v in given.items():
        field = _END_LOOKUP.get(alias_key(str(k)))
        if field is None:
            raise RegistryError(
                f"unknown end condition {k!r}; accepted: "
                + ", ".join(
                    f"{f} (or {', '.join(a for a in aliases if a != f)})" for f, aliases in END_CONDITION_KEYS.items()
                )
            )
        if field in values:
            raise RegistryError(f"end conditions give {field!r} twice (as {k!r} and another alias); keep one")
        values[field] = v
    return values


def end_conditions_from(value: EndConditions | Mapping[str, Any] | None, current: EndConditions) -> EndConditions:
    """End conditions from a record, a mapping (aliases allowed, unknown keys refused) or ``None``."""
    if value is None:
        return _normalize_end_conditions(_UNSET, _UNSET, _UNSET, current)
    if isinstance(value, EndConditions):
        return _normalize_end_conditions(
            value.target_sample_size, value.max_duration_days, value.sequential, current, value.design, value.mde
        )
    if isinstance(value, Mapping):
        f = end_condition_fields(value)
        return _normalize_end_conditions(
            f.get("target_sample_size", _UNSET), f.get("max_duration_days", _UNSET), f.get("sequential", _UNSET),
            current, f.get("design", _UNSET), f.get("mde", _UNSET),
        )
    raise RegistryError(f"end_conditions must be a mapping or EndConditions, got {value!r}")


def _normalize_end_conditions(
    target_sample_size: Any, max_duration_days: Any, sequential: Any, current: EndConditions,
    design: Any = _UNSET, mde: Any = _UNSET,
) -> EndConditions:
    size = current.target_sample_size if target_sample_size is _UNSET else target_sample_size
    days = current.max_duration_days if max_duration_days is _UNSET else max_duration_days
    seq = current.sequential if sequential is _UNSET else sequential
    if size is not None:
        if (
            isinstance(size, bool) or not isinstance(size, numbers.Real) or not math.isfinite(float(size))
            or not float(size).is_integer() or not 0 < float(size) <= MAX_TARGET_SAMPLE_SIZE
        ):
            raise RegistryRuleError(
                "target sample size is a positive integer", size,
                f"give the users per variant as a number from 1 to {MAX_TARGET_SAMPLE_SIZE:,}, e.g. 1000",
            )
        size = int(float(size))
    if days is not None:
        if isinstance(days, bool) or not isinstance(days, numbers.Real) or not (
            math.isfinite(float(days)) and 0 < float(days) <= MAX_DURATION_DAYS
        ):
            raise RegistryRuleError(
                "maximum duration is positive", days,
                f"give a number of days above 0 and at most {MAX_DURATION_DAYS:g}, e.g. 14",
            )
        days = float(days)
    if isinstance(seq, str):
        if seq.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise RegistryError(f"sequential must be true or false, got {seq!r}")
        seq = seq.strip().lower() in ("true", "1", "yes")
    if not isinstance(seq, bool | int) or seq not in (0, 1):
        raise RegistryError(f"sequential must be true or false, got {seq!r}")
    des = current.design if design is _UNSET else ("msprt" if design is None else design)
    if not isinstance(des, str) or des.strip().lower() not in DESIGNS:
        raise RegistryRuleError(f"design is one of {', '.join(DESIGNS)}", des,
                                "e.g. design='obrien_fleming' for group-sequential alpha spending")
    des = des.strip().lower()
    if design is not _UNSET and des != "msprt":
        seq = True  # choosing a sequential design makes the experiment sequential
    if des in GROUP_SEQUENTIAL and bool(seq) and size is None:
        raise RegistryRuleError(
            "a group-sequential design has a target sample size", des,
            "set target_sample_size (users per variant): looks are placed at users / target",
        )
    planned = current.mde if mde is _UNSET else mde
    if planned is not None:
        planned = _as_float(planned, "mde")
        if not (math.isfinite(planned) and planned > 0):
            raise RegistryRuleError("the planned MDE is a positive relative effect", planned, "e.g. mde=0.05 for +5 %")
    return EndConditions(size, days, bool(seq), des, planned)


def check_name(name: Any) -> str:
    """An experiment name: contract text (:mod:`battleground._contract`), not all digits (digits name
    ids), stripped."""
    if not isinstance(name, str) or not name.strip():
        raise RegistryRuleError("experiment names non-empty", name, "give the experiment a name")
    name = name.strip()
    check_label(name, "experiment name")
    if name.isdigit():
        raise RegistryRuleError(
            "names are not all digits", name, "digits name experiment ids; add a letter to the name"
        )
    return name


def check_label(value: str, what: str) -> str:
    """A name, variant, metric or event type by the input contract (≤ 200 characters, no control
    characters, valid Unicode)."""
    from battleground._contract import text_reason

    reason = text_reason(value)
    if reason:
        shown = value if len(value) <= 60 else value[:40] + "…"
        raise RegistryRuleError(f"{what} is plain text of at most 200 characters", shown, f"the {what} {reason}")
    return value


def check_prose(value: Any, field: str) -> str | None:
    """A description, hypothesis or owner: text without NUL or lone surrogates (newlines are fine)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RegistryError(f"{field} must be text, got {value!r}")
    if "\x00" in value or len(value) > 100_000:
        raise RegistryRuleError(f"{field} is text without NUL, at most 100,000 characters", value[:40], f"fix the {field}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RegistryRuleError(f"{field} is valid Unicode", value[:40], "send UTF-8 text") from None
    return value


def check_traffic(value: Any) -> float:
    traffic = _as_float(value, "traffic")
    if not (0.0 < traffic <= 1.0):
        raise RegistryRuleError("traffic in (0, 1]", traffic, "give the fraction of users to include")
    return traffic


def check_salt(value: Any) -> str:
    from battleground._contract import CONTROL

    if not isinstance(value, str) or not value or len(value) > 64 or CONTROL.search(value) or not value.isascii():
        raise RegistryRuleError("salt is 1-64 characters", value, "give a short string or leave it out")
    return value


def check_project(value: Any) -> str:
    """A project name (default "default"): plain text of at most 200 characters."""
    if value is None:
        return DEFAULT_PROJECT
    if not isinstance(value, str) or not value.strip():
        raise RegistryRuleError("project names non-empty", value, "give a project name or leave it out (default)")
    return check_label(value.strip(), "project name")


def check_layer(value: Any) -> str | None:
    """A layer name (``None``: no layer): plain text of at most 200 characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RegistryRuleError("layer names non-empty", value, "give the layer a name (e.g. 'checkout') or leave it out")
    return check_label(value.strip(), "layer name")


def check_layer_range(value: Any) -> tuple[int, int]:
    """A half-open bucket range ``(start, end)`` with ``0 <= start < end <= 10000``, from a pair of
    integers or the text ``"start-end"`` (also ``"start:end"``)."""
    pair: Any = value
    if isinstance(value, str):
        parts = re.split(r"\s*[-:,]\s*", value.strip())
        if len(parts) != 2 or not all(p.isdigit() and p.isascii() for p in parts):
            raise RegistryRuleError(
                "layer range is START-END", value,
                f"give the half-open bucket range as two integers, e.g. '0-2500' for buckets 0 to 2499 of {BUCKETS:,}",
            )
        pair = (int(parts[0]), int(parts[1]))
    if (
        not isinstance(pair, tuple | list) or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in pair)
    ):
        raise RegistryRuleError(
            "layer range is two integers", value, "give (start, end), e.g. (0, 2500) for buckets 0 to 2499"
        )
    start, end = int(pair[0]), int(pair[1])
    if not 0 <= start < end <= BUCKETS:
        raise RegistryRuleError(
            f"layer range within [0, {BUCKETS})", value,
            f"a range [start, end) needs 0 <= start < end <= {BUCKETS} (buckets 0 to {BUCKETS - 1}); got [{start}, {end})",
        )
    return start, end


def check_layer_buckets(value: Any) -> int:
    """How many buckets the registry should allocate in a layer: an integer in [1, 10000]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= int(value) <= BUCKETS:
        raise RegistryRuleError(
            f"layer buckets in [1, {BUCKETS}]", value,
            f"give how many of the layer's {BUCKETS:,} buckets to allocate, e.g. 2500 for a quarter",
        )
    return int(value)


def check_holdout_fraction(value: Any) -> int:
    """A holdout fraction in (0, 1), a multiple of 1/10000; returns the number of held-out buckets."""
    fraction = _as_float(value, "holdout fraction")
    buckets = round(fraction * BUCKETS)
    if not 0.0 < fraction < 1.0:
        raise RegistryRuleError(
            "holdout fraction in (0, 1)", value,
            "give the share of the project's units to hold out, e.g. 0.05 for 5 %",
        )
    if abs(fraction * BUCKETS - buckets) > 1e-6 or buckets == 0:
        raise RegistryRuleError(
            f"holdout fraction a multiple of 1/{BUCKETS}", value,
            f"units are held out by whole buckets of {BUCKETS:,}; e.g. {max(buckets, 1) / BUCKETS:g}",
        )
    return buckets


def free_range(taken: Iterable[tuple[int, int]], size: int) -> tuple[int, int] | None:
    """The lowest ``[start, start + size)`` of [0, 10000) overlapping none of ``taken`` (first fit).

    Example:
        >>> free_range([(0, 2500), (5000, 6000)], 2500)
        (2500, 5000)
        >>> free_range([(0, 9000)], 2000) is None
        True
    """
    start = 0
    for lo, hi in sorted(taken):
        if lo - start >= size:
            return start, start + size
        start = max(start, hi)
    return (start, start + size) if BUCKETS - start >= size else None


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two half-open ranges share a bucket."""
    return a[0] < b[1] and b[0] < a[1]
