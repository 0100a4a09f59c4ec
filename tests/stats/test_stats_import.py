"""``import battleground.stats`` stays cheap: scipy is imported on first use, not at import (a CLI that
never computes a p-value must start quickly). Checked by what is imported, never by timing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).parents[2] / "src")


def test_import_does_not_load_scipy() -> None:
    code = (
        "import sys; import battleground.stats, battleground.experiment.ab_test; "
        "heavy = sorted(m for m in ('scipy', 'pandas', 'sklearn') if m in sys.modules); print(heavy); "
        "from battleground import stats; stats.t_test([1.0, 2.0, 3.0], [2.0, 3.0, 5.0]); "
        "print('scipy' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"], out.stdout + out.stderr
