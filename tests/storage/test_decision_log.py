"""The decision log (storage/decisions.py) on both backends: idempotent on the decision id, the first
decision wins, exposures once per unit and experiment, rewards first-write-wins, reads by watermark."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from battleground.settings import Settings
from battleground.storage.decisions import (
    DecisionLog,
    DecisionRow,
    RewardRow,
    RewardRule,
    open_decision_log,
)

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


def _events(log: DecisionLog, rows: list[tuple[str, int, str, str, float, float | None]]) -> None:
    """Ingest events ``(event_id, experiment, unit, type, seconds after T0, value)``."""
    import pyarrow as pa

    from battleground.storage._arrow import EVENT_SCHEMA

    log.store.write_batch(pa.Table.from_pylist([
        {"event_id": i, "experiment_id": e, "variant": "bandit", "user_id": u, "event_type": t,
         "ts": T0 + dt.timedelta(seconds=s), "value": v, "covariate": None} for i, e, u, t, s, v in rows],
        schema=EVENT_SCHEMA))


def _decision(i: str, unit: str, seconds: float, *, exp: int | None = 7) -> DecisionRow:
    return DecisionRow(i, "coupons", exp, "bandit" if exp else None, unit, (0.0,), 1, 0.5, 1, True,
                       T0 + dt.timedelta(seconds=seconds))


def test_ingested_events_become_rewards_of_the_latest_decision_in_their_window(backend: Settings) -> None:
    log = open_decision_log(backend)
    log.log([
        _decision("a1", "a", 0), _decision("a2", "a", 10),  # two decisions of one unit inside one window
        _decision("b1", "b", 0),  # its only event comes after the window
        _decision("c1", "c", 0),  # rewarded through /reward before the match
        _decision("e1", "e", 0), _decision("e2", "e", 2),  # e1's /reward event comes after e2
        _decision("f1", "f", 50),  # window still open at the first match
        _decision("g1", "g", 0, exp=None),  # outside an experiment: the unit's events of any experiment
    ])
    assert log.reward([RewardRow("c1", 9.0, T0), RewardRow("e1", 4.0, T0 + dt.timedelta(seconds=3))]) == ["stored"] * 2
    _events(log, [
        ("p1", 7, "a", "purchase", 5, 2.0),  # → a1
        ("p2", 7, "a", "purchase", 12, 3.0), ("p3", 7, "a", "purchase", 15, None),  # → a2: 3 + 1
        ("p4", 8, "a", "purchase", 6, 50.0),  # another experiment: not a1's
        ("k1", 7, "a", "click", 6, 1.0),  # another event type
        ("p5", 7, "b", "purchase", -5, 100.0),  # before any decision: ignored
        ("p6", 7, "b", "purchase", 70, 100.0),  # 70 s after b1, the window is 60 s: ignored
        ("p7", 7, "c", "purchase", 3, 5.0),  # c1 has its /reward already: not counted twice
        ("p8", 7, "f", "purchase", 55, 1.5),
        ("p9", 3, "g", "purchase", 1, 7.0),
    ])
    rule = RewardRule("purchase", 60.0)
    assert log.match_events(rule, policy="coupons", now=T0 + dt.timedelta(seconds=61)) == 3  # windows over by 61 s
    assert log.read(policy="coupons", rewarded_only=True).decision_id.tolist() == ["a1", "b1", "c1", "e1", "g1"]
    assert log.match_events(rule, policy="coupons", now=T0 + dt.timedelta(seconds=100)) == 2  # a2 (70 s), e2 (62 s)
    rows = log.read(policy="coupons")
    got = dict(zip(rows.decision_id.tolist(), rows.reward.tolist(), strict=True))
    assert {k: v for k, v in got.items() if k != "f1"} == {"a1": 2.0, "a2": 4.0, "b1": 0.0, "c1": 9.0, "e1": 4.0,
                                                             "e2": 0.0, "g1": 7.0}
    assert np.isnan(got["f1"])  # its window (50 s … 110 s) is not over yet
    assert log.match_events(rule, policy="coupons", now=T0 + dt.timedelta(seconds=100)) == 0  # idempotent
    assert log.match_events(rule, policy="coupons", now=T0 + dt.timedelta(seconds=200)) == 1
    assert log.read(policy="coupons", rewarded_only=True).reward.tolist()[-2] == 1.5  # f1 (logged before g1)
    # the updater's watermark sees matched rewards like posted ones; a later /reward keeps the first
    assert len(log.read(policy="coupons", after_reward_seq=0)) == 8
    assert log.reward([RewardRow("a1", 2.0, T0), RewardRow("b1", 1.0, T0)]) == ["duplicate", "conflict"]
    assert log.count("coupons") == (8, 8, 8)
    # the log's own reward events (ids reward:<decision>) never match: x1's would land on x2
    log.log([_decision("x1", "x", 0), _decision("x2", "x", 2)])
    assert log.reward([RewardRow("x1", 4.0, T0 + dt.timedelta(seconds=3))]) == ["stored"]
    assert log.match_events(RewardRule("reward", 5.0, "any"), experiment_id=7, final=True) == 1
    assert log.read(policy="coupons").reward.tolist()[-2:] == [4.0, 0.0]


def test_a_window_of_none_lasts_until_the_next_decision_or_the_end(backend: Settings) -> None:
    log = open_decision_log(backend)
    log.log([_decision("a1", "a", 0), _decision("a2", "a", 1000)])
    _events(log, [("p1", 7, "a", "purchase", 999, None), ("p2", 7, "a", "purchase", 5000, None),
                  ("p3", 7, "a", "purchase", 6000, None)])
    rule = RewardRule("purchase", None, "any")
    assert log.match_events(rule, experiment_id=7, now=T0 + dt.timedelta(days=9)) == 1  # a2 waits for the end
    assert log.match_events(rule, experiment_id=7, final=True) == 1
    assert log.read(experiment_id=7).reward.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="window"):
        RewardRule("purchase", -1.0)
    with pytest.raises(ValueError, match="policy key or an experiment"):
        log.match_events(rule)


def test_a_held_store_stays_open_between_batches_while_other_threads_take_turns(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys
    import threading

    import duckdb

    from battleground.decisions._writer import GroupWriter

    opened: list[str] = []
    real = duckdb.connect

    def connect(*args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        opened.append(str(args[0]) if args else "")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(duckdb, "connect", connect)
    log = open_decision_log(settings)
    writer = GroupWriter(log)  # keeps the store for its life
    try:
        for i in range(12):  # one batch each: the writer waits between them
            assert writer.decide(_decision(f"w{i}", f"u{i}", i)).result(timeout=60)[1]
        assert len(opened) == 1  # opened once, not once per batch
        seen: list[tuple[int, int, int]] = []
        reader = threading.Thread(target=lambda: seen.append(open_decision_log(settings).count()))
        reader.start()
        reader.join(60)
        assert seen == [(12, 12, 0)] and len(opened) == 1  # another thread's turn on the open connection
        code = ("import sys\nfrom battleground.storage.events import open_event_store\n"
                "from battleground.storage._filelock import StoreLockedError\n"
                f"store = open_event_store({settings.events_url!r})\nstore.lock_timeout = 0.2\n"
                "try:\n    store.count()\nexcept StoreLockedError as exc:\n    print(exc)\n    sys.exit(3)\n")
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                               env={"PYTHONPATH": ":".join(sys.path), "PATH": "/usr/bin:/bin"})
        assert other.returncode == 3 and f"pid {__import__('os').getpid()}" in other.stdout  # it names the holder
    finally:
        writer.close()
    assert log.count() == (12, 12, 0) and len(opened) == 2  # let go at close: the next use opens again
