"""The agreement ledger: did the offline estimate predict what the experiment then saw?

When a policy (or model) scored offline goes into an A/B or bandit-vs-control experiment, its offline
estimate, interval and estimator are recorded in the registry beside the experiment (table
``ope_ledger``, migration 0005), one row per candidate × estimator. A candidate is named by the
variant that serves it. When the experiment ends, the value each variant observed online (the mean
reward per decision, with its normal interval) is recorded next to every estimate of that candidate.

:func:`track_record` turns the closed rows into each estimator's record across experiments:

* **bias**: mean of offline − online; **MAE**: mean of |offline − online|;
* **coverage**: the share of rows whose offline interval holds the online value;
* **rank agreement**: over every pair of candidates in the same experiment, the share ordered the same
  way offline and online (pairs tied online are left out).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from battleground.decisions._deploy import DecisionInputError

if TYPE_CHECKING:
    from battleground.ope import OPEEstimate
    from battleground.settings import Settings
    from battleground.storage.decisions import DecisionLog

__all__ = ["Ledger", "LedgerEntry", "TrackRecord", "close_on_stop", "track_record"]

_log = logging.getLogger("battleground.decisions")
# how long a stop waits for an embedded store held by a running decision service before it leaves the
# entries open (``battleground decisions close`` closes them later)
_STOP_LOCK_TIMEOUT = 10.0


@dataclass(frozen=True)
class LedgerEntry:
    """One candidate's offline estimate by one estimator, and (once closed) the online value."""

    id: int
    experiment_id: int
    experiment: str
    candidate: str
    estimator: str
    offline_value: float
    offline_low: float
    offline_high: float
    alpha: float
    n_rounds: int
    source: str | None
    recorded_at: dt.datetime
    online_value: float | None = None
    online_low: float | None = None
    online_high: float | None = None
    online_n: int | None = None
    closed_at: dt.datetime | None = None

    @property
    def closed(self) -> bool:
        return self.online_value is not None

    @property
    def error(self) -> float | None:
        return None if self.online_value is None else self.offline_value - self.online_value

    @property
    def covered(self) -> bool | None:
        if self.online_value is None:
            return None
        return self.offline_low <= self.online_value <= self.offline_high

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error": self.error, "covered": self.covered}


