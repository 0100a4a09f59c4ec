"""Sums of all metrics from one scan equal each metric queried alone (DuckDB and PostgreSQL)."""

from __future__ import annotations

import math

import pytest
from ab_scenario import build

from battleground.experiment.events import open_event_store
from battleground.settings import Settings


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    for x, y in zip(a, b, strict=True):
        for k, v in x.to_dict().items():
            w = y.to_dict()[k]
            assert v == w or math.isclose(v, w, rel_tol=1e-12), (k, v, w)


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_sums_many_equals_one_query_per_metric(backend: str, settings: Settings, request: pytest.FixtureRequest) -> None:
    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    sc = build(s, users=1500, days=4)
    store = open_event_store(s)
    rec = sc.registry.get(sc.id)
    defs = [(m.kind, m.numerator, m.denominator) for m in rec.metrics]
    for many, d in zip(store.sums_many(rec.id, defs, variants=rec.variant_names), defs, strict=True):
        _same(many, store.sums(rec.id, *d, variants=rec.variant_names))
    daily = store.daily_sums_many(rec.id, defs, variants=rec.variant_names)
    for j, d in enumerate(defs):
        one = store.daily_sums(rec.id, *d, variants=rec.variant_names)
        assert [day for day, _ in daily] == [day for day, _ in one]
        for (_, per_metric), (_, arms) in zip(daily, one, strict=True):
            _same(per_metric[j], arms)
    with pytest.raises(ValueError, match="needs a denominator"):
        store.sums_many(rec.id, [("ratio", "click", None)])
