"""Reference numbers for planning × every alternative, computed with statsmodels (not a test).

Run in a side environment that has statsmodels (the project's does not):
    python3 -m venv /tmp/sm && /tmp/sm/bin/pip install statsmodels
    /tmp/sm/bin/python tests/data/ab/make_h_planning_alternatives.py > tests/data/ab/h_planning_alternatives.json

Conventions: ``mde`` is the size of the change (> 0); ``alternative="less"`` plans for a decrease of
that size, which statsmodels writes as a negative effect with ``alternative="smaller"``. Sample sizes are
per control group; the treatment gets ``ratio`` × that. The MDE references invert statsmodels' own
sample-size / power functions with scipy's brentq.
"""

from __future__ import annotations

import json
import math
import sys

import statsmodels
from scipy import optimize
from statsmodels.stats.power import (
    NormalIndPower,
    TTestIndPower,
    normal_power_het,
    normal_sample_size_one_tail,
)
from statsmodels.stats.proportion import (
    proportion_effectsize,
    samplesize_proportions_2indep_onetail,
)

ALTS = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}
SIGN = {"two-sided": 1.0, "greater": 1.0, "less": -1.0}
ALPHA, POWER = 0.05, 0.8


def one_tail_alpha(alpha: float, alt: str) -> float:
    return alpha / 2 if alt == "two-sided" else alpha


def prop_n(method: str, p1: float, delta: float, ratio: float, alpha: float, alt: str) -> float:
    p2 = p1 + SIGN[alt] * delta
    q1, q2, r = 1 - p1, 1 - p2, ratio
    a1 = one_tail_alpha(alpha, alt)
    d = abs(p2 - p1)
    if method == "unpooled":
        return float(normal_sample_size_one_tail(d, POWER, a1, std_null=math.sqrt(p1 * q1 + p2 * q2 / r)))
    if method == "baseline_variance":
        return float(normal_sample_size_one_tail(d, POWER, a1, std_null=math.sqrt(p1 * q1 * (1 + 1 / r))))
    if method == "evan_miller":
        return float(normal_sample_size_one_tail(
            d, POWER, a1, std_null=math.sqrt(p1 * q1 * (1 + 1 / r)),
            std_alternative=math.sqrt(p1 * q1 + p2 * q2 / r)))
    h = float(proportion_effectsize(p2, p1))
    if method == "cohens_h_closed_form":
        return float(normal_sample_size_one_tail(abs(h), POWER, a1, std_null=math.sqrt(1 + 1 / r)))
    if method == "cohens_h":
        return float(NormalIndPower().solve_power(effect_size=h, nobs1=None, alpha=alpha, power=POWER,
                                                  ratio=r, alternative=ALTS[alt]))
    if method == "pooled":
        # statsmodels' nobs1 is the treatment arm (prop1 = prop2 + diff) and nobs2 = ratio·nobs1 the
        # control: with battleground's ratio r = n_t / n_c that is ratio 1/r, and n_c = nobs1 / r.
        n_t = samplesize_proportions_2indep_onetail(p2 - p1, p1, POWER, ratio=1 / r, alpha=alpha,
                                                    alternative=ALTS[alt])
        return float(n_t / r)
    raise ValueError(method)


def mean_n(method: str, d: float, ratio: float, alpha: float, alt: str) -> float:
    if method == "normal":
        return float(normal_sample_size_one_tail(d, POWER, one_tail_alpha(alpha, alt),
                                                 std_null=math.sqrt(1 + 1 / ratio)))
    engine = NormalIndPower() if method == "normal_exact" else TTestIndPower()
    return float(engine.solve_power(effect_size=SIGN[alt] * d, nobs1=None, alpha=alpha, power=POWER,
                                    ratio=ratio, alternative=ALTS[alt]))


def mean_power(method: str, n: float, d: float, ratio: float, alpha: float, alt: str) -> float:
    engine = NormalIndPower() if method == "normal_exact" else TTestIndPower()
    return float(engine.power(effect_size=SIGN[alt] * d, nobs1=n, alpha=alpha, ratio=ratio,
                              alternative=ALTS[alt]))


