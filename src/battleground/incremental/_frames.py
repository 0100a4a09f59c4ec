"""Mini-batches as data frames or arrays: column conventions, parsing, and a synthetic stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from battleground.incremental._records import IncrementalInputError

if TYPE_CHECKING:
    import pandas as pd

RESERVED = ("entity", "label", "weight", "offset", "features", "batch")


@dataclass(frozen=True)
class Batch:
    """One parsed mini-batch: dense features ``X`` plus per-row label, weight, offset and entity."""

    X: np.ndarray
    feature_names: list[str]
    label: np.ndarray | None
    weight: np.ndarray
    offset: np.ndarray
    entity: np.ndarray | None  # entity ids as strings (object array), or None

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


def _entity_strings(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64).astype(str).astype(object)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise IncrementalInputError("entity ids must be integers or strings, got non-integral floats")
        return arr.astype(np.int64).astype(str).astype(object)
    out = arr.astype(str).astype(object)
    return out


def split_frame(
    X: Any,
    y: Any = None,
    *,
    sample_weight: Any = None,
    offset: Any = None,
    entity: Any = None,
    feature_names: list[str] | None = None,
    require_label: bool = True,
) -> Batch:
    """Parse a mini-batch given as a data frame (columns entity, label, weight, offset, then features —
    either numeric columns or one ``features`` column of equal-length arrays) or as arrays. A
    :class:`Batch` (already parsed and checked, e.g. by the stream runner's screening) is returned as is."""
    import pandas as pd

    if isinstance(X, Batch):
        if y is not None or sample_weight is not None or offset is not None or entity is not None:
            raise IncrementalInputError("a parsed Batch carries its own label, weight, offset and entity; pass none")
        if X.label is None and require_label:
            raise IncrementalInputError("labels are missing: the Batch has no label")
        return X
    if isinstance(X, pd.DataFrame):
        df = X
        if y is None and "label" in df.columns:
            y = df["label"].to_numpy(dtype=np.float64)
        if sample_weight is None and "weight" in df.columns:
            sample_weight = df["weight"].to_numpy(dtype=np.float64)
        if offset is None and "offset" in df.columns:
            offset = df["offset"].to_numpy(dtype=np.float64)
        if entity is None and "entity" in df.columns:
            entity = df["entity"].to_numpy()
        if "features" in df.columns:
            vals = df["features"].to_list()
            mat = np.asarray([np.asarray(v, dtype=np.float64) for v in vals]) if vals else np.empty((0, 0))
            if mat.ndim != 2:
                raise IncrementalInputError("column 'features' must hold equal-length numeric arrays")
            names = feature_names or [f"x{j}" for j in range(mat.shape[1])]
        else:
            cols = [c for c in df.columns if c not in RESERVED]
            dtypes = df.dtypes
            bad = [c for c in cols if getattr(dtypes[c], "kind", "O") not in "biuf"]
            if bad:
                raise IncrementalInputError(
                    f"feature columns must be numeric, got non-numeric {bad}; the reserved columns are {list(RESERVED)}"
                )
            names = [str(c) for c in cols]
            mat = df[cols].to_numpy(dtype=np.float64)
    else:
        mat = np.asarray(X, dtype=np.float64)
        if mat.ndim != 2:
            raise IncrementalInputError(f"X must be 2-D (rows × features), got shape {mat.shape}")
        names = feature_names or [f"x{j}" for j in range(mat.shape[1])]
    n = mat.shape[0]
    if len(names) != mat.shape[1]:
        raise IncrementalInputError(f"feature_names has {len(names)} names but X has {mat.shape[1]} columns")
    if not np.all(np.isfinite(mat)):
        raise IncrementalInputError("features must be finite; found NaN or inf (impute before updating)")

    def vec(v: Any, name: str, default: float | None) -> np.ndarray | None:
        if v is None:
            return None if default is None else np.full(n, default)
        a = np.asarray(v, dtype=np.float64).ravel()
        if a.shape != (n,):
            raise IncrementalInputError(f"{name} must have one entry per row ({n}), got {a.size}")
        if not np.all(np.isfinite(a)):
            raise IncrementalInputError(f"{name} must be finite; found NaN or inf")
        return a

    label = vec(y, "label", None)
    if label is None and require_label:
        raise IncrementalInputError("labels are missing: pass y or a 'label' column")
    weight = vec(sample_weight, "weight", 1.0)
    assert weight is not None
    if np.any(weight < 0):
        raise IncrementalInputError("weight must be >= 0; found a negative weight")
    off = vec(offset, "offset", 0.0)
    assert off is not None
    ent = None
    if entity is not None:
        ent = _entity_strings(entity)
        if ent.shape != (n,):
            raise IncrementalInputError(f"entity must have one entry per row ({n}), got {ent.size}")
    return Batch(np.ascontiguousarray(mat), names, label, weight, off, ent)


@dataclass(frozen=True)
class SyntheticStream:
    """A drifting GLMix-style stream: warm-up frame, training mini-batches, held-out mini-batches."""

    warmup: pd.DataFrame
    train: list[pd.DataFrame]
    holdout: list[pd.DataFrame]


def make_stream(
    *,
    n_batches: int = 20,
    batch_size: int = 500,
    holdout_size: int = 500,
    warmup_size: int = 2000,
    n_entities: int = 50,
    n_features: int = 10,
    seed: int = 0,
) -> SyntheticStream:
    """Synthetic stream like the reference generator (``logit = b + xᵀβ_t + u_e + xᵀG_e``, random-walk
    drift, Zipf-like entity popularity), small enough for demos and tests. Seeded, no downloads."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    k = n_features
    beta = rng.normal(0.0, 0.3, size=k)
    u = rng.normal(0.0, 1.0, size=n_entities)
    G = np.zeros((n_entities, k))
    n_slope = min(5, k)
    G[:, :n_slope] = rng.normal(0.0, 0.3, size=(n_entities, n_slope))
    p = (1.0 + np.arange(n_entities)) ** -0.8
    p /= p.sum()

    def draw(n: int) -> pd.DataFrame:
        ent = rng.choice(n_entities, size=n, p=p)
        X = rng.normal(size=(n, k))
        logit = -1.0 + X @ beta + u[ent] + np.sum(X * G[ent], axis=1)
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(k)])
        frame.insert(0, "offset", 0.0)
        frame.insert(0, "weight", 1.0)
        frame.insert(0, "label", y)
        frame.insert(0, "entity", ent.astype(np.int64))
        return frame

    warm = draw(warmup_size)
    train, hold = [], []
    for t in range(n_batches):
        if t:
            beta = beta + rng.normal(0.0, 0.03, size=k)
            u = u + rng.normal(0.0, 0.05, size=n_entities)
            G[:, :n_slope] += rng.normal(0.0, 0.02, size=(n_entities, n_slope))
        train.append(draw(batch_size))
        hold.append(draw(holdout_size))
    return SyntheticStream(warm, train, hold)
