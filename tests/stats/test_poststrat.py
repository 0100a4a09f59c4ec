"""Post-stratification (``battleground.stats.post_stratified_test``): gbstats' own cases (ported from
its GitHub source, growthbook/growthbook packages/stats/tests/frequentist/test_post_strat.py, the
expected values of its current ``EffectMomentsPostStratification``), the inputs that break it, and
calibration by simulation (issue 17)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from battleground.stats import (
    CupedSummary,
    MeanSummary,
    RatioCupedSummary,
    RatioSummary,
    StatsInputError,
    Stratum,
    compare_means,
    cuped_test,
    post_stratified_test,
    post_stratify_moments,
    ratio_cuped_test,
    ratio_test,
)
from battleground.stats._poststrat import _effect_grad

# gbstats' five browser strata: (n, Σm, Σm²) per arm for the count metric, and Σd, Σd², Σmd for the ratio
_COUNT = [
    ((21, 330.0696210595999, 5377.811252605509), (42, 708.1220000911836, 12249.255519049513)),
    ((65, 1391.96628040659, 30546.63404187155), (75, 1807.4703052657744, 45000.287664918586)),
    ((102, 2916.824124651419, 86396.06886690554), (101, 3104.5399914554023, 98365.40553530994)),
    ((151, 5172.587929941052, 182453.04528037464), (121, 4613.696610070716, 180520.64781229294)),
    ((160, 6539.348445231273, 274981.98909352464), (162, 7431.953259880505, 349244.6690736718)),
]
_DENOM = [
    ((890.9766550739607, 38220.95223835553, 14263.937571840695), (1745.9858250014954, 73194.53424221886, 29826.620793423102)),
    ((2769.8126179473184, 118719.96077578884, 59924.702385890436), (3184.8395612061063, 136710.92474497214, 78119.14871556411)),
    ((4445.780384331884, 195387.7733842407, 129041.55268673625), (4235.277718489282, 179690.4720421368, 132444.36911739354)),
    ((6510.170220892494, 283094.7243365024, 226127.20135744457), (5079.943060454901, 215529.32009367683, 196562.8269130501)),
    ((6906.305872710853, 300900.3106781779, 286483.9732935189), (6899.004661928157, 296839.44355002965, 321057.8410309036)),
]


def _count_strata() -> list[Stratum]:
    return [Stratum(f"browser_{i}", MeanSummary.from_sums(*a), MeanSummary.from_sums(*b)) for i, (a, b) in enumerate(_COUNT)]


def _ratio(m: tuple, d: tuple) -> RatioSummary:
    n, sm, sm2 = m
    sd, sd2, smd = d
    return RatioSummary(n=n, sum_m=sm, sum_d=sd, sum_m2=sm2, sum_d2=sd2, sum_md=smd)


def _ratio_strata() -> list[Stratum]:
    return [Stratum(f"browser_{i}", _ratio(a, da), _ratio(b, db))
            for i, ((a, b), (da, db)) in enumerate(zip(_COUNT, _DENOM, strict=True))]


# ------------------------------------------------------------------ gbstats TestPostStratification
def test_gb_post_strat_count_effect_moments() -> None:
    rel = post_stratified_test(_count_strata(), relative=True)
    ab = post_stratified_test(_count_strata(), relative=False)
    assert rel.estimate == pytest.approx(0.10994584851937336, rel=1e-12)
    assert rel.se == pytest.approx(0.012225394656480164, rel=1e-10)
    assert ab.estimate == pytest.approx(3.548094377986586, rel=1e-12)
    assert ab.se == pytest.approx(0.37634374823059685, rel=1e-10)
    assert rel.n_control + rel.n_treatment == 1000  # gbstats' pairwise_sample_size
    assert rel.metric == "post_stratified_mean" and len(rel.strata) == 5


def test_gb_post_strat_ratio_effect_moments() -> None:
    rel = post_stratified_test(_ratio_strata(), relative=True)
    ab = post_stratified_test(_ratio_strata(), relative=False)
    assert rel.estimate == pytest.approx(0.13371299783026003, rel=1e-12)
    assert rel.se == pytest.approx(0.007131233706378072, rel=1e-10)
    assert ab.estimate == pytest.approx(0.10008903417216031, rel=1e-12)
    assert ab.se == pytest.approx(0.005071004003792392, rel=1e-10)
    assert rel.metric == "post_stratified_ratio"


def test_gb_post_strat_count_ci_uses_welch_df_of_the_pooled_arms() -> None:
    """gbstats' ``test_post_strat_count_gbstats``: CI = estimate ± t(1 − α/2, Welch df of the summed
    arms)·SE."""
    r = post_stratified_test(_count_strata(), relative=True)
    a = MeanSummary.from_sums(*(sum(c[0][i] for c in _COUNT) for i in range(3)))
    b = MeanSummary.from_sums(*(sum(c[1][i] for c in _COUNT) for i in range(3)))
    va, vb = a.var / a.n, b.var / b.n
    dof = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = sps.t.ppf(0.975, dof) * 0.012225394656480164
    assert r.df == pytest.approx(dof, rel=1e-12)
    assert (r.ci_lower, r.ci_upper) == pytest.approx((0.10994584851937336 - half, 0.10994584851937336 + half), rel=1e-9)


def test_gb_missing_variation_data_is_merged_into_the_largest_stratum() -> None:
    """gbstats' ``test_missing_variation_data``: one control user moved out of the largest stratum into
    a new stratum with no treatment user gives the original result (the cell is merged back)."""
    cells = _count_strata()
    (n, s, s2), b = _COUNT[-1]
    cells[-1] = Stratum("browser_4", MeanSummary.from_sums(n - 1, s - 1, s2 - 1), MeanSummary.from_sums(*b))
    cells.append(Stratum("lonely", MeanSummary.from_sums(1, 1, 1), MeanSummary(0, math.nan, math.nan)))
    got, want = post_stratified_test(cells, relative=False), post_stratified_test(_count_strata(), relative=False)
    assert got.estimate == pytest.approx(want.estimate, rel=1e-12)
    assert got.se == pytest.approx(want.se, rel=1e-10)
    assert got.strata[0] == "browser_4+lonely"


def test_gb_baseline_variation_zero_is_an_error() -> None:
    zero = [Stratum("a", MeanSummary.from_sums(21, 0, 10), MeanSummary.from_sums(42, 0, 10)),
            Stratum("b", MeanSummary.from_sums(65, 0, 10), MeanSummary.from_sums(75, 0, 10))]
    with pytest.raises(StatsInputError, match="control mean is 0"):
        post_stratified_test(zero, relative=True)
    assert post_stratified_test(zero, relative=False).estimate == pytest.approx(0.0, abs=1e-15)


def test_gb_zero_negative_variance_is_an_error() -> None:
    zero = [Stratum("a", MeanSummary.from_sums(21, 0, 0), MeanSummary.from_sums(42, 0, 0)),
            Stratum("b", MeanSummary.from_sums(65, 0, 0), MeanSummary.from_sums(75, 0, 0))]
    with pytest.raises(StatsInputError, match="zero variance"):
        post_stratified_test(zero, relative=False)


@pytest.mark.parametrize("relative", [True, False])
def test_gb_single_cell_is_the_unstratified_test(relative: bool) -> None:
    one = _count_strata()[:1]
    r = post_stratified_test(one, relative=relative)
    plain = compare_means(one[0].control, one[0].treatment, relative=relative)
    assert r.estimate == pytest.approx(plain.estimate, rel=1e-12)
    assert r.se == pytest.approx(plain.se, rel=1e-10)
    assert r.p_value == pytest.approx(plain.p_value, rel=1e-9)
    assert r.variance_reduction == pytest.approx(0.0, abs=1e-12)
    ro = _ratio_strata()[:1]
    rr, pr = post_stratified_test(ro, relative=relative), ratio_test(ro[0].control, ro[0].treatment, relative=relative)
    assert rr.estimate == pytest.approx(pr.estimate, rel=1e-12)
    assert rr.se == pytest.approx(pr.se, rel=1e-10)
    assert rr.df == pytest.approx(pr.df, rel=1e-10)


# ------------------------------------------------------------------ inputs that break it
def test_order_of_strata_does_not_matter() -> None:
    a = post_stratified_test(_ratio_strata())
    b = post_stratified_test(_ratio_strata()[::-1])
    assert (a.estimate, a.se, a.strata) == (pytest.approx(b.estimate, rel=1e-13), pytest.approx(b.se, rel=1e-12), b.strata)


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(StatsInputError, match="at least one stratum"):
        post_stratified_test([])
    mixed = [_count_strata()[0], _ratio_strata()[1]]
    with pytest.raises(StatsInputError, match="same kind"):
        post_stratified_test(mixed)
    one_user = [Stratum("a", MeanSummary(1, 1.0, math.nan), MeanSummary(50, 1.0, 1.0))]
    with pytest.raises(StatsInputError, match=r"control has n=1\.0 users over all strata"):
        post_stratified_test(one_user)
    with pytest.raises(StatsInputError, match="distribution"):
        post_stratified_test(_count_strata(), distribution="cauchy")  # type: ignore[arg-type]


def test_batched_moments_equal_the_public_test() -> None:
    cells = _count_strata()
    bar, cov = post_stratify_moments(
        [c.control.n for c in cells], [[c.control.mean] for c in cells], [[[c.control.var]] for c in cells],  # type: ignore[union-attr]
        [c.treatment.n for c in cells], [[c.treatment.mean] for c in cells], [[[c.treatment.var]] for c in cells],  # type: ignore[union-attr]
    )
    est, g, _, _ = _effect_grad(bar, True)
    assert float(est) == pytest.approx(0.10994584851937336, rel=1e-12)
    assert math.sqrt(float(g @ cov @ g)) == pytest.approx(0.012225394656480164, rel=1e-10)


# ------------------------------------------------------------------ calibration by simulation
def _simulate(seed: int, reps: int, n: int, effect: float, spread: float, base: float = 0.0) -> dict[str, np.ndarray]:
    """``reps`` experiments of ``n`` users, 4 strata (shares .4/.3/.2/.1) whose means differ by
    ``spread``, 50/50 split, normal noise sd 1; per (experiment, stratum, arm) n, mean, var and the
    pooled per-arm moments. Vectorised over experiments."""
    rng = np.random.default_rng(seed)
    k = 4
    stratum = rng.choice(k, size=(reps, n), p=[0.4, 0.3, 0.2, 0.1])
    arm = rng.integers(0, 2, size=(reps, n))
    y = base + spread * stratum + rng.normal(0.0, 1.0, size=(reps, n)) + effect * arm
    out: dict[str, np.ndarray] = {}
    for a, name in ((0, "c"), (1, "t")):
        mask = arm == a
        onehot = (stratum[..., None] == np.arange(k)) & mask[..., None]
        cnt = onehot.sum(axis=1).astype(float)
        s1 = np.einsum("rn,rnk->rk", y, onehot)
        s2 = np.einsum("rn,rnk->rk", y * y, onehot)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"n_{name}"], out[f"m_{name}"] = cnt, s1 / cnt
            out[f"v_{name}"] = (s2 - s1 * s1 / cnt) / (cnt - 1)
        tot = mask.sum(axis=1).astype(float)
        ys = np.where(mask, y, 0.0)
        out[f"N_{name}"], out[f"M_{name}"] = tot, ys.sum(axis=1) / tot
        out[f"V_{name}"] = ((ys * ys).sum(axis=1) - ys.sum(axis=1) ** 2 / tot) / (tot - 1)
    return out


def _z_tests(sim: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(post-stratified estimate, its p-value, unadjusted estimate, its p-value), absolute, z."""
    bar, cov = post_stratify_moments(sim["n_c"], sim["m_c"][..., None], sim["v_c"][..., None, None],
                                     sim["n_t"], sim["m_t"][..., None], sim["v_t"][..., None, None])
    est, g, _, _ = _effect_grad(bar, False)
    se = np.sqrt(np.einsum("ri,rij,rj->r", g, cov, g))
    plain = sim["M_t"] - sim["M_c"]
    plain_se = np.sqrt(sim["V_c"] / sim["N_c"] + sim["V_t"] / sim["N_t"])
    return est, 2 * sps.norm.sf(np.abs(est / se)), plain, 2 * sps.norm.sf(np.abs(plain / plain_se))


