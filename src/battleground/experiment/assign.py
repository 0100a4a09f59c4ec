"""Deterministic assignment of users to variants, and exposure events.

The hash (the same in every process, on every machine, in every language with an XXH64):

    h = XXH64(f"{salt}:{user_id}".encode("utf-8"), seed=0)        # a 64-bit unsigned integer
    u = (h >> 32) / 2**32          # variant bucket in [0, 1)
    t = (h & 0xFFFFFFFF) / 2**32   # traffic bucket in [0, 1), independent bits of the same hash

A user is in the experiment when ``t < traffic``; their variant is the first one whose cumulative weight
exceeds ``u`` (variants in registry order). Because the variant uses the high bits and the traffic the
low bits, raising the traffic only adds users and never moves anyone between variants. Integer ids are
hashed as their decimal text (``7`` → ``"salt:7"``).

Layers (mutually exclusive experiments) and holdouts split units into 10,000 buckets of a namespace:

    g = XXH64(f"{namespace}:{user_id}".encode("utf-8"), seed=0)
    b = ((g >> 32) * 10000) >> 32  # integer bucket in [0, 10000), i.e. floor(10000 * (g >> 32) / 2**32)

An experiment in layer ``L`` (namespace ``f"layer:{L}"``) owning the half-open bucket range
``[start, end)`` is seen only by units with ``start <= b < end``; the registry refuses two running
experiments of one layer whose ranges overlap, so they never share a unit. A project's holdout
(namespace: the holdout's salt) holds out the units with ``b < B`` (``B = fraction × 10000``) from every
experiment started behind it. The checks run in order holdout → layer range → traffic → variant; the
variant hash ``h`` above uses the experiment's own salt, so within its range the split is independent of
the bucket. ``docs/ab-testing.md`` gives test vectors for other languages.

Example:
    >>> assign_one(42, salt="checkout-2022", variants=["control", "treatment"], weights=[0.5, 0.5])
    'treatment'
    >>> bucket([42, 43], salt="checkout-2022").round(6).tolist()
    [0.882676, 0.366246]
    >>> layer_buckets([42, "alice"], layer_namespace("checkout")).tolist()
    [5374, 3931]

:func:`assign_variants` does millions of ids per second (the XXH64 runs vectorised in NumPy, bit-for-bit
equal to the ``xxhash`` package that :func:`assign_one` uses); :class:`Assigner` ties assignment to a
registered experiment and records exposure events in the event store.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from battleground.errors import ExperimentError
from battleground.experiment._records import BUCKETS, ExperimentRecord

if TYPE_CHECKING:
    from battleground.experiment.events import IngestResult
    from battleground.storage.events import EventStore

__all__ = [
    "Assigner",
    "assign_indices",
    "assign_one",
    "assign_variants",
    "bucket",
    "hash_ids",
    "layer_bucket_one",
    "layer_buckets",
    "layer_namespace",
]


class AssignmentError(ExperimentError, ValueError):
    """A salt, user id, weight or traffic share that assignment cannot use."""


_TWO32 = float(2**32)
_LOW32 = np.uint64(0xFFFFFFFF)


def _prefix(salt: str) -> bytes:
    if not isinstance(salt, str) or not salt:
        raise AssignmentError(f"salt must be a non-empty string, got {salt!r}")
    return f"{salt}:".encode()


def hash_ids(user_ids: Any, salt: str) -> np.ndarray:
    """XXH64 of ``f"{salt}:{user_id}"`` for every id, as uint64.

    ``user_ids``: a NumPy integer array (non-negative), or strings (list, NumPy, pandas or Arrow).
    """
    prefix = _prefix(salt)
    from battleground.experiment._xxh64 import xxh64_int_ids, xxh64_strings

    if isinstance(user_ids, np.ndarray) and user_ids.dtype.kind in "iu":
        if user_ids.dtype.kind == "i" and user_ids.size and user_ids.min() < 0:
            return xxh64_strings(prefix, [str(int(i)) for i in user_ids])
        return xxh64_int_ids(prefix, user_ids)
    if isinstance(user_ids, np.ndarray) and user_ids.dtype.kind == "f":
        raise AssignmentError(
            "user ids must be integers or strings, got floats (1.0 and 1 would hash differently); "
            "convert them with .astype('int64') or to text first"
        )
    if hasattr(user_ids, "to_numpy") and not _is_arrow(user_ids):  # pandas Series / Index
        values = user_ids.to_numpy()
        if values.dtype.kind in "iuf":
            return hash_ids(values, salt)
        return xxh64_strings(prefix, [_as_text(v) for v in values])
    if _is_arrow(user_ids):
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_integer(user_ids.type):
            return hash_ids(np.asarray(user_ids), salt)
        return xxh64_strings(prefix, pc.cast(user_ids, pa.string()))
    values = list(user_ids)
    if values and all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 0 for v in values):
        return xxh64_int_ids(prefix, np.asarray(values, dtype=np.uint64))
    return xxh64_strings(prefix, [_as_text(v) for v in values])


def _is_arrow(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyarrow")


def _as_text(user_id: Any) -> str:
    if isinstance(user_id, bool) or user_id is None or isinstance(user_id, float | np.floating):
        raise AssignmentError(f"a user id must be a string or an integer, got {user_id!r}")
    if isinstance(user_id, int | np.integer):
        return str(int(user_id))
    if isinstance(user_id, str):
        return user_id
    raise AssignmentError(f"a user id must be a string or an integer, got {user_id!r}")


def bucket(user_ids: Any, salt: str) -> np.ndarray:
    """The variant bucket ``u = (h >> 32) / 2**32`` in [0, 1) of every id."""
    return (hash_ids(user_ids, salt) >> np.uint64(32)).astype(np.float64) / _TWO32


def layer_namespace(layer: str) -> str:
    """The hash namespace of layer ``layer``: ``f"layer:{layer}"``."""
    if not isinstance(layer, str) or not layer:
        raise AssignmentError(f"a layer must be a non-empty string, got {layer!r}")
    return f"layer:{layer}"


def layer_buckets(user_ids: Any, namespace: str) -> np.ndarray:
    """The bucket ``((XXH64(f"{namespace}:{id}") >> 32) * 10000) >> 32`` in [0, 10000) of every id (int64).

    ``namespace`` is :func:`layer_namespace` of a layer, or a holdout's salt.
    """
    high = hash_ids(user_ids, namespace) >> np.uint64(32)
    return ((high * np.uint64(BUCKETS)) >> np.uint64(32)).astype(np.int64)  # < 2**46: no overflow


def layer_bucket_one(user_id: Any, namespace: str) -> int:
    """The bucket of one id (the ``xxhash`` package; equal to :func:`layer_buckets`)."""
    import xxhash

    h = xxhash.xxh64_intdigest(_prefix(namespace) + _as_text(user_id).encode())
    return ((h >> 32) * BUCKETS) >> 32


def _check_weights(variants: Sequence[str], weights: Sequence[float], traffic: float) -> np.ndarray:
    if len(variants) != len(weights) or not variants:
        raise AssignmentError(
            f"variants and weights must be non-empty and of equal length, got {list(variants)} and {list(weights)}"
        )
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w <= 0) or abs(w.sum() - 1.0) > 1e-9:
        raise AssignmentError(f"weights must be positive and sum to 1, got {list(weights)}")
    if not (0.0 < float(traffic) <= 1.0):
        raise AssignmentError(f"traffic must be in (0, 1], got {traffic!r}")
    return np.cumsum(w)


def assign_indices(
    user_ids: Any, *, salt: str, weights: Sequence[float], traffic: float = 1.0
) -> np.ndarray:
    """Variant index per id (int8/int16 into the weights), or -1 for users outside the traffic."""
    edges = _check_weights([str(i) for i in range(len(weights))], weights, traffic)
    h = hash_ids(user_ids, salt)
    u = (h >> np.uint64(32)).astype(np.float64) / _TWO32
    # The last edge is treated as 1 so rounding in the cumulative sum cannot leave a gap.
    idx = np.searchsorted(edges[:-1], u, side="right").astype(np.int16)
    if traffic < 1.0:
        t = (h & _LOW32).astype(np.float64) / _TWO32
        idx[t >= traffic] = -1
    return idx


def assign_variants(
    user_ids: Any,
    *,
    salt: str,
    variants: Sequence[str],
    weights: Sequence[float],
    traffic: float = 1.0,
) -> np.ndarray:
    """The variant name of every id (an object array; ``None`` for users outside the traffic)."""
    _check_weights(variants, weights, traffic)
    idx = assign_indices(user_ids, salt=salt, weights=weights, traffic=traffic)
    names = np.array([*variants, None], dtype=object)
    return names[idx]  # -1 picks the trailing None


def assign_one(
    user_id: Any,
    *,
    salt: str,
    variants: Sequence[str],
    weights: Sequence[float],
    traffic: float = 1.0,
) -> str | None:
    """The variant of one user (``None`` when outside the traffic), with the ``xxhash`` package."""
    import xxhash

    edges = _check_weights(variants, weights, traffic)
    h = xxhash.xxh64_intdigest(_prefix(salt) + _as_text(user_id).encode())
    if traffic < 1.0 and (h & 0xFFFFFFFF) / _TWO32 >= traffic:
        return None
    u = (h >> 32) / _TWO32
    # bisect, not np.searchsorted: the same index (side="right"), and no release of the GIL, which in a
    # server's event loop let another thread take it for milliseconds (the decision service's profile)
    return variants[bisect.bisect_right(edges[:-1].tolist(), u)]


class Assigner:
    """Assignment for one registered experiment: its holdout, layer range, traffic, variants and weights.

    A unit gets no variant (``None``) when the experiment's holdout holds it out, when its layer bucket
    is outside the experiment's range, or when it is outside the traffic; :meth:`exclusion` says which.
    For a holdout (``kind == "holdout"``) every unit gets a variant: the control ("holdout") when its
    bucket is in the held-out range, the other variant otherwise.

    Example:
        >>> from battleground.experiment._records import EndConditions, VariantRecord
        >>> exp = ExperimentRecord(1, "demo", "running", "checkout-2022", 1.0,
        ...     (VariantRecord("control", 0.5, True), VariantRecord("treatment", 0.5, False)), (), EndConditions())
        >>> Assigner(exp).assign(42)
        'treatment'
        >>> from dataclasses import replace
        >>> layered = replace(exp, layer="checkout", layer_range=(0, 5000))  # user 42 is in bucket 5374
        >>> Assigner(layered).assign(42), Assigner(layered).exclusion(42)
        (None, 'layer')
    """

    def __init__(self, experiment: ExperimentRecord) -> None:
        self.experiment = experiment
        self.variants = [v.name for v in experiment.variants]
        self.weights = [v.weight for v in experiment.variants]
        # (reason, namespace, start, end, the unit is excluded when its bucket is inside [start, end))
        self._gates: list[tuple[str, str, int, int, bool]] = []
        if experiment.is_holdout:
            if experiment.layer_range is None:
                raise AssignmentError(f"holdout {experiment.name!r} has no held-out range")
            return
        if experiment.holdout is not None:
            self._gates.append(("holdout", experiment.holdout.salt, 0, experiment.holdout.buckets, True))
        if experiment.layer is not None:
            if experiment.layer_range is None:
                raise AssignmentError(f"experiment {experiment.name!r} is in layer {experiment.layer!r} "
                                      "but owns no range of it")
            start, end = experiment.layer_range
            self._gates.append(("layer", layer_namespace(experiment.layer), start, end, False))

    @classmethod
    def from_registry(cls, registry: Any, key: Any) -> Assigner:
        """The assigner of experiment ``key`` (id or name) in ``registry`` (a Registry or a client)."""
        from battleground.experiment.register import Registry

        reg = registry if isinstance(registry, Registry) else Registry(registry)
        return cls(reg.get(key))

    def _held_out_name(self) -> tuple[str, str]:
        held = self.experiment.control
        return held, next(v for v in self.variants if v != held)

    def exclusion(self, user_id: Any) -> str | None:
        """Why one unit gets no variant: "holdout", "layer" or "traffic"; ``None`` when it gets one."""
        if self.experiment.is_holdout:
            return None
        for reason, namespace, start, end, inside_excludes in self._gates:
            b = layer_bucket_one(user_id, namespace)
            if (start <= b < end) == inside_excludes:
                return reason
        import xxhash

        if self.experiment.traffic < 1.0:
            h = xxhash.xxh64_intdigest(_prefix(self.experiment.salt) + _as_text(user_id).encode())
            if (h & 0xFFFFFFFF) / _TWO32 >= self.experiment.traffic:
                return "traffic"
        return None

    def assign(self, user_id: Any) -> str | None:
        """The variant of one user, or ``None`` when they are held out, outside the layer range or
        outside the experiment's traffic."""
        if self.experiment.is_holdout:
            held, shipped = self._held_out_name()
            start, end = self.experiment.layer_range or (0, 0)
            return held if start <= layer_bucket_one(user_id, self.experiment.salt) < end else shipped
        for _reason, namespace, start, end, inside_excludes in self._gates:
            if (start <= layer_bucket_one(user_id, namespace) < end) == inside_excludes:
                return None
        return assign_one(
            user_id, salt=self.experiment.salt, variants=self.variants, weights=self.weights,
            traffic=self.experiment.traffic,
        )

    def eligible(self, user_ids: Any) -> np.ndarray:
        """Whether each unit passes the holdout and layer-range checks (traffic aside), as booleans."""
        mask: np.ndarray | None = None
        for _reason, namespace, start, end, inside_excludes in self._gates:
            b = layer_buckets(user_ids, namespace)
            passes = ((b >= start) & (b < end)) != inside_excludes
            mask = passes if mask is None else mask & passes
        if mask is None:
            return np.ones(len(hash_ids(user_ids, self.experiment.salt)), dtype=bool)
        return mask

    def assign_many(self, user_ids: Any) -> np.ndarray:
        """Variant names for many users (``None`` where :meth:`assign` gives ``None``)."""
        if self.experiment.is_holdout:
            held, shipped = self._held_out_name()
            start, end = self.experiment.layer_range or (0, 0)
            b = layer_buckets(user_ids, self.experiment.salt)
            return np.where((b >= start) & (b < end), held, shipped).astype(object)
        out = assign_variants(
            user_ids, salt=self.experiment.salt, variants=self.variants, weights=self.weights,
            traffic=self.experiment.traffic,
        )
        if self._gates:
            out[~self.eligible(user_ids)] = None
        return out
    def expose(
        self,
        store: EventStore,
        user_ids: Any,
        *,
        at: Any = None,
        covariates: Any = None,
    ) -> IngestResult:
        """Assign users and record one ``exposure`` event per user in the event store.

        The event id is ``exposure:<experiment id>:<user id>``, so exposing a user again adds nothing
        and the first exposure time is kept. ``at`` is one timestamp or one per user (default now, UTC);
        ``covariates`` an optional pre-period value per user (for CUPED). Users who get no variant
        (held out, outside the layer range or the traffic) get no event. Returns the ingest result.
        """
        import pandas as pd

        ids = list(user_ids) if not isinstance(user_ids, np.ndarray | pd.Series) else user_ids
        text = pd.Series(ids).map(_as_text) if not isinstance(ids, np.ndarray) or ids.dtype.kind not in "iu" else pd.Series(ids).astype(str)
        variants = self.assign_many(user_ids)
        when = at if at is not None else dt.datetime.now(dt.UTC).replace(tzinfo=None)
        frame = pd.DataFrame({
            "event_id": "exposure:" + str(self.experiment.id) + ":" + text,
            "experiment_id": self.experiment.id,
            "variant": variants,
            "user_id": text,
            "event_type": "exposure",
            "timestamp": when,
        })
        if covariates is not None:
            frame["covariate"] = np.asarray(covariates, dtype=np.float64)
        frame = frame[frame["variant"].notna()]
        from battleground.experiment.events import ingest

        return ingest(store, frame)
