"""Fixtures for the incremental-learning tests: the reference stream, regenerated once per session."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "incremental"


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    """The library's own results on the first 30 batches (lambda-learner 0.1.0, factr=10)."""
    return json.loads((DATA / "ll_single_seed7_factr10_30batches.json").read_text())


@pytest.fixture(scope="session")
def stream7(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """``gen_data.py --seed 7`` run into a temporary folder, its sha256 checked against the meta file."""
    out = tmp_path_factory.mktemp("stream7")
    subprocess.run([sys.executable, str(DATA / "gen_data.py"), "--seed", "7", "--out", str(out)],
                   check=True, capture_output=True, timeout=300)
    expected = json.loads((DATA / "stream_seed7.meta.json").read_text())["sha256_arrays"]
    written = json.loads((out / "stream_seed7.meta.json").read_text())["sha256_arrays"]
    spec = importlib.util.spec_from_file_location("gen_data_seed7", DATA / "gen_data.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    with np.load(out / "stream_seed7.npz") as z:
        arrays = {k: z[k] for k in z.files}
    assert written == expected
    assert gen.sha(arrays) == expected  # the file on disk, not only the generator's memory
    return arrays
