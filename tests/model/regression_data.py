"""A seeded synthetic regression frame shared by the regression tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

LEVEL = {"bronze": 0.0, "silver": 2.0, "gold": 5.0}


def regression_frame(n: int, seed: int) -> pd.DataFrame:
    """``target = 10 + 3·x1 − 2·x2 + level effect + 1.5·[region == 'r3'] + N(0, 1)``."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "char_id": np.arange(n),
        "x1": rng.normal(size=n),
        "x2": rng.normal(size=n),
        "level": rng.choice(list(LEVEL), n),
        "region": rng.choice([f"r{i}" for i in range(5)], n),
    })
    frame["target"] = (10 + 3 * frame["x1"] - 2 * frame["x2"] + frame["level"].map(LEVEL)
                       + 1.5 * (frame["region"] == "r3") + rng.normal(0, 1.0, n))
    return frame
