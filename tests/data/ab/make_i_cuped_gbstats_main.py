"""Reference numbers for CUPED's relative variance from gbstats' current source (not a test).

The 2024 PyPI wheel (gbstats 0.8.0, c_cuped.json) used V_T/ȲC² + V_C·ȲT²/ȲC⁴; gbstats on GitHub now
uses the full delta method (models/tests.py, frequentist_variance_relative_cuped). Produced with the
gbstats source of growthbook/growthbook at commit 8f1db4456915a8e7b7faf23d5632ca7219d2f469
(packages/stats, on sys.path) in a side environment with numpy, scipy and pydantic:
    /tmp/sm/bin/python tests/data/ab/make_i_cuped_gbstats_main.py /path/to/packages/stats \\
        > tests/data/ab/i_cuped_gbstats_main.json
on the inputs of tests/data/ab/c_cuped.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, sys.argv[1])
from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest
from gbstats.models.statistics import RegressionAdjustedStatistic, SampleMeanStatistic


def _stat(y: list[float], x: list[float]) -> RegressionAdjustedStatistic:
    ya, xa = np.asarray(y), np.asarray(x)
    return RegressionAdjustedStatistic(
        n=ya.size,
        post_statistic=SampleMeanStatistic(n=ya.size, sum=float(ya.sum()), sum_squares=float(ya @ ya)),
        pre_statistic=SampleMeanStatistic(n=xa.size, sum=float(xa.sum()), sum_squares=float(xa @ xa)),
        post_pre_sum_of_products=float(xa @ ya), theta=None,
    )


def main() -> None:
    inputs = json.loads((Path(__file__).parent / "c_cuped.json").read_text())["inputs"]
    a, b = _stat(inputs["y_c"], inputs["x_c"]), _stat(inputs["y_t"], inputs["x_t"])
    out: dict = {"produced_by": __doc__.split("\n")[0], "gbstats_commit": "8f1db4456915a8e7b7faf23d5632ca7219d2f469",
                 "inputs": "c_cuped.json"}
    for kind in ("absolute", "relative"):
        r = TwoSidedTTest([(a, b)], FrequentistConfig(difference_type=kind)).compute_result()
        out[kind] = {"expected": r.expected, "ci": list(r.ci), "p_value": r.pValue, "se": r.uplift.stddev}
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
