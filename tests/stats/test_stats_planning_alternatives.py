"""Issue 12: every planning function × every alternative matches statsmodels and never hangs.

The reference numbers (tests/data/ab/h_planning_alternatives.json) come from statsmodels in a side
environment: see tests/data/ab/make_h_planning_alternatives.py for the exact calls. ``mde`` is the size
of the change; ``alternative="less"`` plans for a decrease of that size (statsmodels: a negative effect
with ``alternative="smaller"``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import scipy.optimize
import scipy.stats  # noqa: F401  (imported at collection, so no timed test pays for it)

from battleground import stats
from battleground.stats import RatioSummary, StatsInputError

REF = json.loads((Path(__file__).parents[1] / "data" / "ab" / "h_planning_alternatives.json").read_text())
ALTERNATIVES = ("two-sided", "greater", "less")
REL = 1e-7
pytestmark = pytest.mark.timeout(10)  # planning must never hang



@pytest.mark.parametrize("case", REF["sample_size_proportions"], ids=str)
def test_sample_size_proportions_match_statsmodels(case: dict[str, Any]) -> None:
    r = stats.sample_size_proportions(
        case["baseline"], case["mde"], ratio=case["ratio"], n_arms=case["n_arms"],
        alternative=case["alternative"], method=case["method"],
    )
    assert r.n_control == pytest.approx(case["n_control"], rel=REL)


@pytest.mark.parametrize("case", REF["sample_size_means"], ids=str)
def test_sample_size_means_match_statsmodels(case: dict[str, Any]) -> None:
    r = stats.sample_size_means(case["mde"], case["std"], ratio=case["ratio"], alternative=case["alternative"],
                                method=case["method"])
    assert r.n_control == pytest.approx(case["n_control"], rel=REL)


@pytest.mark.parametrize("case", REF["power_means"], ids=str)
def test_power_means_match_statsmodels(case: dict[str, Any]) -> None:
    r = stats.power_means(case["n_control"], case["mde"], case["std"], ratio=case["ratio"],
                          alternative=case["alternative"], method=case["method"])
    assert r.power == pytest.approx(case["power"], rel=REL)


def test_the_issue_case_power_less() -> None:
    # power_means(20, 0.8, 1.0, alternative="less") gave 1.5e-5; statsmodels: 0.812.
    assert stats.power_means(20, 0.8, 1.0, alternative="less").power == pytest.approx(0.8119131898703725, rel=1e-12)


@pytest.mark.parametrize("case", REF["power_proportions"], ids=str)
def test_power_proportions_match_statsmodels(case: dict[str, Any]) -> None:
    r = stats.power_proportions(case["n_control"], case["baseline"], case["mde"], ratio=case["ratio"],
                                alternative=case["alternative"])
    assert r.power == pytest.approx(case["power"], rel=REL)


@pytest.mark.parametrize("case", REF["mde_means"], ids=str)
def test_mde_means_match_statsmodels(case: dict[str, Any]) -> None:
    r = stats.mde_means(case["n_control"], case["std"], ratio=case["ratio"], alternative=case["alternative"],
                        method=case["method"])
    assert r.mde == pytest.approx(case["mde"], rel=1e-6)


@pytest.mark.parametrize("case", REF["mde_proportions"], ids=str)
def test_mde_proportions_match_statsmodels(case: dict[str, Any]) -> None:
    r = stats.mde_proportions(case["n_control"], case["baseline"], ratio=case["ratio"],
                              alternative=case["alternative"], method=case["method"])
    assert r.mde == pytest.approx(case["mde"], rel=1e-6)


# ------------------------------------------------------------------ never hang, whatever the inputs

_PRE = RatioSummary.from_arrays([1, 0, 2, 1, 3, 0], [10, 5, 10, 8, 12, 4])


def _calls(alt: str, sign: float, size: float) -> list[Any]:
    """Every planning function at effect ``sign × size`` (a closure per call)."""
    e = sign * size
    out: list[Any] = []
    for m in stats._planning.PROPORTION_METHODS:
        out.append(lambda m=m: stats.sample_size_proportions(0.3, min(abs(e), 0.25) * sign, alternative=alt, method=m))
        out.append(lambda m=m: stats.mde_proportions(1000 * size, 0.3, alternative=alt, method=m))
    for m in stats._planning.MEAN_METHODS:
        out.append(lambda m=m: stats.sample_size_means(e, 1.0, alternative=alt, method=m))
        out.append(lambda m=m: stats.mde_means(100 * size, 1.0, alternative=alt, method=m))
    for m in ("normal_exact", "normal", "t"):
        out.append(lambda m=m: stats.power_means(20, e, 1.0, alternative=alt, method=m))
    out.append(lambda: stats.power_proportions(500, 0.3, min(abs(e), 0.25) * sign, alternative=alt))
    out.append(lambda: stats.sample_size_ratio(_PRE, e, alternative=alt))
    return out


@pytest.mark.timeout(10)
@pytest.mark.parametrize("alt", ALTERNATIVES)
@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("size", [1e-4, 0.3, 5.0])
def test_planning_is_bounded_for_every_function_alternative_and_sign(alt: str, sign: float, size: float) -> None:
    for call in _calls(alt, sign, size):
        try:
            r = call()
        except StatsInputError as err:  # a clear refusal is fine (e.g. a negative mde), a hang is not
            assert "must be" in str(err) or "too small" in str(err) or "outside" in str(err), err
            continue
        value = getattr(r, "n_control", None) if hasattr(r, "n_total") else None
        if value is not None:
            assert value > 0
        for field in ("power", "mde"):
            if hasattr(r, field):
                assert 0 < getattr(r, field) < float("inf")


def test_negative_mde_is_refused_with_the_direction_hint() -> None:
    with pytest.raises(StatsInputError, match=r"mde must be > 0, got -0.3: give the size of the change, and its direction with alternative='greater' or alternative='less'"):
        stats.sample_size_means(-0.3, 1.0, alternative="less")


def test_statsmodels_names_for_the_alternatives_are_accepted() -> None:
    less = stats.sample_size_means(0.3, 1.0, alternative="less", method="t")
    assert stats.sample_size_means(0.3, 1.0, alternative="smaller", method="t") == less
    assert stats.power_means(20, 0.8, 1.0, alternative="larger").alternative == "greater"


@pytest.mark.timeout(10)
def test_the_issue_cases_return() -> None:
    assert stats.sample_size_means(0.3, 1.0, alternative="less", method="normal_exact").n_control == pytest.approx(
        stats.sample_size_means(0.3, 1.0, alternative="greater", method="normal_exact").n_control, rel=1e-12)
    h = stats.sample_size_proportions(0.1, 0.02, alternative="less", method="cohens_h")
    assert h.n_control > 0
    m = stats.mde_proportions(h.n_control, 0.1, alternative="less", method="cohens_h")
    assert m.mde == pytest.approx(0.02, rel=1e-6)


@pytest.mark.parametrize("call", [
    lambda: stats.sample_size_means(1e-200, 1.0),
    lambda: stats.sample_size_means(1e-160, 1.0),
    lambda: stats.sample_size_means(1e-160, 1.0, method="t"),
    lambda: stats.sample_size_proportions(0.1, 1e-170),
    lambda: stats.sample_size_proportions(0.1, 1e-170, method="cohens_h", alternative="less"),
])
def test_a_vanishing_mde_is_refused_not_a_crash(call: Any) -> None:
    # ZeroDivisionError / OverflowError before.
    with pytest.raises(StatsInputError, match="too small to plan for"):
        call()
