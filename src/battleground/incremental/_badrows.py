"""Bad records in a mini-batch: find them row by row, and raise, drop or quarantine them.

A stream carries the odd broken record (a NaN label, a label 2, a NaN feature, a negative weight). The
model's own checks reject the whole batch, and a learner left running would then fail on the same batch
forever. :func:`screen` finds the bad rows and says why, so the stream runner can name them
(``raise``), drop them (``skip``) or write them with their reason to a dead-letter folder and go on
(``quarantine``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from battleground.errors import IncrementalError
from battleground.incremental._checkpoint import atomic_write
from battleground.incremental._frames import RESERVED, Batch, _entity_strings
from battleground.incremental._records import IncrementalInputError

if TYPE_CHECKING:
    import pandas as pd

ERROR_COLUMN = "_error"  # set by a codec for a message it could not decode
BadRecordPolicy = Literal["raise", "skip", "quarantine"]
POLICIES: tuple[str, ...] = ("raise", "skip", "quarantine")


class BadRecordError(IncrementalError, ValueError):
    """A mini-batch holds records the model cannot learn from; the message names batch, source and row."""


@dataclass(frozen=True)
class Screened:
    """A batch split into the rows to learn from and the rejected ones (with ``_row`` and ``_reason``).

    ``batch`` holds the good rows already parsed into arrays (when the frame has numeric feature
    columns), so the model does not parse the frame a second time.
    """

    good: pd.DataFrame
    rejected: pd.DataFrame
    batch: Batch | None = None

    @property
    def n_rejected(self) -> int:
        return len(self.rejected)

    @property
    def learnable(self) -> pd.DataFrame | Batch:
        """What to hand to ``partial_fit``: the parsed arrays when there are, else the good rows."""
        return self.good if self.batch is None else self.batch


def check_policy(on_bad_record: str, dead_letter_dir: object) -> None:
    if on_bad_record not in POLICIES:
        raise IncrementalInputError(f"on_bad_record must be one of {list(POLICIES)}, got {on_bad_record!r}")
    if on_bad_record == "quarantine" and dead_letter_dir is None:
        raise IncrementalInputError("on_bad_record='quarantine' needs dead_letter_dir, the folder for rejected rows")


def _fmt(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def screen(frame: pd.DataFrame, *, feature_names: list[str] | None, needs_entity: bool) -> Screened:
    """Split ``frame`` into learnable rows and rejected rows, each with the first reason found.

    Row checks: label present, finite and binary (0/1 or -1/+1); weight finite and >= 0; offset
    finite; every feature finite; entity present (when the model needs one) and an integer or string.
    Batch checks (non-numeric feature columns, features other than the model's, no label column) reject
    every row with the same reason. Each column is read once; with numeric feature columns the good
    rows also come back parsed (:attr:`Screened.batch`).
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise BadRecordError(f"a mini-batch must be a pandas DataFrame, got {type(frame).__name__}")
    n = len(frame)
    reasons = np.full(n, None, dtype=object)
    flagged = np.zeros(n, dtype=bool)  # kept beside ``reasons``: a bool mask is cheap to test

    def flag(mask: np.ndarray, reason: Any) -> None:
        rows = np.flatnonzero(mask & ~flagged)
        flagged[rows] = True
        for i in rows.tolist():
            reasons[i] = reason(i) if callable(reason) else reason

    columns = [str(c) for c in frame.columns]
    has_error = ERROR_COLUMN in columns
    if has_error:  # the codec could not decode these messages
        errs = frame[ERROR_COLUMN].to_numpy(dtype=object)
        flag(np.array([isinstance(e, str) for e in errs], dtype=bool), lambda i: str(errs[i]))
    kinds = [getattr(t, "kind", "O") for t in frame.dtypes]
    batch_reason = _batch_problem(columns, kinds, feature_names)
    if batch_reason is not None:
        flag(np.ones(n, dtype=bool), batch_reason)
        return _split(frame, reasons, flagged)

    def numeric(col: str) -> np.ndarray:
        series = frame[col]
        if getattr(series.dtype, "kind", "O") in "biuf":
            return series.to_numpy(dtype=np.float64)
        return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)

    label = numeric("label")
    flag(~np.isfinite(label), lambda i: f"label must be 0/1 or -1/+1, got {_fmt(frame['label'].iloc[i])}")
    flag(~np.isin(label, (0.0, 1.0, -1.0)), lambda i: f"label must be 0/1 or -1/+1, got {_fmt(label[i])}")
    meta: dict[str, np.ndarray] = {}
    for col, ok in (("weight", lambda a: np.isfinite(a) & (a >= 0)), ("offset", np.isfinite)):
        if col in columns:
            vals = meta[col] = numeric(col)
            what = "finite and >= 0" if col == "weight" else "finite"
            flag(~ok(vals), lambda i, c=col, v=vals, w=what: f"{c} must be {w}, got {_fmt(v[i])}")
    mat: np.ndarray | None = None
    names: list[str] = []
    if "features" in columns:
        expected = len(feature_names) if feature_names is not None else None
        for i, v in enumerate(frame["features"].to_list()):
            arr = np.asarray(v, dtype=np.float64) if v is not None else np.full(0, np.nan)
            if flagged[i]:
                continue
            if arr.ndim != 1 or (expected is not None and arr.size != expected):
                flagged[i] = True
                reasons[i] = f"features must be a list of {expected if expected is not None else 'equal-length'} numbers"
            elif not np.all(np.isfinite(arr)):
                flagged[i] = True
                j = int(np.flatnonzero(~np.isfinite(arr))[0])
                reasons[i] = f"features[{j}] must be finite, got {_fmt(arr[j])}"
    else:
        positions = [j for j, c in enumerate(columns) if c not in RESERVED and c != ERROR_COLUMN]
        names = [columns[j] for j in positions]
        # positional selection: much cheaper than selecting by (string) labels
        mat = np.asarray(frame.iloc[:, positions].to_numpy(dtype=np.float64)) if positions else np.zeros((n, 0))
        if names:  # one matrix test; only the bad rows are looked at one by one
            finite: np.ndarray = np.isfinite(mat)
            flag(~np.all(finite, axis=1), lambda i: (
                f"feature {names[int(np.argmin(finite[i]))]} must be finite, got {_fmt(mat[i, np.argmin(finite[i])])}"))
    entity: np.ndarray | None = None
    if "entity" in columns:
        ent = frame["entity"]
        flag(ent.isna().to_numpy(), "entity is missing")
        if ent.dtype.kind == "f":
            vals = ent.to_numpy(dtype=np.float64)
            flag(np.isfinite(vals) & (vals != np.round(vals)),
                 lambda i: f"entity must be an integer or a string, got {_fmt(vals[i])}")
        entity = ent.to_numpy()
    elif needs_entity and n:
        flag(np.ones(n, dtype=bool), "entity is missing: the batch has no 'entity' column (GLMix needs one per row)")
    screened = _split(frame, reasons, flagged)
    if mat is None:
        return screened
    keep = None if not flagged.any() else np.flatnonzero(~flagged)

    def rows(a: np.ndarray) -> np.ndarray:
        return a if keep is None else a[keep]

    m = len(screened.good)
    batch = Batch(np.ascontiguousarray(rows(mat)), names, rows(label),
                  rows(meta["weight"]) if "weight" in meta else np.ones(m),
                  rows(meta["offset"]) if "offset" in meta else np.zeros(m),
                  None if entity is None else _entity_strings(rows(entity)))
    return Screened(screened.good, screened.rejected, batch)