@dataclass(frozen=True)
class TrackRecord:
    """One estimator's record over the closed ledger rows."""

    estimator: str
    experiments: int
    entries: int
    bias: float
    mae: float
    coverage: float
    rank_pairs: int
    rank_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def track_record(entries: Iterable[LedgerEntry]) -> list[TrackRecord]:
    """Per estimator (sorted by name): bias, MAE, coverage and rank agreement of the closed entries."""
    by_est: dict[str, list[LedgerEntry]] = {}
    for e in entries:
        if e.closed:
            by_est.setdefault(e.estimator, []).append(e)
    out = []
    for est in sorted(by_est):
        rows = by_est[est]
        errors = [float(e.error) for e in rows if e.error is not None]
        pairs = agree = 0
        by_exp: dict[int, list[LedgerEntry]] = {}
        for e in rows:
            by_exp.setdefault(e.experiment_id, []).append(e)
        for group in by_exp.values():
            for i, a in enumerate(group):
                for b in group[i + 1:]:
                    assert a.online_value is not None and b.online_value is not None
                    online = a.online_value - b.online_value
                    if online == 0:
                        continue
                    pairs += 1
                    agree += (a.offline_value - b.offline_value) * online > 0
        out.append(TrackRecord(
            est, len(by_exp), len(rows), sum(errors) / len(errors), sum(abs(x) for x in errors) / len(errors),
            sum(bool(e.covered) for e in rows) / len(rows), pairs, agree / pairs if pairs else math.nan,
        ))
    return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Ledger:
    """The ledger rows of one registry (``settings.registry_url``)."""

    def __init__(self, settings: Settings) -> None:
        from battleground.experiment.register import Registry

        self.settings = settings
        self.registry = Registry(settings)

    def _session(self) -> Any:
        from sqlalchemy.orm import Session

        from battleground.storage._db import registry_engine

        return Session(registry_engine(self.settings.registry_url))

    def record_offline(self, experiment: Any, candidate: str, estimates: Sequence[OPEEstimate], *,
                       source: str | None = None) -> list[LedgerEntry]:
        """Record ``candidate``'s offline estimates (one per estimator) beside ``experiment``.

        Recording again replaces the estimates of an entry that is not closed yet; a closed entry is
        kept as it is (its comparison is history) and refused.
        """
        from sqlalchemy import select

        from battleground.storage._models import LedgerRow

        exp = self.registry.get(experiment)
        if not isinstance(candidate, str) or not candidate.strip() or len(candidate) > 200:
            raise DecisionInputError(f"candidate must be a name of 1 to 200 characters (its variant), got {candidate!r}")
        if not estimates:
            raise DecisionInputError("give at least one offline estimate to record")
        now = _now()
        with self._session() as session, session.begin():
            for est in estimates:
                values = (est.value, est.ci_low, est.ci_high)
                if not all(math.isfinite(float(v)) for v in values):
                    raise DecisionInputError(
                        f"the {est.estimator} estimate of {candidate!r} is not finite ({values}); nothing was recorded")
                row = session.scalars(select(LedgerRow).where(
                    LedgerRow.experiment_id == exp.id, LedgerRow.candidate == candidate,
                    LedgerRow.estimator == est.estimator)).first()
                if row is not None and row.online_value is not None:
                    raise DecisionInputError(
                        f"the ledger entry {candidate!r}/{est.estimator} of experiment {exp.name!r} is closed; "
                        "record the estimate of a new experiment instead")
                if row is None:
                    row = LedgerRow(experiment_id=exp.id, candidate=candidate, estimator=est.estimator)
                    session.add(row)
                row.offline_value, row.offline_low, row.offline_high = (float(v) for v in values)
                row.alpha, row.n_rounds, row.source, row.recorded_at = float(est.alpha), int(est.n_rounds), source, now
        return self.entries(exp.id)

    def record_online(self, experiment: Any, candidate: str, value: float, low: float, high: float, n: int) -> int:
        """Record the online value ``candidate`` observed in its open entries (a closed entry keeps its
        value: its comparison is history); returns how many entries it closed."""
        from sqlalchemy import select

        from battleground.storage._models import LedgerRow

        exp = self.registry.get(experiment)
        if not all(math.isfinite(float(v)) for v in (value, low, high)):
            raise DecisionInputError(f"the online value of {candidate!r} must be finite, got {(value, low, high)}")
        now = _now()
        with self._session() as session, session.begin():
            rows = list(session.scalars(select(LedgerRow).where(
                LedgerRow.experiment_id == exp.id, LedgerRow.candidate == candidate, LedgerRow.online_value.is_(None))))
            for row in rows:
                row.online_value, row.online_low, row.online_high = float(value), float(low), float(high)
                row.online_n, row.closed_at = int(n), now
        return len(rows)

    def close(self, experiment: Any, *, alpha: float = 0.05, strict: bool = True,
              log: DecisionLog | None = None) -> dict[str, tuple[float, float, float, int]]:
        """Record the online value of every candidate of ``experiment`` with open entries, from its
        decision log: the mean reward per rewarded decision of the candidate's variant, with a normal
        interval (rewards posted to ``/reward`` and those of ingested events, every window settled).

        Idempotent: entries closed before keep their values (a candidate whose entries are all closed is
        answered with its stored value and the log is not read). ``strict=False`` leaves a candidate
        with fewer than two rewarded decisions open instead of raising (what a stop does). Returns
        candidate → (value, low, high, n).
        """
        import numpy as np

        from battleground.decisions._rewards import attach_event_rewards
        from battleground.storage.decisions import open_decision_log

        exp = self.registry.get(experiment)
        entries = self.entries(exp.id)
        if not entries:
            raise DecisionInputError(f"experiment {exp.name!r} has no offline estimate in the ledger; record one first")
        pending = sorted({e.candidate for e in entries if not e.closed})
        out = {e.candidate: (float(e.online_value), float(e.online_low), float(e.online_high), int(e.online_n))
               for e in entries if e.closed and e.candidate not in pending
               and e.online_low is not None and e.online_high is not None and e.online_n is not None
               and e.online_value is not None}
        if not pending:
            return out
        log = log or open_decision_log(self.settings)
        # the experiment is over, so is every decision's window: settle the rewards of ingested events
        attach_event_rewards(self.settings, str(exp.id), log=log, final=True)
        rows = log.read(experiment_id=exp.id, rewarded_only=True)
        z = NormalDist().inv_cdf(1 - alpha / 2)
        for c in pending:
            r = rows.reward[rows.variant == c]
            if r.size < 2:
                if not strict:
                    continue
                raise DecisionInputError(
                    f"variant {c!r} of experiment {exp.name!r} has {r.size} rewarded decision(s) in the store; "
                    "close it once the experiment has run, or record the value with record_online")
            mean, se = float(r.mean()), float(r.std(ddof=1) / np.sqrt(r.size))
            out[c] = (mean, mean - z * se, mean + z * se, int(r.size))
            self.record_online(exp.id, c, *out[c])
        return out

    def entries(self, experiment: Any = None) -> list[LedgerEntry]:
        """Every ledger row (of one experiment), oldest experiment first."""
        from sqlalchemy import select

        from battleground.storage._models import ExperimentRow, LedgerRow

        query = select(LedgerRow, ExperimentRow.name).join(ExperimentRow, ExperimentRow.id == LedgerRow.experiment_id)
        if experiment is not None:
            query = query.where(LedgerRow.experiment_id == self.registry.get(experiment).id)
        with self._session() as session:
            found = session.execute(query.order_by(LedgerRow.experiment_id, LedgerRow.candidate, LedgerRow.estimator)).all()
            return [LedgerEntry(r.id, r.experiment_id, name, r.candidate, r.estimator, r.offline_value, r.offline_low,
                                r.offline_high, r.alpha, r.n_rounds, r.source, r.recorded_at, r.online_value,
                                r.online_low, r.online_high, r.online_n, r.closed_at) for r, name in found]

    def track_record(self) -> list[TrackRecord]:
        return track_record(self.entries())


