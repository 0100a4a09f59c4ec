"""The background updater: mini-batches of the policy's own rewarded decisions (never the control
slice), progressive validation behind the OPE guard, checkpoints that resume without re-learning."""

from __future__ import annotations

import json

import numpy as np
from tests.decisions.conftest import seed_home

from battleground.bandit import LinTS
from battleground.decisions import DecisionService, PolicySpec, PolicyStore, PolicyUpdater
from battleground.decisions._updater import guard
from battleground.settings import Settings
from battleground.storage.decisions import LoggedDecisions


def _uniform_logs(n: int, best: int, seed: int = 0) -> LoggedDecisions:
    rng = np.random.default_rng(seed)
    action = rng.integers(3, size=n)
    reward = (action == best).astype(float) + rng.normal(0, 0.1, n)
    z = np.zeros(n)
    return LoggedDecisions(np.array([str(i) for i in range(n)], dtype=object), z.astype(object), z.astype(object),
                           np.column_stack([np.ones(n), rng.random(n)]), action, np.full(n, 1 / 3), z.astype(int),
                           np.ones(n, dtype=bool), reward, np.arange(n), np.arange(n))


def _prefers(arm: int) -> LinTS:
    logs = _uniform_logs(300, arm, seed=5)
    return LinTS(n_arms=3, variance_scale=0.01, reg=1.0, random_state=0).fit(logs.context, logs.action, logs.reward)


def test_the_guard_promotes_a_better_candidate_and_refuses_a_worse_one() -> None:
    spec = PolicySpec("p", n_arms=3, n_features=2)
    batch = _uniform_logs(400, best=1)
    better = guard(_prefers(2), _prefers(1), batch, spec, live_version=4)
    assert better.promoted and better.candidate_value > 0.9 and better.live_value < 0.1
    worse = guard(_prefers(1), _prefers(2), batch, spec, live_version=4)
    assert not worse.promoted and worse.candidate_value < worse.live_low
    same = guard(_prefers(1), _prefers(1), batch, spec, live_version=4)
    assert same.promoted  # no worse than the live version's lower bound
    assert better.estimator == "snips" and better.n_rounds == 400


def _traffic(service: DecisionService, n: int, best: int, seed: int) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    served = control = 0
    for i in range(n):
        _row, fut = service.decide(f"u{seed}-{i}", "coupons", [1.0, rng.random()])
        stored, _ = fut.result()
        service.reward(stored.decision_id, float(stored.action == best)).result()
        served += stored.trains
        control += not stored.trains
    return served, control


def test_the_updater_learns_the_policy_slice_only_and_resumes_from_its_checkpoint(settings: Settings) -> None:
    home = seed_home(settings, batch_size=40)
    service = DecisionService(home, updaters=False)
    store = PolicyStore.of(home)
    spec = store.spec("coupons")
    live = service._policy("coupons")
    assert live is not None
    promoted: list[int] = []

    def on_live(version: int, policy: object) -> None:
        promoted.append(version)
        service._go_live("coupons", version, policy)  # type: ignore[arg-type]

    updater = PolicyUpdater(spec, store, service.writer, (live.version, live.policy), on_live)
    served, control = _traffic(service, 260, best=2, seed=1)
    assert control > 0
    results = updater.step()
    assert updater.batches == served // 40  # only the policy's own rows, in complete batches
    assert len(results) == served // 40 and results[0] is None  # the first batch only trains
    guarded = [r for r in results if r is not None]
    assert guarded and all(r.n_rounds == 40 for r in guarded)
    state = json.loads((store.folder("coupons") / "live.json").read_text())
    assert [h["live"] for h in state["history"][1:]] == [r.promoted for r in guarded]
    assert promoted == [v for v in range(2, 2 + len(promoted))] and service._live["coupons"].version == state["version"]
    # decisions after a promotion carry the new version
    _row, fut = service.decide("late", "coupons", [1.0, 0.5])
    stored, _ = fut.result()
    if stored.trains:
        assert stored.policy_version == state["version"]
    # a restarted updater resumes at the watermark: nothing is learnt twice
    again = PolicyUpdater(spec, store, service.writer, (state["version"], store.load_version("coupons", state["version"])),
                          on_live)
    assert again.reward_seq == updater.reward_seq and again.batches == updater.batches
    assert again.step() == []
    np.testing.assert_allclose(again.candidate.theta_, updater.candidate.theta_)
    service.close()
