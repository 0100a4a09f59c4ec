"""Guardrail margins in the registry: declared, validated (bad input changes nothing), read back by the
monitor, and added to existing registries by migration 0004 (embedded SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text

from battleground.experiment._decide import GuardrailMargin, MarginError
from battleground.experiment.monitoring import Monitor
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage._db import MIGRATIONS, registry_engine, sqlalchemy_url

CONVERSION = {"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True}
LATENCY = {"name": "latency", "kind": "mean", "numerator": "page", "direction": "decrease", "guardrail": True}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("settings" if request.param == "sqlite" else "postgres_settings")


def test_margins_round_trip_to_the_monitor(backend: Settings) -> None:
    registry = Registry(backend.registry_url)
    rec = registry.create_experiment("m", metrics=[
        CONVERSION, {**LATENCY, "margin": 0.02},
        {"name": "errors", "kind": "proportion", "numerator": "error", "direction": "decrease",
         "guardrail": True, "margin": 0.005, "margin_relative": False},
        {"name": "crashes", "kind": "proportion", "numerator": "crash", "guardrail": True},
    ])
    by = {m.name: m for m in registry.get(rec.id).metrics}
    assert (by["latency"].margin, by["latency"].margin_relative) == (0.02, True)
    assert (by["errors"].margin, by["errors"].margin_relative) == (0.005, False)
    assert by["crashes"].margin is None and by["conversion"].margin is None
    info = Monitor(client=backend).put_experiment_id(experiment_id=rec.id).experiment()
    assert info.guardrail_margins == {"latency": GuardrailMargin(0.02), "errors": GuardrailMargin(0.005, False)}
    registry.add_metric(rec.id, "bounce", "proportion", guardrail=True, margin=0.01)
    assert registry.get(rec.id).metrics[-1].margin == 0.01


@pytest.mark.parametrize(("metric", "message"), [
    ({**CONVERSION, "margin": 0.01}, "not a guardrail"),
    ({**LATENCY, "margin": -0.01}, "must be a finite number > 0"),
    ({**LATENCY, "margin": 0}, "must be a finite number > 0"),
    ({**LATENCY, "margin": 2.0}, "must be < 1"),
    ({**LATENCY, "margin": "2%"}, "must be a number"),
    ({**LATENCY, "margin": 0.01, "margin_relative": "no"}, "True or False"),
])
def test_bad_margins_are_refused_and_store_nothing(settings: Settings, metric: dict[str, Any], message: str) -> None:
    registry = Registry(settings.registry_url)
    with pytest.raises(MarginError, match=message) as err:
        registry.create_experiment("bad", metrics=[CONVERSION, metric] if metric["name"] != "conversion" else [metric])
    assert repr(metric["name"]) in str(err.value)
    assert registry.list() == []
    rec = registry.create_experiment("good", metrics=[CONVERSION])
    with pytest.raises(MarginError):
        registry.add_metric(rec.id, "latency", "mean", guardrail=True, margin=-1.0)
    assert [m.name for m in registry.get(rec.id).metrics] == ["conversion"]


def _at_revision_0001(url: str) -> None:
    """A registry as it was before margins: migrated to 0001 only, with one metric in it."""
    from alembic import command
    from alembic.config import Config

    engine = create_engine(sqlalchemy_url(url))
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text(
            "INSERT INTO experiments (name, status, metadata, salt, traffic, created_at, updated_at) "
            "VALUES ('old', 'draft', '{}', 's', 1.0, '2022-01-01', '2022-01-01')"))
        conn.execute(text(
            'INSERT INTO metrics (experiment_id, name, kind, numerator, direction, guardrail, "primary", '
            "position) VALUES (1, 'latency', 'mean', 'page', 'decrease', TRUE, FALSE, 0)"))
    engine.dispose()


def test_migration_0004_adds_margins_to_an_existing_registry(backend: Settings) -> None:
    if backend.registry_url.startswith("sqlite"):
        from pathlib import Path

        Path(backend.registry_url.split("sqlite:///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    else:
        from battleground.storage._pg import ensure_database

        ensure_database(backend.registry_url)
    _at_revision_0001(backend.registry_url)
    registry_engine(backend.registry_url)  # migrates to head on first use
    rec = Registry(backend.registry_url).get("old")
    assert rec.metrics[0].margin is None and rec.metrics[0].margin_relative is True