def test_aa_false_positive_rate_is_alpha_over_2000_experiments() -> None:
    sim = _simulate(seed=2017, reps=2000, n=400, effect=0.0, spread=1.0)
    assert np.all(sim["n_c"] >= 2) and np.all(sim["n_t"] >= 2)  # every stratum estimable: no merging here
    _, p, _, p_plain = _z_tests(sim)
    fpr = float(np.mean(p < 0.05))
    assert 0.04 <= fpr <= 0.06, fpr
    assert 0.04 <= float(np.mean(p_plain < 0.05)) <= 0.06


def test_variance_is_reduced_when_strata_predict_the_outcome() -> None:
    """Strata means 0, 2, 4, 6 against noise sd 1: the post-stratified estimates vary much less across
    2,000 experiments than the unadjusted ones (the real reduction, not only the estimated SE), and the
    estimated reduction of one experiment agrees with it."""
    sim = _simulate(seed=7, reps=2000, n=400, effect=0.2, spread=2.0)
    est, p, plain, p_plain = _z_tests(sim)
    assert est.mean() == pytest.approx(0.2, abs=0.01)  # unbiased
    reduction = 1 - est.var() / plain.var()
    assert reduction > 0.75
    assert np.mean(p < 0.05) > np.mean(p_plain < 0.05) + 0.3  # the power the reduction buys
    one = [Stratum(str(k), MeanSummary(sim["n_c"][0, k], sim["m_c"][0, k], sim["v_c"][0, k]),
                   MeanSummary(sim["n_t"][0, k], sim["m_t"][0, k], sim["v_t"][0, k])) for k in range(4)]
    r = post_stratified_test(one, relative=False)
    assert r.variance_reduction == pytest.approx(reduction, abs=0.1)


