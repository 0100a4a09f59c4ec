"""The agreement ledger: offline estimates beside the online value, each estimator's track record
(bias, coverage, rank agreement) on hand-checked entries, OPE from the store, the page and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pytest
from tests.decisions.conftest import seed_home

from battleground.decisions import Ledger, LedgerEntry, ope_from_store, track_record
from battleground.decisions._offline import control_policy
from battleground.ope import OPEEstimate, evaluate_policy
from battleground.settings import Settings
from battleground.storage.decisions import open_decision_log

T0 = dt.datetime(2026, 1, 1)


def _entry(exp: int, cand: str, est: str, off: float, low: float, high: float, on: float | None) -> LedgerEntry:
    return LedgerEntry(0, exp, f"e{exp}", cand, est, off, low, high, 0.05, 100, None, T0, on,
                       None if on is None else on - 0.1, None if on is None else on + 0.1, 10, T0)


def test_track_record_counts_bias_coverage_and_rank_agreement() -> None:
    entries = [
        _entry(1, "bandit", "dr", 1.2, 1.0, 1.4, 1.1),     # +0.1, covered
        _entry(1, "control", "dr", 0.8, 0.7, 0.9, 1.0),    # -0.2, missed; order right (1.2 > 0.8, 1.1 > 1.0)
        _entry(2, "bandit", "dr", 0.5, 0.4, 0.6, 0.9),     # -0.4, missed
        _entry(2, "control", "dr", 0.7, 0.6, 0.8, 0.7),    # 0, covered; order wrong (0.5 < 0.7 but 0.9 > 0.7)
        _entry(3, "a", "dr", 1.0, 0.0, 2.0, 1.0),          # tied online with b: no pair
        _entry(3, "b", "dr", 2.0, 0.0, 3.0, 1.0),
        _entry(1, "bandit", "ips", 2.0, 0.0, 4.0, 1.1),
        _entry(1, "control", "ips", 1.0, 0.0, 2.0, None),  # open: not in the record
    ]
    dr, ips = track_record(entries)
    assert dr.estimator == "dr" and dr.experiments == 3 and dr.entries == 6
    assert dr.bias == pytest.approx((0.1 - 0.2 - 0.4 + 0.0 + 0.0 + 1.0) / 6)
    assert dr.mae == pytest.approx((0.1 + 0.2 + 0.4 + 0.0 + 0.0 + 1.0) / 6)
    assert dr.coverage == pytest.approx(4 / 6)
    assert (dr.rank_pairs, dr.rank_agreement) == (2, 0.5)
    assert ips.entries == 1 and ips.rank_pairs == 0 and math.isnan(ips.rank_agreement)


def _log_uniform(settings: Settings, n: int = 600, seed: int = 0) -> np.ndarray:
    """Decisions of policy 'coupons' in experiment bvc logged as if by a uniform policy: arm 2 pays."""
    from battleground.experiment.register import Registry
    from battleground.storage.decisions import DecisionRow, RewardRow

    exp = Registry(settings.registry_url).get("bvc")
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(n), rng.random(n)])
    a = rng.integers(3, size=n)
    r = (a == 2) * 1.0 + rng.normal(0, 0.2, n)
    log = open_decision_log(settings)
    rows = [DecisionRow(f"d{i}", "coupons", exp.id, "control" if i % 2 else "bandit", f"u{i}", tuple(x[i]), int(a[i]),
                        1 / 3, 0 if i % 2 else 1, not i % 2, T0) for i in range(n)]
    log.log(rows)
    log.reward([RewardRow(f"d{i}", float(r[i]), T0) for i in range(n)])
    return np.column_stack([x, a, r])


def test_ope_from_the_store_matches_ope_on_the_same_arrays(settings: Settings) -> None:
    home = seed_home(settings)
    data = _log_uniform(home)
    best = control_policy(3, 2)
    res = ope_from_store(home, "bvc", {"arm2": best, "control": control_policy(3, "random")}, reward_model=False)
    assert res.n_rounds == 600 and res.experiment_id is not None
    x, a, r = data[:, :2], data[:, 2].astype(int), data[:, 3]
    direct = evaluate_policy(a, r, np.full(600, 1 / 3), best.action_dist(x), warn=False)
    got = res.table[res.table["candidate"] == "arm2"].set_index("estimator")["value"]
    for est, value in direct.to_frame().set_index("estimator")["value"].items():
        assert got[est] == pytest.approx(value, abs=1e-12)
    assert got["snips"] > 0.9  # arm 2 pays 1
    by_key = ope_from_store(home, "coupons", {"arm2": best}, reward_model=False)  # the policy key reads the same rows
    assert by_key.n_rounds == 600
    control_only = ope_from_store(home, "bvc", {"arm2": best}, variant="control", reward_model=False)
    assert control_only.n_rounds == 300


def test_the_ledger_records_offline_then_online_and_keeps_closed_entries(settings: Settings) -> None:
    home = seed_home(settings)
    data = _log_uniform(home)
    ledger = Ledger(home)
    ests = [OPEEstimate("dr", 0.95, 0.05, 0.85, 1.05, 0.05, "analytic", 600),
            OPEEstimate("snips", 1.3, 0.05, 1.2, 1.4, 0.05, "analytic", 600)]
    ledger.record_offline("bvc", "bandit", ests, source="test")
    ledger.record_offline("bvc", "control", [OPEEstimate("dr", 0.3, 0.05, 0.2, 0.4, 0.05, "analytic", 600)])
    assert all(not e.closed for e in ledger.entries("bvc"))
    observed = ledger.close("bvc")
    assert set(observed) == {"bandit", "control"} and observed["bandit"][3] == 300
    rewards = data[0::2, 3]  # even rows were logged in the bandit variant
    half = 1.959963984540054 * rewards.std(ddof=1) / np.sqrt(rewards.size)
    assert observed["bandit"][:3] == pytest.approx((rewards.mean(), rewards.mean() - half, rewards.mean() + half))
    entries = {(e.candidate, e.estimator): e for e in ledger.entries("bvc")}
    assert entries["bandit", "dr"].online_value == pytest.approx(observed["bandit"][0])
    with pytest.raises(ValueError, match="closed"):
        ledger.record_offline("bvc", "bandit", ests)
    with pytest.raises(ValueError, match="not finite"):
        ledger.record_offline("ab", "x", [OPEEstimate("dr", math.nan, 0, 0, 0, 0.05, "analytic", 1)])
    assert ledger.entries("ab") == []  # refused input leaves nothing behind
    (dr, snips) = ledger.track_record()
    assert dr.entries == 2 and snips.entries == 1


def test_the_ledger_page_and_the_cli_show_the_track_record(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from battleground.cli import app
    from battleground.web import create_app

    home = seed_home(settings)
    _log_uniform(home)
    ledger = Ledger(home)
    ledger.record_offline("bvc", "bandit", [OPEEstimate("dr", 0.95, 0.05, 0.85, 1.05, 0.05, "analytic", 600)])
    ledger.record_offline("bvc", "control", [OPEEstimate("dr", 0.3, 0.05, 0.2, 0.4, 0.05, "analytic", 600)])
    ledger.close("bvc")
    with TestClient(create_app(home), base_url="http://127.0.0.1") as c:
        page = c.get("/ledger")
        assert page.status_code == 200 and "track-record" in page.text and "bvc" in page.text
        api: Any = c.get("/api/ledger").json()
        assert api["track_record"][0]["estimator"] == "dr" and api["track_record"][0]["rank_pairs"] == 1
    monkeypatch.setenv("BATTLEGROUND_HOME", str(home.home))
    out = CliRunner().invoke(app, ["decisions", "ledger", "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output)
    assert payload["track_record"][0]["rank_agreement"] == 1.0 and len(payload["entries"]) == 2
    ope = CliRunner().invoke(app, ["bandit", "ope", "--from-store", "coupons", "--json"])
    assert ope.exit_code == 0, ope.output
    rows = json.loads(ope.output)
    assert {r["candidate"] for r in rows} == {"bandit", "control"} and len(rows) == 20
    missing = CliRunner().invoke(app, ["bandit", "ope", "--from-store", "nothing-here"])
    assert missing.exit_code == 1 and "nothing-here" in missing.output


def test_stopping_the_experiment_closes_its_open_ledger_entries_once(settings: Settings,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from battleground.cli import app
    from battleground.experiment.register import Registry
    from battleground.storage.decisions import DecisionRow, RewardRow

    home = seed_home(settings)
    data = _log_uniform(home)
    ledger = Ledger(home)
    ledger.record_offline("bvc", "bandit", [OPEEstimate("dr", 0.95, 0.05, 0.85, 1.05, 0.05, "analytic", 600),
                                            OPEEstimate("ips", 0.9, 0.05, 0.8, 1.0, 0.05, "analytic", 600)])
    ledger.record_offline("bvc", "control", [OPEEstimate("dr", 0.3, 0.05, 0.2, 0.4, 0.05, "analytic", 600)])
    ledger.record_offline("ab", "treatment", [OPEEstimate("dr", 0.3, 0.05, 0.2, 0.4, 0.05, "analytic", 600)])
    monkeypatch.setenv("BATTLEGROUND_HOME", str(home.home))
    out = CliRunner().invoke(app, ["experiment", "stop", "bvc", "--reason", "target reached"])
    assert out.exit_code == 0, out.output
    entries = {(e.candidate, e.estimator): e for e in ledger.entries("bvc")}
    assert all(e.closed for e in entries.values())
    for variant, rows in (("bandit", data[0::2, 3]), ("control", data[1::2, 3])):
        half = 1.959963984540054 * rows.std(ddof=1) / np.sqrt(rows.size)
        assert (entries[variant, "dr"].online_value, entries[variant, "dr"].online_low, entries[variant, "dr"].online_high,
                entries[variant, "dr"].online_n) == pytest.approx((rows.mean(), rows.mean() - half, rows.mean() + half, 300))
    assert entries["bandit", "ips"].online_value == entries["bandit", "dr"].online_value
    registry = Registry(home)
    assert [a.detail for a in registry.audit_log("bvc") if a.action == "close_ledger"] == [
        {"closed": 3, "candidates": ["bandit", "control"], "left_open": []}]
    # idempotent: a late reward and a second close change nothing that was closed
    log = open_decision_log(home)
    log.log([DecisionRow("late", "coupons", entries["bandit", "dr"].experiment_id, "bandit", "u-late", (1.0, 0.5), 2,
                         1 / 3, 1, True, T0)])
    log.reward([RewardRow("late", 100.0, T0)])
    again = ledger.close("bvc")
    assert again["bandit"][0] == entries["bandit", "dr"].online_value
    assert {(e.candidate, e.estimator): (e.online_value, e.closed_at) for e in ledger.entries("bvc")} == {
        k: (e.online_value, e.closed_at) for k, e in entries.items()}
    # a stop whose candidate has no rewarded decision leaves its entry open (closed later by hand), and
    # the experiment stops all the same
    stopped = registry.stop("ab", "no traffic")
    assert stopped.status == "stopped" and not ledger.entries("ab")[0].closed
    assert [a.detail["left_open"] for a in registry.audit_log("ab") if a.action == "close_ledger"] == [["treatment"]]
