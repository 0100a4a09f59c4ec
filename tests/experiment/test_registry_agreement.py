"""Issue 19 §3: ``create_experiment`` and the seed facade share one rule set for end conditions and
metrics, and bad values are clear registry errors (never silently dropped, never a raw ValueError)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from battleground.experiment.register import (
    RegisterExperiment,
    Registry,
    RegistryError,
    RegistryRuleError,
)

METRIC = {"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


def test_unknown_end_condition_refused_by_both(url: str) -> None:
    registry = Registry(url)
    with pytest.raises(RegistryError, match="unknown end condition 'target_users'") as direct:
        registry.create_experiment("a", metrics=[METRIC], end_conditions={"target_users": 5})
    facade = RegisterExperiment(client=url)
    with pytest.raises(RegistryError, match="unknown end condition 'target_users'"):
        facade.add_experiment(meta={"name": "b", "end_conditions": {"target_users": 5}})
    facade.add_experiment(meta={"name": "c"})
    with pytest.raises(RegistryError, match="unknown end condition 'target_users'") as seed:
        facade.add_end_condition({"target_users": 5})
    assert str(direct.value) == str(seed.value)
    assert [e.name for e in registry.list()] == ["c"]


def test_aliases_accepted_by_both(url: str) -> None:
    registry = Registry(url)
    direct = registry.create_experiment("a", metrics=[METRIC], end_conditions={"목표samplesize": 100, "max_days": 7})
    assert (direct.end_conditions.target_sample_size, direct.end_conditions.max_duration_days) == (100, 7.0)
    seed = RegisterExperiment(client=url).add_experiment(meta={"name": "b", "종료조건": {"목표samplesize": 100}})
    assert seed.end_conditions.target_sample_size == 100


@pytest.mark.parametrize("bad", ["lots", "100", 1e30, float("nan"), float("inf"), True, -3, 0, 2.5, 2**31])
def test_bad_target_sample_size_is_a_rule_error(url: str, bad: Any) -> None:
    registry = Registry(url)
    with pytest.raises(RegistryRuleError, match="target sample size is a positive integer"):
        registry.create_experiment("a", metrics=[METRIC], end_conditions={"target_sample_size": bad})
    facade = RegisterExperiment(client=url)
    facade.add_experiment(meta={"name": "b"})
    with pytest.raises(RegistryRuleError, match="target sample size is a positive integer"):
        facade.add_end_condition({"목표samplesize": bad})
    assert facade.get_experiment().end_conditions.target_sample_size is None
    assert [e.name for e in registry.list()] == ["b"]


@pytest.mark.parametrize("bad", ["14", True, 1e30, float("nan"), 0])
def test_bad_max_duration_is_a_rule_error(url: str, bad: Any) -> None:
    with pytest.raises(RegistryRuleError, match="maximum duration is positive"):
        Registry(url).create_experiment("a", metrics=[METRIC], end_conditions={"max_duration_days": bad})


def test_two_primary_metrics_refused(url: str) -> None:
    registry = Registry(url)
    revenue = {"name": "revenue", "kind": "mean", "numerator": "purchase", "primary": True}
    with pytest.raises(RegistryRuleError, match="at most one primary metric"):
        registry.create_experiment("a", metrics=[METRIC, revenue])
    assert registry.list() == []
    key = registry.create_experiment("b", metrics=[METRIC]).id
    with pytest.raises(RegistryRuleError, match="at most one primary metric"):
        registry.add_metric(key, revenue)
    facade = RegisterExperiment(client=url).put_experiment_id(key)
    with pytest.raises(RegistryRuleError, match="at most one primary metric"):
        facade.add_metric(revenue)
    assert [m.name for m in registry.get(key).metrics] == ["conversion"]


@pytest.mark.parametrize("bad", ["0.5", True, float("nan")])
def test_traffic_and_weights_are_numbers(url: str, bad: Any) -> None:
    registry = Registry(url)
    with pytest.raises(RegistryError, match="traffic"):
        registry.create_experiment("a", metrics=[METRIC], traffic=bad)
    with pytest.raises(RegistryError, match="weight of variant"):
        registry.create_experiment("a", metrics=[METRIC], variants={"control": bad, "treatment": 0.5})
    assert registry.list() == []
