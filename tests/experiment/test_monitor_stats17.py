"""Issue 17 in Monitor and the decision: the sequential SRM beside the χ² one, the one-sided and
group-sequential designs, mid-experiment power (in-memory backend of test_ab_monitoring_logic)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from test_ab_monitoring_logic import START, MemoryBackend, make_info

from battleground.experiment._decide import decide
from battleground.experiment._quality import sequential_srm_check, srm_check
from battleground.experiment.monitoring import Monitor, VariantInfo
from battleground.stats import MetricSpec, StatsInputError, sequential_srm_test, srm_test
from battleground.stats._design_rows import design_path

NOW = START + dt.timedelta(days=10)


# ------------------------------------------------------------------ sequential SRM: the decision


@pytest.mark.parametrize(
    ("counts", "weights", "status"),
    [
        ([[1, 0]], [0.5, 0.5], "ok"),  # one user: no evidence either way
        ([[0, 0, 0], [1, 0, 0]], [1 / 3, 1 / 3, 1 / 3], "ok"),  # zeros, then one user, three arms
        ([[10**9, 10**9, 10**9, 10**9]], [0.25] * 4, "ok"),  # huge balanced counts stay finite and ok
        ([[10**9, 10**9 + 10**6]], [0.5, 0.5], "alert"),  # huge counts, a 0.05 % imbalance
        ([[3000, 3000, 1200]], [0.4, 0.4, 0.2], "alert"),  # 3 arms with unequal weights: arm 3 short
        ([[400, 400, 200]], [0.4, 0.4, 0.2], "ok"),
    ],
    ids=["one-user", "zeros-3-arms", "huge-balanced", "huge-imbalanced", "3-arms-short", "3-arms-ok"],
)
def test_sequential_srm_decision_on_adversarial_inputs(counts, weights, status) -> None:  # type: ignore[no-untyped-def]
    r = sequential_srm_test(counts, weights)
    assert r.status == status and 0.0 <= r.p_value <= 1.0 and math.isfinite(r.log_bayes_factor)
    check = sequential_srm_check(r)
    assert check is not None and check.status == {"ok": "ok", "warn": "warn", "alert": "fail"}[status]


@pytest.mark.parametrize("bad", [[[1.5, 2]], [[-1, 2]], [[1, 2, 3]], [[5]], [[1, 2], [0, 2]]],
                         ids=["fraction", "negative", "weights-mismatch", "one-arm", "cumulative-decreases"])
def test_sequential_srm_refuses_impossible_counts(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StatsInputError):
        sequential_srm_test(bad, [0.5, 0.5], cumulative=True)


def test_classic_alert_only_warns_when_peeked() -> None:
    srm = srm_test([5200, 4800])
    assert srm.status == "alert"
    assert srm_check(srm).status == "fail"  # type: ignore[union-attr]
    peeked = srm_check(srm, peeked=True)
    assert peeked is not None and peeked.status == "warn" and "sequential SRM decides" in peeked.detail


def test_monitor_shows_both_srm_checks_and_the_sequential_one_blocks() -> None:
    broken = MemoryBackend(make_info(sequential=True), 8, {"control": 700, "green": 500},
                           {"control": 0.1, "green": 0.1})
    res = Monitor(source=broken).put_experiment_id(experiment_id=7).result(now=NOW)
    names = [c.name for c in res.data_quality]
    assert names[:2] == ["srm", "sequential_srm"]
    assert res.sequential_srm is not None and res.sequential_srm.looks == 8
    assert res.sequential_srm.status == "alert" and res.decision.verdict == "data_quality"
    assert any("sequential_srm" in r for r in res.decision.reasons)
    fine = MemoryBackend(make_info(), 8, {"control": 500, "green": 500}, {"control": 0.1, "green": 0.1})
    res = Monitor(source=fine).put_experiment_id(experiment_id=7).result(now=NOW)
    assert res.sequential_srm is not None and res.sequential_srm.status == "ok"


def test_cron_records_the_sequential_srm_alert() -> None:
    broken = MemoryBackend(make_info(sequential=True), 8, {"control": 700, "green": 500},
                           {"control": 0.1, "green": 0.1})
    report = Monitor(source=broken).put_experiment_id(experiment_id=7).check_end_conditions(now=NOW)
    assert report.sequential_srm_status == "alert" and report.sequential_srm_p_value < 1e-3
    assert broken.records and "always-valid p" in broken.records[0]


# ------------------------------------------------------------------ designs


def _gst_info(design: str, **kw):  # type: ignore[no-untyped-def]
    return make_info(sequential=True, design=design, target_sample_size=kw.pop("target", 5000), **kw)


@pytest.mark.parametrize("design", ["obrien_fleming", "pocock", "one_sided"])
def test_designs_ship_a_clear_winner_and_say_which_method(design: str) -> None:
    b = MemoryBackend(_gst_info(design), 10, {"control": 500, "green": 500}, {"control": 0.10, "green": 0.16})
    res = Monitor(source=b).put_experiment_id(experiment_id=7).result(now=NOW)
    green = next(r for r in res.rows if r.metric == "conversion" and r.variant == "green")
    assert green.method == (design if design == "one_sided" else f"gst_{design}")
    assert res.design == design and res.decision.verdict == "ship" and res.decision.best == "green"
    if design == "one_sided":
        assert green.abs_ci_upper == math.inf
    daily = Monitor(source=b).put_experiment_id(experiment_id=7).get_daily_result()
    assert daily["date"].nunique() == 10


def test_group_sequential_no_effect_is_not_shipped_and_a_harm_is_caught() -> None:
    aa = MemoryBackend(_gst_info("obrien_fleming"), 10, {"control": 500, "green": 500}, {"control": 0.1, "green": 0.1})
    assert Monitor(source=aa).put_experiment_id(experiment_id=7).result(now=NOW).decision.verdict == "inconclusive"
    harm = MemoryBackend(_gst_info("pocock"), 10, {"control": 500, "green": 500}, {"control": 0.16, "green": 0.10})
    assert Monitor(source=harm).put_experiment_id(experiment_id=7).result(now=NOW).decision.verdict == "dont_ship"
    # the one-sided design cannot call a harm significant: it just does not ship
    one = MemoryBackend(make_info(sequential=True, design="one_sided"), 10, {"control": 500, "green": 500},
                        {"control": 0.16, "green": 0.10})
    assert Monitor(source=one).put_experiment_id(experiment_id=7).result(now=NOW).decision.verdict == "inconclusive"


def test_group_sequential_stops_at_the_boundary_in_end_conditions() -> None:
    b = MemoryBackend(_gst_info("obrien_fleming"), 10, {"control": 500, "green": 500}, {"control": 0.10, "green": 0.16})
    report = Monitor(source=b).put_experiment_id(experiment_id=7).check_end_conditions(now=NOW)
    assert report.stopped and any("sequential boundary crossed" in r for r in report.reasons)


def test_group_sequential_without_target_is_refused() -> None:
    b = MemoryBackend(make_info(sequential=True, design="pocock"), 3, {"control": 50, "green": 50},
                      {"control": 0.1, "green": 0.1})
    with pytest.raises(StatsInputError, match="target sample size"):
        Monitor(source=b).put_experiment_id(experiment_id=7).result(now=NOW)


def test_design_rows_match_the_bounds_and_decide_reads_them() -> None:
    """The group-sequential row is significant exactly when |z| crosses the look's boundary."""
    from battleground.stats import group_sequential_bounds
    from battleground.storage.sums import MetricSums

    spec = MetricSpec("m", "mean")
    looks, fr = [], []
    for k, shift in enumerate([0.0, 0.02, 0.05]):
        n = 1000 * (k + 1)
        looks.append({"m": [MetricSums("control", n, n, 10.0 * n, 104.0 * n),
                            MetricSums("t", n, n, (10.0 + shift) * n, (104.0 + 20 * shift) * n)]})
        fr.append(n / 3000)
    path = design_path([spec], looks, control="control", design="obrien_fleming", information_fractions=fr)
    c = group_sequential_bounds(fr).z_bounds
    for rows, bound in zip(path, c, strict=True):
        t = rows[1]
        se = math.sqrt(4.0 / t.users * 2 * t.users / (t.users - 1))
        crossed = abs(t.abs_lift) / se >= bound
        assert (t.p_value <= 0.05) is crossed and (t.abs_ci_lower > 0) is crossed
    info = make_info(metrics=(spec,), variants=(VariantInfo("control", 0.5, True), VariantInfo("t", 0.5, False)),
                     sequential=True, design="obrien_fleming", target_sample_size=3000)
    d = decide(info, path[-1])
    assert d.verdict in ("ship", "inconclusive")
    assert (d.verdict == "ship") is bool(path[-1][1].abs_ci_lower > 0)


