"""``Registry.list`` loads every experiment with its variants, metrics and end conditions in a fixed
number of queries (no query per experiment), and the records are the ones ``get`` returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_list_takes_four_queries_however_many_experiments(tmp_path: Path) -> None:
    from sqlalchemy import event

    from battleground.experiment.register import Registry

    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    metrics = [{"name": f"m{i}", "kind": "mean", "numerator": f"ev{i}", "primary": i == 0} for i in range(10)]
    for e in range(30):
        registry.create_experiment(f"exp-{e}", metrics=metrics, end_conditions={"target_sample_size": 100 + e})
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(registry._engine, "before_cursor_execute", count)
    try:
        records = registry.list()
    finally:
        event.remove(registry._engine, "before_cursor_execute", count)
    assert len(records) == 30
    assert len(statements) == 4, statements  # experiments, then variants, metrics, end conditions of all
    assert records[7] == registry.get(records[7].id)
    assert records[7].end_conditions.target_sample_size == 107 and len(records[7].metrics) == 10
    assert [v.name for v in records[0].variants] == ["control", "treatment"]
