"""Fixtures for the off-policy evaluation tests: the obp reference set and a synthetic logged set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from battleground.datasets._bandit_feedback import (
    BanditFeedback,
    epsilon_greedy_policy,
    make_bandit_feedback,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "ope"


@pytest.fixture(scope="session")
def obp_reference() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = dict(np.load(DATA / "ope_reference_20k.npz"))
    meta = json.loads((DATA / "ope_reference_20k.json").read_text())
    return arrays, meta


@pytest.fixture(scope="session")
def synthetic() -> tuple[BanditFeedback, np.ndarray]:
    fb = make_bandit_feedback(20_000, n_actions=5, dim_context=3, beta=0.5, random_state=3)
    noisy = fb.expected_reward + np.random.default_rng(4).normal(0, 0.1, fb.expected_reward.shape)
    return fb, epsilon_greedy_policy(noisy, 0.3)
