"""The event store as a stream source: learn from the events battleground already stores.

Each **exposure** event (``exposure_event``) of the experiment is one training record: its features are
declared columns of the exposure (``value``, ``covariate``, and ``variant`` as one-hot columns
``variant|<name>``), its label is 1 when the same user has a ``label_event`` within ``window`` after
the exposure, else 0, and its entity (for GLMix) is the user. An exposure is learned only once its
window has closed (its time plus the window is at or before the newest event stored), so a label never
changes after it was learned. Positions are ``<microseconds since 1970>.<event_id>``, in time order; a
rerun resumes after the watermark. Exposures stored later with a time below the watermark are not
learned (the store is read as an ordered log).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from battleground.incremental._records import IncrementalInputError
from battleground.incremental._sources import (
    SourceBatch,
    StreamSource,
    StreamSourceError,
    natural_key,
)

if TYPE_CHECKING:
    import pandas as pd

FEATURE_COLUMNS = ("value", "covariate", "variant")


class EventStoreSource(StreamSource):
    """Mini-batches of exposures from an event store (see the module docstring).

    Args:
        store: an :class:`~battleground.storage.events.EventStore`. experiment_id: the experiment.
        label_event: the event type that makes the label 1. exposure_event: the record-making event type.
        window: how long after an exposure the label event counts.
        features: declared columns among ``value``, ``covariate``, ``variant``.
        entity: ``"user_id"`` (a GLMix random effect per user) or None.
        batch_size: exposures per mini-batch.
    """

    positional = True

    def __init__(self, store: Any, experiment_id: int, *, label_event: str, exposure_event: str = "exposure",
                 window: dt.timedelta = dt.timedelta(days=1), features: Sequence[str] = ("variant",),
                 entity: str | None = None, batch_size: int = 1000) -> None:
        unknown = sorted(set(features) - set(FEATURE_COLUMNS))
        if unknown or not features:
            raise StreamSourceError(f"features must be some of {list(FEATURE_COLUMNS)}, got {list(features)}")
        if entity not in (None, "user_id"):
            raise StreamSourceError(f"entity must be 'user_id' or None, got {entity!r}")
        if window <= dt.timedelta(0):
            raise StreamSourceError(f"window must be > 0, got {window}")
        if batch_size < 1:
            raise IncrementalInputError(f"batch_size must be >= 1, got {batch_size}")
        self.store, self.experiment_id = store, int(experiment_id)
        self.label_event, self.exposure_event = label_event, exposure_event
        self.window, self.features, self.entity = window, list(features), entity
        self.batch_size = batch_size
        self._frame: pd.DataFrame | None = None
        self._keys: list[str] = []
        self._at = 0

    def describe(self) -> str:
        return f"events of experiment {self.experiment_id} ({self.exposure_event} → {self.label_event})"

    def open(self, after: str | None) -> None:
        import pandas as pd

        events = self.store.to_arrow(self.experiment_id).to_pandas()
        exp = events[events["event_type"] == self.exposure_event]
        if exp.empty:
            raise StreamSourceError(f"experiment {self.experiment_id} has no {self.exposure_event!r} events to "
                                    "learn from; pass the exposure event type with --exposure-event")
        horizon = events["ts"].max()
        ts_us = exp["ts"].astype("datetime64[us]").astype(np.int64).to_numpy()
        keys = [f"{t:017d}.{e}" for t, e in zip(ts_us, exp["event_id"].astype(str), strict=True)]
        exp = exp.assign(_key=keys)
        exp = exp.iloc[sorted(range(len(exp)), key=lambda i: natural_key(keys[i]))].reset_index(drop=True)
        labels = events[events["event_type"] == self.label_event][["user_id", "ts"]].sort_values("ts")
        firsts = pd.merge_asof(exp[["user_id", "ts"]].reset_index().sort_values("ts"),
                               labels.rename(columns={"ts": "label_ts"}), left_on="ts", right_on="label_ts",
                               by="user_id", direction="forward", allow_exact_matches=False)
        firsts = firsts.set_index("index").sort_index()
        gap = firsts["label_ts"] - firsts["ts"]
        label = (gap.notna() & (gap <= self.window)).astype(np.float64).to_numpy()
        frame = pd.DataFrame({"label": label, "weight": 1.0, "offset": 0.0})
        if self.entity == "user_id":
            frame.insert(0, "entity", exp["user_id"].astype(str).to_numpy())
        for col in self.features:
            if col == "variant":
                for v in sorted(events["variant"].dropna().unique()):
                    frame[f"variant|{v}"] = (exp["variant"] == v).astype(np.float64).to_numpy()
            else:
                frame[col] = pd.to_numeric(exp[col], errors="coerce").to_numpy(dtype=np.float64)
        closed = (exp["ts"] + self.window <= horizon).to_numpy()
        keep = closed.copy()
        if after is not None:
            mark = natural_key(after)
            keep &= np.array([natural_key(k) > mark for k in exp["_key"]], dtype=bool)
        self._frame = frame[keep].reset_index(drop=True)
        self._keys = exp["_key"][keep].tolist()
        self._at = 0

    def poll(self) -> SourceBatch | None:
        if self._frame is None:
            raise StreamSourceError("open the source before polling it")
        if self._at >= len(self._keys):
            return None
        sl = slice(self._at, min(self._at + self.batch_size, len(self._keys)))
        self._at = sl.stop
        frame = self._frame.iloc[sl].reset_index(drop=True)
        first, last = self._keys[sl.start], self._keys[sl.stop - 1]
        return SourceBatch(last, frame, f"events of experiment {self.experiment_id}, {first} .. {last}")
