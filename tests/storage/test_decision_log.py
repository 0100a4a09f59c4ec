"""The decision log (storage/decisions.py) on both backends: idempotent on the decision id, the first
decision wins, exposures once per unit and experiment, rewards first-write-wins, reads by watermark."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from battleground.settings import Settings
from battleground.storage.decisions import DecisionRow, RewardRow, open_decision_log

T0 = dt.datetime(2026, 1, 1)


@pytest.fixture(params=["duckdb", "postgresql"])
def backend(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    if request.param == "duckdb":
        return settings
    return request.getfixturevalue("postgres_settings")  # type: ignore[no-any-return]


def _row(i: int, *, exp: int | None = 7, unit: str | None = None, action: int = 0, trains: bool = True) -> DecisionRow:
    return DecisionRow(f"d{i}", "coupons", exp, "bandit" if exp else None, unit or f"u{i % 3}", (1.0, float(i)),
                       action, 0.25, 3, trains, T0 + dt.timedelta(seconds=i))


def test_a_resent_decision_is_stored_once_and_answers_as_first_logged(backend: Settings) -> None:
    log = open_decision_log(backend)
    first = log.log([_row(i) for i in range(6)])
    assert all(new for _, new in first)
    again = log.log([_row(1, action=2), _row(6), _row(6)])  # a re-send with another action, a new id twice
    assert [new for _, new in again] == [False, True, False]
    assert again[0][0].action == 0 and again[0][0].context == (1.0, 1.0)  # the stored answer, not the re-sent one
    assert log.count() == (7, 7, 0)


def test_exposures_are_written_once_per_unit_with_the_decision(backend: Settings) -> None:
    log = open_decision_log(backend)
    log.log([_row(i) for i in range(6)] + [_row(9, exp=None)])
    log.log([_row(i) for i in range(10, 13)])
    by_type = dict(log.store.count_by_type())
    assert by_type == {"exposure": 3}  # u0, u1, u2 in experiment 7; the decision outside it exposes nobody
    events = log.store.to_arrow(7).to_pydict()
    assert sorted(events["event_id"]) == ["exposure:7:u0", "exposure:7:u1", "exposure:7:u2"]
    assert set(events["variant"]) == {"bandit"}


def test_rewards_first_write_wins_and_unknown_ids_are_refused(backend: Settings) -> None:
    log = open_decision_log(backend)
    log.log([_row(i) for i in range(4)] + [_row(8, exp=None)])
    out = log.reward([RewardRow("d1", 1.5, T0), RewardRow("d1", 1.5, T0), RewardRow("d2", 0.0, T0),
                      RewardRow("nope", 1.0, T0), RewardRow("d8", 2.0, T0)])
    assert out == ["stored", "duplicate", "stored", "unknown", "stored"]
    assert log.reward([RewardRow("d2", 9.0, T0), RewardRow("d2", 0.0, T0)]) == ["conflict", "duplicate"]
    rows = log.read(policy="coupons")
    assert rows.reward[:3].tolist()[1:] == [1.5, 0.0] and np.isnan(rows.reward[0])
    # reward events of decisions in an experiment reach the A/B statistics, once each
    assert dict(log.store.count_by_type(7))["reward"] == 2
    assert log.count() == (5, 5, 3)


def test_reads_follow_the_reward_watermark_and_the_training_flag(backend: Settings) -> None:
    log = open_decision_log(backend)
    log.log([_row(i, trains=i % 2 == 0) for i in range(8)])
    log.reward([RewardRow(f"d{i}", float(i), T0) for i in (5, 2, 4, 0)])  # rewards arrive out of order
    train = log.read(policy="coupons", after_reward_seq=0, trains=True)
    assert train.decision_id.tolist() == ["d2", "d4", "d0"]  # by reward arrival, control rows excluded
    later = log.read(policy="coupons", after_reward_seq=int(train.reward_seq[0]), trains=True)
    assert later.decision_id.tolist() == ["d4", "d0"]
    assert train.context.shape == (3, 2) and train.propensity.tolist() == [0.25] * 3
    assert len(log.read(policy="coupons", rewarded_only=True, last=2)) == 2