def close_on_stop(settings: Settings, experiment_id: int) -> dict[str, Any]:
    """Close the open ledger entries of an experiment that has just stopped (called by
    :meth:`battleground.experiment.register.Registry.stop`, whichever of the CLI, the API, the
    dashboard or a monitor's end condition stopped it). Never raises for a store that is busy or
    down, nor for a candidate without data: those entries stay open, for ``battleground decisions
    close``. Returns what it did (for the audit log): ``closed`` entries, ``candidates`` closed,
    ``left_open`` candidates, and ``error`` when the store could not be read."""
    from battleground.errors import BattlegroundError
    from battleground.storage.decisions import DecisionLog
    from battleground.storage.events import open_event_store

    ledger = Ledger(settings)
    before = {e.candidate for e in ledger.entries(experiment_id) if not e.closed}
    detail: dict[str, Any] = {}
    try:
        store = open_event_store(settings)
        if hasattr(store, "lock_timeout"):
            store.lock_timeout = min(float(store.lock_timeout), _STOP_LOCK_TIMEOUT)
        ledger.close(experiment_id, strict=False, log=DecisionLog(store))
    except BattlegroundError as exc:  # the stop stands; the entries wait for a manual close
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _log.warning("experiment %s stopped, its ledger entries stay open: %s", experiment_id, first)
        detail["error"] = first[:300]
    after = {e.candidate for e in ledger.entries(experiment_id) if not e.closed}
    closed = sum(1 for e in ledger.entries(experiment_id) if e.closed and e.candidate in before - after)
    return {"closed": closed, "candidates": sorted(before - after), "left_open": sorted(after), **detail}
