"""Dimension breakdowns (issue 17): per-slice effects with multiplicity correction and heterogeneous-
effect flags (slice vs rest), against scipy on raw data, hand-computed Holm/BH, adversarial slices and an
A/A simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from battleground.stats import (
    MeanSummary,
    RatioSummary,
    StatsInputError,
    adjust_pvalues,
    breakdown_test,
)


def _data(seed: int = 7) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    effects = {"US": 0.3, "DE": 0.0, "FR": -0.4, "JP": 0.1}
    sizes = {"US": 400, "DE": 250, "FR": 300, "JP": 120}
    return {k: {"control": rng.normal(1.0, 1.0, sizes[k]), "treatment": rng.normal(1.0 + e, 1.3, sizes[k] + 17)}
            for k, e in effects.items()}


def _welch(c: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """(difference, se, Welch df) the scipy way."""
    vc, vt = c.var(ddof=1) / c.size, t.var(ddof=1) / t.size
    df = (vc + vt) ** 2 / (vc**2 / (c.size - 1) + vt**2 / (t.size - 1))
    return float(t.mean() - c.mean()), math.sqrt(vc + vt), df


def test_slice_effects_and_heterogeneity_match_raw_data() -> None:
    raw = _data()
    slices = {k: {v: MeanSummary.from_array(a) for v, a in arms.items()} for k, arms in raw.items()}
    r = breakdown_test(slices, control="control")
    assert [s.slice for s in r.slices] == ["US", "DE", "FR", "JP"]
    for s in r.slices:
        c, t = raw[s.slice]["control"], raw[s.slice]["treatment"]
        want = sps.ttest_ind(t, c, equal_var=False)
        assert s.p_value == pytest.approx(want.pvalue, rel=1e-9)
        assert s.estimate == pytest.approx(t.mean() - c.mean(), rel=1e-12)
        d, se, df = _welch(c, t)
        q = sps.t.ppf(0.975, df)
        assert (s.ci_lower, s.ci_upper) == pytest.approx((d - q * se, d + q * se), rel=1e-9)
        # the rest: every other slice's users pooled (raw data concatenated)
        rc = np.concatenate([raw[k]["control"] for k in raw if k != s.slice])
        rt = np.concatenate([raw[k]["treatment"] for k in raw if k != s.slice])
        dr, ser, dfr = _welch(rc, rt)
        assert s.rest_estimate == pytest.approx(dr, rel=1e-9) and s.rest_se == pytest.approx(ser, rel=1e-9)
        z = (d - dr) / math.hypot(se, ser)
        nu = (se**2 + ser**2) ** 2 / (se**4 / df + ser**4 / dfr)
        assert s.heterogeneity_statistic == pytest.approx(z, rel=1e-9)
        assert s.heterogeneity_p_value == pytest.approx(2 * sps.t.sf(abs(z), nu), rel=1e-9)
    # Holm by hand over the four slices (m = 4)
    p = np.array([s.p_value for s in r.slices])
    order = np.argsort(p)
    holm = np.minimum(np.maximum.accumulate(p[order] * (4 - np.arange(4))), 1.0)
    want_adj = np.empty(4)
    want_adj[order] = holm
    assert [s.adjusted_p_value for s in r.slices] == pytest.approx(want_adj.tolist(), rel=1e-12)
    h = [s.heterogeneity_p_value for s in r.slices]
    assert [s.heterogeneity_adjusted_p_value for s in r.slices] == pytest.approx(
        list(adjust_pvalues(h, method="holm").adjusted), rel=1e-12)
    # FR (−0.4) and US (+0.3) each differ from the rest of the users; DE (0) and JP (+0.1) do not
    assert [s.slice for s in r.flagged] == ["US", "FR"]
    assert {s.slice for s in r.significant} >= {"US", "FR"}
    assert all(s.significant == (s.adjusted_p_value <= 0.05) for s in r.slices)  # type: ignore[operator]


def test_bh_is_used_when_asked_and_is_less_strict_than_holm() -> None:
    raw = _data()
    slices = {k: {v: MeanSummary.from_array(a) for v, a in arms.items()} for k, arms in raw.items()}
    holm = breakdown_test(slices, control="control", correction="holm")
    bh = breakdown_test(slices, control="control", correction="bh")
    p = [s.p_value for s in bh.slices]
    assert [s.adjusted_p_value for s in bh.slices] == pytest.approx(list(adjust_pvalues(p, method="bh").adjusted))
    assert all(b.adjusted_p_value <= h.adjusted_p_value + 1e-15  # type: ignore[operator]
               for b, h in zip(bh.slices, holm.slices, strict=True))
    assert bh.correction == "bh" and bh.to_dict()["slices"][0]["slice"] == "US"


def test_identical_slices_raise_no_flags() -> None:
    arms = {"control": MeanSummary(300, 1.0, 2.0), "treatment": MeanSummary(300, 1.5, 2.0)}
    r = breakdown_test({"a": arms, "b": arms, "c": arms}, control="control")
    assert r.flagged == ()
    for s in r.slices:
        assert s.heterogeneity_statistic == pytest.approx(0.0, abs=1e-12)
        assert s.heterogeneity_p_value == pytest.approx(1.0) and s.heterogeneity_adjusted_p_value == pytest.approx(1.0)
        assert s.rest_estimate == pytest.approx(0.5) and s.significant  # the effect itself is real


def test_a_slice_with_one_user_and_an_empty_slice_are_reported_not_tested() -> None:
    big = {"control": MeanSummary(200, 1.0, 1.0), "treatment": MeanSummary(200, 1.2, 1.0)}
    one = {"control": MeanSummary(1, 50.0, math.nan), "treatment": MeanSummary(5, 1.0, 1.0)}
    r = breakdown_test({"big": big, "other": big, "one": one, "empty": {}}, control="control")
    by = {s.slice: s for s in r.slices}
    assert by["one"].p_value is None and by["one"].adjusted_p_value is None and not by["one"].significant
    assert "n must be >= 2" in by["one"].note and (by["one"].n_control, by["one"].n_treatment) == (1.0, 5.0)
    assert by["empty"].note == "no users in an arm" and by["empty"].n_control == 0.0
    assert by["empty"].heterogeneity_p_value is None and not by["empty"].heterogeneous
    # the family is the two testable slices only: Holm multiplies the smaller p by 2, not 4
    p = sorted(s.p_value for s in (by["big"], by["other"]))  # type: ignore[type-var]
    assert by["big"].adjusted_p_value == pytest.approx(min(1.0, max(2 * p[0], p[1])))
    # the one-user slice's users still belong to the others' rest (its outlying 50.0 moves the rest)
    rest_c = MeanSummary(201, (200 * 1.0 + 50.0) / 201, 0.0)
    assert by["big"].rest_estimate == pytest.approx((200 * 1.2 + 5 * 1.0) / 205 - rest_c.mean)


def test_three_variants_each_compared_with_control_in_one_family() -> None:
    rng = np.random.default_rng(3)
    raw = {k: {v: rng.normal(mu, 1.0, 300) for v, mu in (("control", 0.0), ("b", 0.0), ("c", 0.5 if k == "x" else 0.0))}
           for k in ("x", "y", "z")}
    slices = {k: {v: MeanSummary.from_array(a) for v, a in arms.items()} for k, arms in raw.items()}
    r = breakdown_test(slices, control="control")
    assert [(s.slice, s.variant) for s in r.slices] == [(k, v) for k in "xyz" for v in "bc"]
    p = [s.p_value for s in r.slices]
    assert [s.adjusted_p_value for s in r.slices] == pytest.approx(list(adjust_pvalues(p).adjusted))
    assert ("x", "c") in [(s.slice, s.variant) for s in r.flagged]
    assert all(s.variant == "c" for s in r.flagged)  # b has no effect anywhere: never flagged
    assert max(r.slices, key=lambda s: abs(s.heterogeneity_statistic or 0.0)).slice == "x"
    want = sps.ttest_ind(raw["y"]["c"], raw["y"]["control"], equal_var=False).pvalue
    assert r.slices[3].p_value == pytest.approx(want, rel=1e-9)


def test_ratio_metric_rest_is_the_pooled_users() -> None:
    rng = np.random.default_rng(11)
    raw = {}
    for k in ("a", "b", "c"):
        raw[k] = {}
        for v in ("control", "treatment"):
            d = rng.poisson(10, 200) + 1.0
            raw[k][v] = (rng.binomial(d.astype(int), 0.1 if k != "b" or v == "control" else 0.2).astype(float), d)
    slices = {k: {v: RatioSummary.from_arrays(*a) for v, a in arms.items()} for k, arms in raw.items()}
    r = breakdown_test(slices, control="control", relative=True)
    from battleground.stats import ratio_test

    for s in r.slices:
        rest = {v: RatioSummary.from_arrays(np.concatenate([raw[k][v][0] for k in raw if k != s.slice]),
                                            np.concatenate([raw[k][v][1] for k in raw if k != s.slice]))
                for v in ("control", "treatment")}
        want = ratio_test(rest["control"], rest["treatment"], relative=True)
        assert s.rest_estimate == pytest.approx(want.estimate, rel=1e-9)
        assert s.rest_se == pytest.approx(want.se, rel=1e-9)
    assert "b" in [s.slice for s in r.flagged]
    assert max(r.slices, key=lambda s: abs(s.heterogeneity_statistic or 0.0)).slice == "b"


def test_proportions_rest_uses_p_times_one_minus_p() -> None:
    slices = {"a": {"c": MeanSummary.from_proportion(100, 1000), "t": MeanSummary.from_proportion(150, 1000)},
              "b": {"c": MeanSummary.from_proportion(300, 1000), "t": MeanSummary.from_proportion(300, 1000)}}
    r = breakdown_test(slices, control="c", proportion=True, distribution="normal")
    a = r.slices[0]
    se_rest = math.sqrt(0.3 * 0.7 / 1000 * 2)
    assert a.rest_se == pytest.approx(se_rest, rel=1e-12) and a.rest_estimate == pytest.approx(0.0, abs=1e-15)
    se_a = math.sqrt(0.1 * 0.9 / 1000 + 0.15 * 0.85 / 1000)
    z = 0.05 / math.hypot(se_a, se_rest)
    assert a.heterogeneity_statistic == pytest.approx(z, rel=1e-12)
    assert a.heterogeneity_p_value == pytest.approx(2 * sps.norm.sf(z), rel=1e-9)


@pytest.mark.parametrize(("slices", "kw", "match"), [
    ({}, {}, "at least one slice"),
    ({"a": {"t": MeanSummary(10, 1.0, 1.0)}}, {}, "control 'control' has no sums"),
    ({"a": {"control": MeanSummary(10, 1.0, 1.0), "t": RatioSummary(10, 1, 1, 1, 1, 1)}}, {}, "same kind"),
    ({"a": {"control": MeanSummary(10, 1.0, 1.0)}}, {"correction": "fdr"}, "correction must be one of"),
    ({"a": {"control": MeanSummary(10, 1.0, 1.0)}}, {"alpha": 1.5}, "alpha must be in"),
])
def test_bad_inputs_name_the_field(slices: dict, kw: dict, match: str) -> None:
    with pytest.raises(StatsInputError, match=match):
        breakdown_test(slices, control="control", **kw)


def test_aa_simulation_adjusted_false_positives_at_most_alpha() -> None:
    """No true effect anywhere: over 1,000 simulated experiments (4 slices of unequal size, skewed
    data) the share of experiments with any Holm-adjusted significant slice, and with any flagged
    slice, stays ≤ 5 % (family-wise control); bounded by count, seeded."""
    rng = np.random.default_rng(20261203)
    sizes = np.array([40, 80, 150, 300])
    sims = 1000
    any_sig = any_flag = 0
    for _ in range(sims):
        slices = {}
        for k, n in enumerate(sizes):
            c = rng.exponential(1.0 + k, n)
            t = rng.exponential(1.0 + k, n)
            slices[f"s{k}"] = {"control": MeanSummary(n, float(c.mean()), float(c.var(ddof=1))),
                               "treatment": MeanSummary(n, float(t.mean()), float(t.var(ddof=1)))}
        r = breakdown_test(slices, control="control")
        any_sig += bool(r.significant)
        any_flag += bool(r.flagged)
    assert any_sig / sims <= 0.05
    assert any_flag / sims <= 0.05
    assert any_sig > 10 and any_flag > 10  # and not vacuous: the tests do reject at about the nominal rate
