"""The sequential design and planned MDE as registry fields (migration 0006), in the embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest

from battleground.experiment._records import EndConditions, RegistryError
from battleground.experiment.register import RegisterExperiment, Registry


def _registry(tmp_path: Path) -> Registry:
    return Registry(f"sqlite:///{tmp_path / 'registry.db'}")


def test_design_and_mde_round_trip(tmp_path: Path) -> None:
    reg = _registry(tmp_path)
    e = reg.create_experiment("gst", end_conditions={"design": "pocock", "target_sample_size": 1000, "mde": 0.05})
    assert e.end_conditions == EndConditions(1000, None, True, "pocock", 0.05)  # a design implies sequential
    e = reg.set_end_conditions("gst", design="obrien_fleming")
    assert e.end_conditions.design == "obrien_fleming" and e.end_conditions.mde == 0.05
    assert _registry(tmp_path).get("gst").end_conditions.design == "obrien_fleming"  # persisted
    plain = reg.create_experiment("plain")
    assert plain.end_conditions.design == "msprt" and plain.end_conditions.mde is None


def test_seed_facade_accepts_the_keys(tmp_path: Path) -> None:
    r = RegisterExperiment(client=str(tmp_path))
    r.add_experiment({"name": "one-sided"})
    e = r.add_end_condition({"sequential_design": "one_sided", "planned_mde": 0.03})
    assert e.end_conditions.design == "one_sided" and e.end_conditions.sequential and e.end_conditions.mde == 0.03


@pytest.mark.parametrize(
    "bad",
    [{"design": "bayes"}, {"design": "pocock"}, {"mde": -0.1}, {"mde": 0}, {"design": 3}],
    ids=["unknown", "gst-without-target", "negative-mde", "zero-mde", "not-text"],
)
def test_bad_design_is_refused_and_nothing_is_stored(tmp_path: Path, bad: dict) -> None:
    reg = _registry(tmp_path)
    with pytest.raises(RegistryError):
        reg.create_experiment("x", end_conditions=bad)
    assert reg.list() == []
    reg.create_experiment("y", end_conditions={"max_duration_days": 10})
    with pytest.raises(RegistryError):
        reg.set_end_conditions("y", **bad)
    assert reg.get("y").end_conditions == EndConditions(None, 10.0)
