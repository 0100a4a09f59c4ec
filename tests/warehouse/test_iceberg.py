"""Iceberg tables read in place (issue 18 §2): a local SQLite-catalog table written here, read by
DuckDB (and Spark) from its current data files, beside Parquet and Delta."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from test_monitor_engines import assert_same_result
from test_sources import MAPPING, monitor, scenario, user_table  # noqa: F401  (scenario: a fixture)

from battleground.storage._sources import SourceError, SourceSpec, open_source, save_source
from battleground.storage._warehouse import WarehouseEventStore


def iceberg_table(tmp_path: Path, table: pa.Table, name: str = "lake.events") -> tuple[dict[str, str], Any]:
    """``table`` written as an Iceberg table in a SQLite catalog under ``tmp_path``, in two commits
    (two snapshots: the source must read the current one's files, all of them)."""
    from pyiceberg.catalog.sql import SqlCatalog

    (tmp_path / "warehouse").mkdir(exist_ok=True)
    props = {"type": "sql", "uri": f"sqlite:///{tmp_path / 'catalog.db'}",
             "warehouse": f"file://{tmp_path / 'warehouse'}"}
    catalog = SqlCatalog("test", **{k: v for k, v in props.items() if k != "type"})
    catalog.create_namespace_if_not_exists(name.split(".")[0])
    ice = catalog.create_table(name, schema=table.schema)
    half = table.num_rows // 2
    ice.append(table.slice(0, half))
    ice.append(table.slice(half))
    return {"name": "test", **props}, ice


def test_iceberg_in_place_with_assignment_log(scenario: Any, tmp_path: Path) -> None:  # noqa: F811
    settings, exp_id, events = scenario
    want = monitor(settings, exp_id).result()
    catalog, ice = iceberg_table(tmp_path, user_table(events))
    assert len(ice.inspect.snapshots()) == 2
    spec = SourceSpec("ice", "lake.events", format="iceberg", catalog=catalog, columns=MAPPING)
    save_source(settings.registry_url, exp_id, spec)
    m = monitor(settings, exp_id)
    assert isinstance(m.backend.store_for(exp_id), WarehouseEventStore)  # type: ignore[attr-defined]
    assert_same_result(m.result(), want)
    # without a catalog: the metadata file of the current snapshot
    static = SourceSpec("ice-file", ice.metadata_location, format="iceberg", columns=MAPPING)
    save_source(settings.registry_url, exp_id, static)
    assert_same_result(monitor(settings, exp_id).result(), want)


def test_iceberg_exposure_rows(scenario: Any, tmp_path: Path) -> None:  # noqa: F811
    settings, exp_id, events = scenario
    want = monitor(settings, exp_id).result()
    catalog, _ = iceberg_table(tmp_path, user_table(events, exposures=True))
    save_source(settings.registry_url, exp_id, SourceSpec(
        "ice", "lake.events", format="iceberg", catalog=catalog, columns={**MAPPING, "variant": "arm"},
        exposures="events"))
    assert_same_result(monitor(settings, exp_id).result(), want)


def test_iceberg_errors_name_the_source_and_the_fix(scenario: Any, tmp_path: Path) -> None:  # noqa: F811
    _, exp_id, events = scenario
    catalog, _ = iceberg_table(tmp_path, user_table(events))
    with pytest.raises(SourceError, match=r"source 'ice': Iceberg table 'lake.nope' cannot be loaded.*namespace"):
        open_source(SourceSpec("ice", "lake.nope", format="iceberg", catalog=catalog, columns=MAPPING,
                               exposures="table", exposures_location="x"), exp_id)
    with pytest.raises(SourceError, match=r"column 'when' \(ts\) is not in lake.events"):
        open_source(SourceSpec("ice", "lake.events", format="iceberg", catalog=catalog,
                               columns={**MAPPING, "ts": "when"}), exp_id, assignment_log=events.slice(0, 0))
