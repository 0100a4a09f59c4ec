"""The background updater: policies learn from logged rewards in mini-batches, behind an OPE guard.

Rewards are those posted to ``/reward`` and, when the spec names a ``reward_event``, the ingested
events matched to decisions by time window (attached at the start of every pass, see ``_rewards.py``).

Progressive validation: each new mini-batch of rewarded decisions (only rows that may train: never the
control slice) is first used to *evaluate*, then to *train*. The candidate (the live policy plus every
batch seen so far) and the live version are both scored by the guard's OPE estimator on the fresh
batch, which neither has trained on; the candidate goes live (a new version, checkpointed) only when
its estimate is at least the live version's lower bound. Then the candidate learns the batch.

The candidate and the watermark (the last reward ``seq`` learnt) are checkpointed after every batch,
so a restarted service continues where it stopped, without learning a batch twice.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from battleground.bandit._base import BasePolicy
    from battleground.decisions._deploy import PolicySpec, PolicyStore
    from battleground.decisions._writer import GroupWriter
    from battleground.storage.decisions import DecisionLog, LoggedDecisions

__all__ = ["GuardResult", "PolicyUpdater", "guard"]

log = logging.getLogger("battleground.decisions")


@dataclass(frozen=True)
class GuardResult:
    """One decision of the guard on one fresh batch."""

    estimator: str
    n_rounds: int
    live_version: int
    live_value: float
    live_low: float
    live_high: float
    candidate_value: float
    candidate_low: float
    candidate_high: float
    promoted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _estimate(policy: BasePolicy, batch: LoggedDecisions, estimator: str, alpha: float) -> Any:
    from battleground.ope import DR, IPS, SNIPS, Estimator, estimate_intervals, fit_reward_model

    dist = policy.action_dist(batch.context)
    est: Estimator = SNIPS() if estimator == "SNIPS" else IPS() if estimator == "IPS" else DR()
    q_hat = None
    if estimator == "DR":
        q_hat = fit_reward_model(batch.context, batch.action, batch.reward, dist.shape[1], random_state=0)
    return estimate_intervals([est], batch.action, batch.reward, batch.propensity, dist, q_hat,
                              ci="analytic", alpha=alpha)[0]


def guard(live: BasePolicy, candidate: BasePolicy, batch: LoggedDecisions, spec: PolicySpec,
          live_version: int) -> GuardResult:
    """Score ``candidate`` and ``live`` on ``batch`` (logged by the live policy); promote the candidate
    when its estimate is no worse than the live version's lower bound."""
    now = _estimate(copy.deepcopy(live), batch, spec.guard_estimator, spec.alpha)
    new = _estimate(copy.deepcopy(candidate), batch, spec.guard_estimator, spec.alpha)
    ok = bool(np.isfinite(new.value) and (not np.isfinite(now.ci_low) or new.value >= now.ci_low))
    return GuardResult(now.estimator, len(batch), live_version, now.value, now.ci_low, now.ci_high,
                       new.value, new.ci_low, new.ci_high, ok)


class PolicyUpdater:
    """Learns one deployed policy from its logged rewards (see the module docstring).

    Args:
        spec: the policy's specification (``batch_size``, the guard's estimator and level).
        store: where versions and checkpoints live.
        writer: the decision log's writer (reads go through its thread).
        live: the live version number and policy at start.
        on_live: called with ``(version, policy)`` when a new version goes live.
    """

    def __init__(self, spec: PolicySpec, store: PolicyStore, writer: GroupWriter, live: tuple[int, BasePolicy],
                 on_live: Callable[[int, BasePolicy], None], *, interval: float = 1.0) -> None:
        from battleground.bandit._base import load_policy

        self.spec = spec
        self.store = store
        self.writer = writer
        self.live_version, self.live = live[0], copy.deepcopy(live[1])
        self.on_live = on_live
        self.interval = interval
        state = store.updater_state(spec.key)
        self.reward_seq = int(state.get("reward_seq", 0))
        self.batches = int(state.get("batches", 0))
        self.fresh = int(state.get("fresh", 0))  # batches the candidate learnt that the live version has not
        folder = store.folder(spec.key)
        name = state.get("candidate")
        path = folder / name if name else folder / "candidate.npz"
        self.candidate = load_policy(path) if path.exists() else copy.deepcopy(self.live)
        self.history: list[GuardResult] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PolicyUpdater:
        self._thread = threading.Thread(target=self._loop, name=f"battleground-updater-{self.spec.key}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except Exception:  # keep serving; the next pass retries
                log.exception("updater of %s failed; retrying in %.1f s", self.spec.key, self.interval)

    def step(self) -> list[GuardResult]:
        """Learn every complete mini-batch logged since the watermark; returns the guard's decisions."""
        key, wm, rule = self.spec.key, self.reward_seq, self.spec.reward_rule()

        def read(log: DecisionLog) -> LoggedDecisions:
            if rule is not None:  # rewards of ingested events whose window is over (spec.reward_event)
                log.match_events(rule, policy=key)
            return log.read(policy=key, after_reward_seq=wm, trains=True)

        rows: LoggedDecisions = self.writer.call(read).result()
        out = []
        size = self.spec.batch_size
        for lo in range(0, len(rows) - size + 1, size):
            batch = rows.where(np.arange(lo, lo + size))
            out.append(self._learn(batch))
        return out

    def _learn(self, batch: LoggedDecisions) -> GuardResult | Any:
        result = None
        if self.fresh:
            result = guard(self.live, self.candidate, batch, self.spec, self.live_version)
            self.history.append(result)
            note = {"reward_seq": self.reward_seq, "batches": self.batches, **result.to_dict()}
            if result.promoted:
                self.live = copy.deepcopy(self.candidate)
                self.live_version = self.store.save_version(self.spec.key, self.live, {"reason": "guard passed", **note})
                self.fresh = 0
                self.on_live(self.live_version, copy.deepcopy(self.live))
            else:
                self.store.note(self.spec.key, {"reason": "guard refused", **note})
        self.candidate.update(batch.context, batch.action, batch.reward)
        self.reward_seq = int(batch.reward_seq.max())
        self.batches += 1
        self.fresh += 1
        self._checkpoint()
        return result

    def _checkpoint(self) -> None:
        folder = self.store.folder(self.spec.key)
        name = f"candidate-{self.batches:06d}.npz"
        self.candidate.save(folder / name)
        old = self.store.updater_state(self.spec.key).get("candidate")
        self.store.save_updater_state(self.spec.key, {"reward_seq": self.reward_seq, "batches": self.batches,
                                                      "fresh": self.fresh, "candidate": name})
        if old and old != name:
            (folder / old).unlink(missing_ok=True)
