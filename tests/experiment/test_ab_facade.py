"""The seed's ``experiment.ab_test`` example and the ABTest facade."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import scipy.optimize
import scipy.stats  # noqa: F401
from sklearn.base import clone

from battleground.experiment import ab_test
from battleground.experiment.ab_test import ABTest
from battleground.storage.sums import MetricSums

DATA = Path(__file__).parents[1] / "data" / "ab"


def test_seed_example_runs() -> None:
    # The seed: abtest = ABTest(); abtest.get_t_test(); abtest.get_sample_size() — with its inputs.
    abtest = ABTest(control=(1000, 10000), treatment=(1100, 10000), metric="proportion", mde=0.1)
    t = abtest.get_t_test()
    ref = json.loads((DATA / "f_gbstats_summary_stats.json").read_text())["gbstats"]["proportion"]
    assert t.p_value == pytest.approx(ref["freq_absolute"]["p_value"], rel=1e-6)
    n = abtest.get_sample_size()
    assert n.method == "unpooled" and n.n_control_ceil == 14749
    rel = abtest.get_relative_lift()
    assert rel.ci == pytest.approx(tuple(ref["freq_relative"]["ci"]), rel=1e-6)
    bayes = abtest.get_bayesian()
    assert bayes.chance_to_win == pytest.approx(ref["bayes_relative_improper"]["chance_to_win"], rel=1e-6)
    seq = abtest.get_sequential()
    assert seq.tau2 == pytest.approx(1e-4) and seq.p_value == pytest.approx(0.2676532900875326, rel=1e-6)


def test_seed_example_without_inputs_explains_what_is_missing() -> None:
    abtest = ABTest()
    with pytest.raises(ValueError, match="ABTest has no data: pass control= and treatment="):
        abtest.get_t_test()
    with pytest.raises(ValueError, match="mde is missing"):
        abtest.get_sample_size()
    # Planning alone needs no data when the design is given.
    assert ABTest(metric="proportion").get_sample_size(baseline=0.1, mde=0.1).n_control_ceil == 14749


def test_metric_sums_and_means_planning() -> None:
    c = MetricSums("control", 5000, 5000, 50000.0, 579984.0)
    t = MetricSums("treatment", 5100, 5100, 51765.0, 615361.11)
    abtest = ABTest(control=c, treatment=t, mde=0.02)
    r = abtest.get_t_test()
    assert r.method == "welch" and r.p_value == pytest.approx(0.06606247863343984, rel=1e-6)
    plan = abtest.get_sample_size()
    sd = ((579984.0 - 5000 * 10.0**2) / 4999) ** 0.5
    assert plan.std == pytest.approx(sd) and plan.effect == pytest.approx(0.2)
    student = ABTest(control=c, treatment=t, equal_var=True).get_t_test()
    assert student.method == "student" and student.df == 10098


def test_sklearn_params_protocol() -> None:
    a = ABTest(alpha=0.01, metric="ratio")
    b = clone(a)
    assert b.get_params()["alpha"] == 0.01 and b.metric == "ratio" and b is not a
    assert a.set_params(power=0.9).power == 0.9
    with pytest.raises(ValueError, match="invalid parameter 'powr'"):
        a.set_params(powr=0.9)
    with pytest.raises(ValueError, match="metric must be one of"):
        ABTest(control=[1, 2, 3], treatment=[1, 2, 4], metric="median").get_t_test()


def test_module_reexports_everything_of_stats() -> None:
    from battleground import stats

    for name in stats.__all__:
        if name not in ("MetricSpec", "VariantMetricRow", "analyze_metrics", "Result"):
            assert getattr(ab_test, name) is getattr(stats, name)


def test_ratio_and_cuped_metrics() -> None:
    e = json.loads((DATA / "e_ratio_delta_method.json").read_text())
    i = e["inputs"]
    ctrl = (i["control_clicks"], i["control_impressions"])
    trt = (i["treatment_clicks"], i["treatment_impressions"])
    ab = ABTest(control=ctrl, treatment=trt, metric="ratio", mde=0.1)
    gb = e["gbstats_RatioStatistic_TwoSidedTTest"]
    assert ab.get_t_test().p_value == pytest.approx(gb["absolute"]["p_value"], rel=1e-6)
    assert ab.get_relative_lift().se == pytest.approx(gb["relative"]["se"], rel=1e-6)
    plan = ab.get_sample_size()
    assert plan.metric == "ratio" and plan.n_control_ceil > 3000
    c = json.loads((DATA / "c_cuped.json").read_text())
    ci = c["inputs"]
    cu = ABTest(control=(ci["y_c"], ci["x_c"]), treatment=(ci["y_t"], ci["x_t"]), metric="cuped")
    r = cu.get_t_test()
    assert r.theta == pytest.approx(c["theta"], rel=1e-9) and r.p_value == pytest.approx(c["cuped_adjusted"]["p"], rel=1e-6)


@pytest.mark.timeout(10)  # scipy is imported when the module is collected, not inside the timed test
def test_planning_a_decrease_through_the_facade() -> None:
    # Issue 12: alternative="less" hung (normal_exact, cohens_h) or planned for the wrong direction.
    less = ABTest(mde=0.3, std=1.0, relative_mde=False, alternative="less", sample_size_method="normal_exact")
    greater = less.get_params() | {"alternative": "greater"}
    assert less.get_sample_size().n_control == pytest.approx(ABTest(**greater).get_sample_size().n_control, rel=1e-12)
    drop = ABTest(metric="proportion", baseline=0.1, mde=0.2, alternative="less", sample_size_method="cohens_h")
    r = drop.get_sample_size()
    assert r.alternative == "less" and r.effect == pytest.approx(0.02) and r.n_control_ceil > 0


def test_cuped_facade_with_shifted_sums() -> None:
    from battleground.stats import CupedSummary

    c = CupedSummary(n=4, sum_y=0.0, sum_y2=2.0, sum_x=0.0, sum_x2=2.0, sum_xy=1.5, shift_y=1e8, shift_x=5e7)
    abtest = ABTest(control=c, metric="cuped", mde=0.01)
    n = abtest.get_sample_size()
    assert n.baseline == 1e8 and n.std == pytest.approx((2.0 / 3) ** 0.5, rel=1e-12)