def _batch_problem(columns: list[str], kinds: list[str], feature_names: list[str] | None) -> str | None:
    if "label" not in columns:
        return "the batch has no 'label' column"
    if "features" in columns:
        return None
    cols = [(c, k) for c, k in zip(columns, kinds, strict=True) if c not in RESERVED and c != ERROR_COLUMN]
    bad = [c for c, k in cols if k not in "biuf"]
    if bad:
        return f"feature columns must be numeric, got non-numeric {bad}"
    if feature_names is not None and [c for c, _ in cols] != list(feature_names):
        return f"features {[c for c, _ in cols]} differ from the ones the model was trained on {list(feature_names)}"
    return None


def _split(frame: pd.DataFrame, reasons: np.ndarray, bad: np.ndarray) -> Screened:
    import pandas as pd

    if not bad.any():
        if ERROR_COLUMN in frame.columns:
            frame = frame.drop(columns=[ERROR_COLUMN])
        return Screened(frame, pd.DataFrame({"_row": np.zeros(0, dtype=np.int64), "_reason": np.zeros(0, dtype=object)}))
    rows = np.flatnonzero(bad)
    rejected = frame.iloc[rows].assign(_row=rows, _reason=reasons[rows].astype(str))
    good = frame.iloc[np.flatnonzero(~bad)].drop(columns=[ERROR_COLUMN], errors="ignore")
    return Screened(good, rejected.drop(columns=[ERROR_COLUMN], errors="ignore"))


def raise_bad(rejected: pd.DataFrame, *, key: str, origin: str) -> None:
    """Raise :class:`BadRecordError` for the first rejected row, naming the batch, its source and the row."""
    first = rejected.iloc[0]
    raise BadRecordError(
        f"bad record in batch {key!r} ({origin}), row {int(first['_row'])}: {first['_reason']} "
        f"({len(rejected)} bad row(s) in this batch); fix the source, or rerun with "
        "--on-bad-record skip|quarantine (run_stream(on_bad_record=...)) to drop or quarantine such rows")


def quarantine(rejected: pd.DataFrame, *, key: str, origin: str, directory: Path) -> Path:
    """Write the rejected rows with their reason, batch key and source to ``<directory>/<key>.rejected.parquet``.

    The name depends only on the key, so a batch learned again after a crash rewrites the same file.
    """
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in key)
    path = directory / f"{safe}.rejected.parquet"
    out = rejected.assign(_batch=key, _source=origin).reset_index(drop=True)
    if "features" in out.columns:  # arrays of any length: keep them readable as lists
        out["features"] = pd.Series([None if v is None else list(np.asarray(v, dtype=np.float64))
                                     for v in out["features"]], index=out.index, dtype=object)
    atomic_write(path, lambda fh: out.to_parquet(fh))
    return path