def test_no_gain_and_no_harm_when_strata_are_noise() -> None:
    sim = _simulate(seed=8, reps=2000, n=400, effect=0.0, spread=0.0)
    est, _, plain, _ = _z_tests(sim)
    assert est.var() / plain.var() == pytest.approx(1.0, abs=0.05)


def test_aa_calibration_relative_lift_and_ratio_metric() -> None:
    """The relative lift (delta method through (μ_C, Δ)) and a ratio metric (clicks/impressions per
    user, strata with different CTRs), A/A over 2,000 experiments each, vectorised."""
    _, p_rel_sim = _relative_p(_simulate(seed=31, reps=2000, n=400, effect=0.0, spread=1.0, base=5.0))
    assert 0.04 <= float(np.mean(p_rel_sim < 0.05)) <= 0.06
    rng = np.random.default_rng(32)
    reps, n, k = 2000, 400, 3
    stratum = rng.choice(k, size=(reps, n), p=[0.5, 0.3, 0.2])
    arm = rng.integers(0, 2, size=(reps, n))
    d = rng.poisson(5, size=(reps, n)) + 1.0
    m = rng.binomial(d.astype(int), np.array([0.05, 0.15, 0.3])[stratum]).astype(float)
    n_arm, mean_arm, cov_arm = [], [], []
    for a in (0, 1):
        oh = ((stratum[..., None] == np.arange(k)) & (arm == a)[..., None]).astype(float)
        cnt = oh.sum(axis=1)
        x = np.stack([m, d], axis=-1)  # (reps, n, 2)
        s1 = np.einsum("rnk,rni->rki", oh, x)
        s2 = np.einsum("rnk,rni,rnj->rkij", oh, x, x)
        mu = s1 / cnt[..., None]
        n_arm.append(cnt)
        mean_arm.append(mu)
        cov_arm.append((s2 - cnt[..., None, None] * mu[..., :, None] * mu[..., None, :]) / (cnt - 1)[..., None, None])
    bar, cov = post_stratify_moments(n_arm[0], mean_arm[0], cov_arm[0], n_arm[1], mean_arm[1], cov_arm[1])
    for relative in (True, False):
        est, g, _, _ = _effect_grad(bar, relative)
        z = est / np.sqrt(np.einsum("ri,rij,rj->r", g, cov, g))
        fpr = float(np.mean(2 * sps.norm.sf(np.abs(z)) < 0.05))
        assert 0.04 <= fpr <= 0.06, (relative, fpr)