# ------------------------------------------------------------------ mid-experiment power


def test_mid_experiment_power_in_monitor() -> None:
    b = MemoryBackend(make_info(mde=0.05, target_sample_size=20_000), 10, {"control": 300, "green": 300},
                      {"control": 0.10, "green": 0.10})
    res = Monitor(source=b).put_experiment_id(experiment_id=7).result(now=NOW)
    (p,) = res.power
    assert p.metric == "conversion" and p.variant == "green" and p.mde == 0.05
    assert 0 < p.power_now < p.power_at_plan < 1
    assert p.additional_users is not None and p.additional_users > 0
    assert p.additional_days == pytest.approx(p.additional_users / (6000 / 10.0), rel=1e-9)
    none = MemoryBackend(make_info(), 3, {"control": 30, "green": 30}, {"control": 0.1, "green": 0.1})
    assert Monitor(source=none).put_experiment_id(experiment_id=7).result(now=NOW).power == ()


def test_mid_experiment_power_with_no_variation_says_so() -> None:
    b = MemoryBackend(make_info(mde=0.05), 2, {"control": 50, "green": 50}, {"control": 0.0, "green": 0.0})
    res = Monitor(source=b).put_experiment_id(experiment_id=7).result(now=NOW)
    (p,) = res.power
    assert math.isnan(p.power_now) and "not estimable" in p.message
    assert np.isnan(p.additional_days)