def prop_power(n: float, p1: float, delta: float, ratio: float, alpha: float, alt: str) -> float:
    p2 = p1 + SIGN[alt] * delta
    std = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2) / ratio)
    return float(normal_power_het(p2 - p1, n, alpha, std_null=std, alternative=ALTS[alt]))


def mean_gap(e: float, method: str, n: float, std: float, ratio: float, alt: str) -> float:
    if method == "normal":
        return mean_n("normal", e / std, ratio, ALPHA, alt) - n
    return POWER - mean_power(method, n, e / std, ratio, ALPHA, alt)


def prop_gap(e: float, method: str, n: float, ratio: float, alt: str) -> float:
    return prop_n(method, 0.1, e, ratio, ALPHA, alt) - n


def main() -> None:
    out: dict = {
        "produced_by": "tests/data/ab/make_h_planning_alternatives.py with statsmodels "
                       f"{statsmodels.__version__}",
        "alpha": ALPHA, "power": POWER,
        "sample_size_proportions": [], "sample_size_means": [], "power_means": [],
        "power_proportions": [], "mde_means": [], "mde_proportions": [],
    }
    prop_methods = ("unpooled", "cohens_h", "cohens_h_closed_form", "pooled", "evan_miller",
                    "baseline_variance")
    for alt in ALTS:
        for p1, delta in ((0.1, 0.02), (0.4, 0.05)):
            for ratio in (1.0, 2.0):
                for n_arms in (2, 3):
                    a = ALPHA / (n_arms - 1)
                    for m in prop_methods:
                        out["sample_size_proportions"].append(dict(
                            baseline=p1, mde=delta, ratio=ratio, n_arms=n_arms, alternative=alt,
                            method=m, n_control=prop_n(m, p1, delta, ratio, a, alt)))
        for d in (0.3, 0.05):
            for ratio in (1.0, 2.0):
                for m in ("normal", "normal_exact", "t"):
                    out["sample_size_means"].append(dict(
                        mde=d, std=1.0, ratio=ratio, alternative=alt, method=m,
                        n_control=mean_n(m, d, ratio, ALPHA, alt)))
        for n, d in ((20, 0.8), (500, 0.1)):
            for ratio in (1.0, 2.0):
                for m in ("normal_exact", "t"):
                    out["power_means"].append(dict(
                        n_control=n, mde=d, std=1.0, ratio=ratio, alternative=alt, method=m,
                        power=mean_power(m, n, d, ratio, ALPHA, alt)))
        for n in (1000, 5000):
            for ratio in (1.0, 2.0):
                out["power_proportions"].append(dict(
                    n_control=n, baseline=0.1, mde=0.02, ratio=ratio, alternative=alt,
                    power=prop_power(n, 0.1, 0.02, ratio, ALPHA, alt)))
        for n in (200, 5000):
            for ratio in (1.0, 2.0):
                for m in ("normal", "normal_exact", "t"):
                    std = 2.0
                    hi = 2 * 2.9 * std * math.sqrt((1 + 1 / ratio) / n)  # twice the closed-form MDE
                    e = optimize.brentq(mean_gap, 1e-6, hi, args=(m, n, std, ratio, alt), xtol=1e-14, rtol=1e-13)
                    out["mde_means"].append(dict(n_control=n, std=std, ratio=ratio, alternative=alt,
                                                 method=m, mde=float(e)))
        for n in (3000, 20000):
            for ratio in (1.0, 2.0):
                for m in prop_methods:
                    top = min(0.2, (0.9 if alt != "less" else 0.1) * (1 - 1e-9))
                    e = optimize.brentq(prop_gap, 1e-6, top, args=(m, n, ratio, alt), xtol=1e-15, rtol=1e-13)
                    out["mde_proportions"].append(dict(n_control=n, baseline=0.1, ratio=ratio,
                                                       alternative=alt, method=m, mde=float(e)))
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