def _relative_p(sim: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    bar, cov = post_stratify_moments(sim["n_c"], sim["m_c"][..., None], sim["v_c"][..., None, None],
                                     sim["n_t"], sim["m_t"][..., None], sim["v_t"][..., None, None])
    est, g, _, _ = _effect_grad(bar, True)
    se = np.sqrt(np.einsum("ri,rij,rj->r", g, cov, g))
    return est, 2 * sps.norm.sf(np.abs(est / se))


def test_huge_means_keep_their_precision() -> None:
    """Every value moved by 10⁹: the absolute effect and its SE do not move (the estimator works on
    means and variances, never on raw Σx² at 10¹⁸)."""
    base = post_stratified_test(_count_strata(), relative=False)
    big = post_stratified_test([Stratum(s.label, MeanSummary(s.control.n, s.control.mean + 1e9, s.control.var),  # type: ignore[union-attr]
                                        MeanSummary(s.treatment.n, s.treatment.mean + 1e9, s.treatment.var))  # type: ignore[union-attr]
                                for s in _count_strata()], relative=False)
    assert big.estimate == pytest.approx(base.estimate, rel=1e-6)
    assert big.se == pytest.approx(base.se, rel=1e-9)
    assert big.variance_reduction == pytest.approx(base.variance_reduction, rel=1e-7)  # means at 1e9 carry 1e-7


# ------------------------------------------------------------------ with CUPED in each stratum (gbstats' *_reg_* cases)
_PRE = [  # (Σx, Σx², Σxy) per arm: the pre-period covariate of gbstats' stats_count_reg_strata
    ((104.90748970535698, 544.8528083123211, 1709.8485612477339), (205.17072061676208, 1040.6742753852225, 3561.161673449451)),
    ((315.83926510817054, 1578.8689285910423, 6938.770455871619), (377.29540367369503, 1981.0803020754106, 9428.146405105292)),
    ((523.2717238353379, 2797.158898626946, 15535.162216800189), (501.0447878972627, 2596.899156698453, 15962.754636573465)),
    ((758.3911049329452, 3955.922281372593, 26846.415701194885), (603.9456523430367, 3144.0820997706583, 23789.82730157116)),
    ((823.2824168385916, 4389.893995072177, 34727.84795433773), (832.356528363269, 4439.253146704266, 39332.667494781235)),
]


def _cuped(post: tuple, pre: tuple) -> CupedSummary:
    n, sy, sy2 = post
    sx, sx2, sxy = pre
    return CupedSummary(n=n, sum_y=sy, sum_y2=sy2, sum_x=sx, sum_x2=sx2, sum_xy=sxy)


def _reg_strata(pre: list | None = None) -> list[Stratum]:
    pre = _PRE if pre is None else pre
    return [Stratum(f"browser_{i}", _cuped(a, pa), _cuped(b, pb))
            for i, ((a, b), (pa, pb)) in enumerate(zip(_COUNT, pre, strict=True))]


def test_gb_post_strat_count_reg_effect_moments() -> None:
    rel = post_stratified_test(_reg_strata(), relative=True)
    ab = post_stratified_test(_reg_strata(), relative=False)
    # gbstats solves the regressions by Cholesky, numpy by LU: agreement to ~1e-11
    assert rel.estimate == pytest.approx(0.11529547657147865, rel=1e-10)
    assert rel.se == pytest.approx(0.002206093195330933, rel=1e-9)
    assert ab.estimate == pytest.approx(3.7116918650826394, rel=1e-10)
    assert ab.se == pytest.approx(0.07390409644392272, rel=1e-9)
    assert rel.metric == "post_stratified_cuped" and rel.variance_reduction > 0.9
    assert ab.se < post_stratified_test(_count_strata(), relative=False).se / 4  # CUPED within strata helps


def test_gb_post_strat_count_effect_moments_fallback() -> None:
    """gbstats' ``test_post_strat_count_effect_moments_fallback``: pre-period sums of 0 everywhere →
    the unadjusted post-stratified result."""
    zero = [((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))] * 5
    for relative, est, se in ((True, 0.10994584851937336, 0.012225394656480164),
                              (False, 3.548094377986586, 0.37634374823059685)):
        r = post_stratified_test(_reg_strata(zero), relative=relative)
        assert r.estimate == pytest.approx(est, rel=1e-12) and r.se == pytest.approx(se, rel=1e-10)


def test_gb_post_strat_mean_reg_single_cell_fallback() -> None:
    """gbstats' ``test_post_strat_mean_reg_gbstats_single_cell_fallback``: a stratum whose pre-period
    has no variance is the unadjusted stratum (the others stay adjusted)."""
    from battleground.stats._poststrat import _cuped_cell

    for (a, b) in _COUNT:
        alpha, sig = _cuped_cell(_cuped(a, (0.0, 0.0, 0.0)), _cuped(b, (0.0, 0.0, 0.0)))
        ca, cb = MeanSummary.from_sums(*a), MeanSummary.from_sums(*b)
        assert alpha == pytest.approx([ca.mean, cb.mean - ca.mean], rel=1e-12)
        assert sig[1, 1] == pytest.approx(ca.var / ca.n + cb.var / cb.n, rel=1e-12)


@pytest.mark.parametrize("relative", [True, False])
def test_gb_post_strat_count_reg_single_cell_is_cuped(relative: bool) -> None:
    """gbstats' ``test_post_strat_count_reg_effect_moments_single_cell``: the summed strata as one cell
    give plain CUPED."""
    cells = _reg_strata()
    one_c, one_t = cells[0].control, cells[0].treatment
    for s in cells[1:]:
        one_c = CupedSummary(*(getattr(one_c, f) + getattr(s.control, f) for f in ("n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy")))  # type: ignore[arg-type]
        one_t = CupedSummary(*(getattr(one_t, f) + getattr(s.treatment, f) for f in ("n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy")))  # type: ignore[arg-type]
    r = post_stratified_test([Stratum("all", one_c, one_t)], relative=relative)
    want = cuped_test(one_c, one_t, relative=relative)
    assert (r.estimate, r.se, r.p_value) == pytest.approx((want.estimate, want.se, want.p_value), rel=1e-12)


def test_gb_baseline_variation_adjusted_zero_is_an_error() -> None:
    zero_post = [((n, 0.0, s2), (m, 0.0, t2)) for (n, _, s2), (m, _, t2) in _COUNT[:2]]
    cells = [Stratum(f"b{i}", _cuped(a, pa), _cuped(b, pb))
             for i, ((a, b), (pa, pb)) in enumerate(zip(zero_post, _PRE[:2], strict=True))]
    with pytest.raises(StatsInputError, match="control mean is 0"):
        post_stratified_test(cells, relative=True)


def test_cuped_strata_are_shift_invariant() -> None:
    """Sums around other shifts (as the SQL scan takes them) give the same result."""
    from battleground.stats._poststrat import _reshift

    base = post_stratified_test(_reg_strata(), relative=True)
    moved = [Stratum(s.label, _reshift(s.control, 30.0, 5.0), _reshift(s.treatment, 31.0, 4.0))  # type: ignore[arg-type]
             for s in _reg_strata()]
    got = post_stratified_test(moved, relative=True)
    assert (got.estimate, got.se) == pytest.approx((base.estimate, base.se), rel=1e-9)


def test_gb_post_strat_ratio_and_mean_reg_ci_use_welch_df_of_the_pooled_arms() -> None:
    """gbstats' ``test_post_strat_ratio_gbstats`` and ``test_post_strat_mean_reg_gbstats``: the CI is
    estimate ± t(1 − α/2, dof)·SE with dof Welch's over the summed arms' per-user variances (the ratio's
    delta-method variance; CUPED's θ-adjusted variance)."""
    from battleground.stats import cuped_theta
    from battleground.stats._tests import welch_df

    cells = _ratio_strata()
    pooled = [RatioSummary(*(sum(getattr(getattr(s, arm), f) for s in cells)
                             for f in ("n", "sum_m", "sum_d", "sum_m2", "sum_d2", "sum_md"))) for arm in ("control", "treatment")]
    dof = welch_df(pooled[0].n * pooled[0].var_ratio(), pooled[0].n, pooled[1].n * pooled[1].var_ratio(), pooled[1].n)
    r = post_stratified_test(cells, relative=True)
    half = sps.t.ppf(0.975, dof) * 0.007131233706378072
    assert r.df == pytest.approx(dof, rel=1e-9)
    assert r.ci == pytest.approx((0.13371299783026003 - half, 0.13371299783026003 + half), rel=1e-9)
    reg = _reg_strata()
    pc, pt = (CupedSummary(*(sum(getattr(getattr(s, arm), f) for s in reg)
                             for f in ("n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy"))) for arm in ("control", "treatment"))
    theta = cuped_theta(pc, pt)
    va = [vy + theta**2 * vx - 2 * theta * c for _, _, vy, vx, c in (pc.moments(), pt.moments())]
    dof = welch_df(va[0], pc.n, va[1], pt.n)
    r = post_stratified_test(reg, relative=True)
    half = sps.t.ppf(0.975, dof) * 0.002206093195330933
    assert r.df == pytest.approx(dof, rel=1e-9)
    assert r.ci == pytest.approx((0.11529547657147865 - half, 0.11529547657147865 + half), rel=1e-8)


# ------------------------------------------------------------------ ratio metrics with CUPED in each stratum
# gbstats' stats_ratio_reg_strata, per arm: (Σm⁻, Σm⁻², Σd⁻, Σd⁻², Σm·m⁻, Σd·d⁻, Σm⁻·d⁻, Σm·d⁻, Σm⁻·d)
_RATIO_PRE = [((104.90748970535698,544.8528083123211,207.89392275808956,2084.9576141182224,1709.8485612477339,8924.759241535443,1060.4394881503144,3331.5604732242236,4536.239751943664),
        (205.17072061676208,1040.6742753852225,412.711880878505,4096.604057794132,3561.161673449451,17309.48641894266,2052.459256425701,7054.607772583746,8661.515319014929)),
       ((315.83926510817054,1578.8689285910423,642.2456105047289,6391.278897716863,6938.770455871619,27539.520078090354,3159.649493130578,13907.522729117181,13603.664018221429),
        (377.29540367369503,1981.0803020754106,758.076359391088,7750.7726864492015,9428.146405105292,32540.687226429243,3894.390731281282,18589.628595670973,16346.199623884253)),
       ((523.2717238353379,2797.158898626946,1036.3070573097948,10619.969725470164,15535.162216800189,45542.18577719637,5404.918238379167,30084.67030990572,23168.39181193194),
        (501.0447878972627,2596.899156698453,1010.378433449463,10223.916200184585,15962.754636573465,42848.21621273023,5115.7607599471585,31588.028767759377,21431.70320453045)),
       ((758.3911049329452,3955.922281372593,1512.006054112595,15285.151021409667,26846.415701194885,65760.83670959483,7722.607914963395,52549.76208497923,33204.9846415661),
        (603.9456523430367,3144.0820997706583,1204.8449120624373,12136.926835557133,23789.82730157116,51127.544981001134,6133.9761958037225,46652.31675719776,25819.033228132084)),
       ((823.2824168385916,4389.893995072177,1614.6469506831402,16462.430726309674,34727.84795433773,70363.18868076446,8454.545756182042,67017.16816048721,36121.28274124097),
        (832.356528363269,4439.253146704266,1645.0526462449084,16880.972871039336,39332.667494781235,70764.05432525955,8606.62830914991,76550.57235527673,36071.28512692181))]


def _ratio_cuped(c: tuple, d: tuple, p: tuple) -> RatioCupedSummary:
    n, sm, smm = c
    sd, sdd, smd = d
    smp, smp2, sdp, sdp2, s_m_mp, s_d_dp, s_mp_dp, s_m_dp, s_mp_d = p
    products = [[smm, smd, s_m_mp, s_m_dp], [smd, sdd, s_mp_d, s_d_dp],
                [s_m_mp, s_mp_d, smp2, s_mp_dp], [s_m_dp, s_d_dp, s_mp_dp, sdp2]]
    return RatioCupedSummary.from_sums(n, (sm, sd, smp, sdp), products)


def _ratio_reg_strata(pre: list | None = None) -> list[Stratum]:
    pre = _RATIO_PRE if pre is None else pre
    return [Stratum(f"browser_{i}", _ratio_cuped(_COUNT[i][0], _DENOM[i][0], pre[i][0]),
                    _ratio_cuped(_COUNT[i][1], _DENOM[i][1], pre[i][1])) for i in range(5)]


def test_gb_post_strat_ratio_reg_effect_moments() -> None:
    rel = post_stratified_test(_ratio_reg_strata(), relative=True)
    ab = post_stratified_test(_ratio_reg_strata(), relative=False)
    assert rel.estimate == pytest.approx(0.13929489348144797, rel=1e-10)
    assert rel.se == pytest.approx(0.0012316128268122996, rel=1e-8)
    assert ab.estimate == pytest.approx(0.10399412678968833, rel=1e-10)
    assert ab.se == pytest.approx(0.0012269621176865127, rel=1e-8)
    assert rel.metric == "post_stratified_ratio_cuped" and rel.variance_reduction > 0.9


def test_gb_post_strat_ratio_effect_moments_fallback() -> None:
    """Pre-period sums of 0 → the unadjusted ratio post-stratification (gbstats' fallback case)."""
    zero = [((0.0,) * 9, (0.0,) * 9)] * 5
    for relative, est, se in ((True, 0.13371299783026003, 0.007131233706378072),
                              (False, 0.10008903417216031, 0.005071004003792392)):
        r = post_stratified_test(_ratio_reg_strata(zero), relative=relative)
        assert r.estimate == pytest.approx(est, rel=1e-12) and r.se == pytest.approx(se, rel=1e-10)


def test_gb_post_strat_ratio_reg_single_cell_fallback() -> None:
    from battleground.stats._poststrat import _ratio_cuped_cell

    for i in range(5):
        c = _ratio_cuped(_COUNT[i][0], _DENOM[i][0], (0.0,) * 9)
        t = _ratio_cuped(_COUNT[i][1], _DENOM[i][1], (0.0,) * 9)
        got = _ratio_cuped_cell(c, t)
        plain = _ratio_strata()[i]
        bar, cov = post_stratify_moments(*(x for arm in (plain.control, plain.treatment)
                                           for x in ([arm.n], [arm.moments()[:2]],
                                                     [[[arm.moments()[2], arm.moments()[4]],
                                                       [arm.moments()[4], arm.moments()[3]]]])))
        assert got[0] == pytest.approx(bar, rel=1e-12) and got[1] == pytest.approx(cov, rel=1e-10)


@pytest.mark.parametrize("relative", [True, False])
def test_gb_post_strat_ratio_reg_single_cell_is_ratio_cuped(relative: bool) -> None:
    cells = _ratio_reg_strata()
    c, t = cells[0].control, cells[0].treatment
    for s in cells[1:]:
        c = RatioCupedSummary.from_sums(c.n + s.control.n, np.add(c.sums, s.control.sums),  # type: ignore[union-attr]
                                        np.add(c.products, s.control.products))  # type: ignore[union-attr]
        t = RatioCupedSummary.from_sums(t.n + s.treatment.n, np.add(t.sums, s.treatment.sums),  # type: ignore[union-attr]
                                        np.add(t.products, s.treatment.products))  # type: ignore[union-attr]
    r = post_stratified_test([Stratum("all", c, t)], relative=relative)
    want = ratio_cuped_test(c, t, relative=relative)
    assert (r.estimate, r.se, r.p_value) == pytest.approx((want.estimate, want.se, want.p_value), rel=1e-12)


def test_gb_post_strat_ratio_reg_ci_uses_the_pooled_ratio_cuped_df() -> None:
    """gbstats' ``test_post_strat_ratio_reg_gbstats``: CI = estimate ± t(dof)·SE, dof Welch's over the
    summed arms' CUPED-adjusted per-user ratio variances."""
    r = post_stratified_test(_ratio_reg_strata(), relative=True)
    assert r.ci == pytest.approx((r.estimate - sps.t.ppf(0.975, r.df) * r.se, r.estimate + sps.t.ppf(0.975, r.df) * r.se),
                                 rel=1e-12)
    assert 500 < r.df < 1000


def test_ratio_cuped_strata_are_shift_invariant() -> None:
    from battleground.stats._poststrat import _r_reshift

    base = post_stratified_test(_ratio_reg_strata(), relative=True)
    moved = [Stratum(s.label, _r_reshift(s.control, np.array([30.0, 40.0, 5.0, 40.0])),  # type: ignore[arg-type]
                     _r_reshift(s.treatment, np.array([31.0, 41.0, 4.0, 41.0]))) for s in _ratio_reg_strata()]  # type: ignore[arg-type]
    got = post_stratified_test(moved, relative=True)
    assert (got.estimate, got.se) == pytest.approx((base.estimate, base.se), rel=1e-9)
