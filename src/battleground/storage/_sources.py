"""Sources: events read in place from a user's table, view or files, through a column mapping.

A :class:`SourceSpec` says where the events are (a table or view of an engine, Parquet files, or a Delta
table's current files), which of its columns are battleground's event columns, and where exposures
come from: the same table (rows whose event type is the exposure, with a variant column), an exposures
table, or battleground's own assignment log (the exposure events in its store). :func:`open_source`
checks the mapping against the real columns and gives a read-only :class:`WarehouseEventStore`;
nothing is copied. Specs are saved per experiment in the registry (``experiment_sources``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from battleground.errors import StorageError
from battleground.storage._warehouse import Engine, WarehouseEventStore, open_engine

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

__all__ = [
    "SourceEntry",
    "SourceError",
    "SourceSpec",
    "find_source",
    "list_sources",
    "load_source",
    "open_source",
    "remove_source",
    "save_project_source",
    "save_source",
]

FORMATS = ("table", "parquet", "delta", "iceberg")
EXPOSURES = ("events", "table", "assignment_log")
# battleground's column → what the source must give (None: optional).
_REQUIRED = ("user_id", "ts", "event_type")
_OPTIONAL = ("value", "covariate", "variant")


class SourceError(StorageError, ValueError):
    """A source that cannot be read as specified: the message names the source, the column and the fix."""


@dataclass(frozen=True)
class SourceSpec:
    """Where an experiment's events live and how they map to battleground's event schema.

    Attributes:
        name: what errors and the registry call the source.
        connection: ``"duckdb"`` (files or tables in process), ``"spark"``, ``"chdb"`` or a SQLAlchemy URL.
        format: ``table`` (``location`` is a table or view), ``parquet`` (a file, folder glob or list
            pattern), ``delta`` (a Delta table folder; its current files are read), ``iceberg`` (an
            Iceberg table: ``location`` is ``namespace.table`` in ``catalog``, or without a catalog the
            path of a metadata JSON file; its current data files are read).
        location: the table name or the path.
        columns: battleground column → source column (``user_id``, ``ts``, ``event_type``, and optional
            ``value``, ``covariate``, ``variant``); unnamed ones map to the same name when required.
        exposures: ``assignment_log`` (battleground's exposure events), ``events`` (rows of the source
            whose event type is ``exposure_event``, with a ``variant`` column) or ``table``.
        exposures_location, exposures_format, exposure_columns: the exposures table (``user_id``,
            ``ts``, ``variant``) when ``exposures="table"``.
        exposure_event: the event type of exposure rows when ``exposures="events"``.
        timezone: the zone of timezone-naive timestamps; only ``"UTC"`` is accepted, and it must be said.
        spark_conf: session settings when ``connection="spark"`` builds a session.
        catalog: the pyiceberg catalog properties of an ``iceberg`` source (``type``, ``uri``,
            ``warehouse``, …; ``name`` names the catalog), e.g. ``{"type": "sql", "uri":
            "sqlite:///catalog.db", "warehouse": "file:///lake"}``.
        attributes: user attribute → numeric source column, for breakdowns and post-stratification
            (``breakdown_by``, ``post_stratify_by``): each row where the column is set counts as an
            attribute event at that row's time, so a user's slice is the smallest value on their rows
            at or before their first exposure, as for attribute events in battleground's own store.
    """

    name: str
    location: str
    connection: str = "duckdb"
    format: str = "table"
    columns: dict[str, str] = field(default_factory=dict)
    exposures: str = "assignment_log"
    exposures_location: str | None = None
    exposures_format: str = "table"
    exposure_columns: dict[str, str] = field(default_factory=dict)
    exposure_event: str = "exposure"
    timezone: str | None = None
    spark_conf: dict[str, str] = field(default_factory=dict)
    catalog: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise SourceError(f"a source needs a name, got {self.name!r}")
        if self.format not in FORMATS or self.exposures_format not in FORMATS:
            raise SourceError(f"source {self.name!r}: format must be one of {list(FORMATS)}, got "
                              f"{self.format!r}/{self.exposures_format!r}")
        if self.exposures not in EXPOSURES:
            raise SourceError(f"source {self.name!r}: exposures must be one of {list(EXPOSURES)}, got "
                              f"{self.exposures!r}")
        if self.exposures == "table" and not self.exposures_location:
            raise SourceError(f"source {self.name!r}: exposures='table' needs exposures_location (the table or "
                              "files holding user id, timestamp and variant of each exposure)")
        unknown = set(self.columns) - {*_REQUIRED, *_OPTIONAL}
        if unknown:
            raise SourceError(f"source {self.name!r}: unknown column mapping key(s) {sorted(unknown)}; map "
                              f"{list(_REQUIRED + _OPTIONAL)}")
        for attr, column in self.attributes.items():
            if not attr or not column or attr == self.exposure_event:
                raise SourceError(f"source {self.name!r}: attributes must map an attribute name to a column, "
                                  f"got {attr!r}: {column!r}; e.g. attributes={{'country': 'country_code'}}")
        if self.timezone not in (None, "UTC"):
            raise SourceError(f"source {self.name!r}: timezone must be 'UTC' (store UTC or timezone-aware "
                              f"timestamps), got {self.timezone!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceSpec:
        return cls(**data)

    def column(self, name: str) -> str | None:
        if name in self.columns:
            return self.columns[name]
        return name if name in _REQUIRED else None


def _iceberg_files(location: str, catalog: dict[str, str], source: str) -> list[str]:
    """The data files of an Iceberg table's current snapshot (pyiceberg plans the scan; the files are
    then read in place like any Parquet files)."""
    try:
        if catalog:
            from pyiceberg.catalog import load_catalog

            props = {k: v for k, v in catalog.items() if k != "name"}
            table = load_catalog(catalog.get("name", "default"), **props).load_table(location)
        else:
            from pyiceberg.table import StaticTable

            table = StaticTable.from_metadata(location)
        tasks = list(table.scan().plan_files())
    except ImportError as exc:
        raise SourceError(f"source {source!r}: Iceberg tables need pyiceberg; pip install "
                          "'battleground[warehouse]'") from exc
    except Exception as exc:  # the catalog's or the file system's own error
        raise SourceError(f"source {source!r}: Iceberg table {location!r} cannot be loaded "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); give "
                          "'namespace.table' with catalog={'type': ..., 'uri': ...}, or a metadata JSON path") from exc
    if any(t.delete_files for t in tasks):
        raise SourceError(f"source {source!r}: Iceberg table {location!r} has delete files (merge-on-read), "
                          "which reading its data files in place would ignore; compact it (rewrite the data "
                          "files) or map a view of an engine that applies them")
    files = [t.file.file_path for t in tasks]
    if not files:
        raise SourceError(f"source {source!r}: Iceberg table {location!r} has no data files yet; write events "
                          "to it first")
    return [f[len("file://"):] if f.startswith("file://") else f for f in files]


def _relation_from(engine: Engine, fmt: str, location: str, view: str, *,
                   catalog: dict[str, str] | None = None, source: str = "") -> exp.Expression:
    """The FROM item reading ``location`` on ``engine`` in place."""
    import sqlglot
    from sqlglot import exp

    if fmt == "table":
        return exp.to_table(location)
    files: list[str] | str = location
    if fmt == "delta":
        from deltalake import DeltaTable

        files = list(DeltaTable(location).file_uris())
    if fmt == "iceberg":
        files = _iceberg_files(location, catalog or {}, source or location)
    if engine.dialect == "duckdb":
        arg = (exp.Array(expressions=[exp.Literal.string(f) for f in files]) if isinstance(files, list)
               else exp.Literal.string(files))
        from_ = sqlglot.parse_one("SELECT * FROM read_parquet(x)", read="duckdb").find(exp.From)
        assert from_ is not None
        return from_.this.transform(
            lambda n: arg if isinstance(n, exp.Column) and n.name == "x" else n)
    if engine.dialect == "spark":
        session = engine.session  # type: ignore[attr-defined]
        paths = files if isinstance(files, list) else [files]
        session.read.parquet(*paths).createOrReplaceTempView(view)
        return exp.to_table(view)
    raise StorageError(f"{fmt} files are read in place by DuckDB or Spark, not {engine.dialect}; "
                       "set connection='duckdb' or 'spark'")


def _columns(engine: Engine, relation: exp.Expression, source: str) -> dict[str, str]:
    """The source's columns and their types (upper case), from the engine itself."""
    from sqlglot import exp

    query = exp.select("*").from_(relation.copy()).limit(0).sql(dialect=engine.dialect)
    try:
        if engine.dialect == "duckdb":
            rows = engine.connection.execute(f"DESCRIBE {query}").fetchall()  # type: ignore[attr-defined]
            return {str(r[0]): str(r[1]).upper() for r in rows}
        if engine.dialect == "spark":
            df = engine.session.sql(query)  # type: ignore[attr-defined]
            return {f.name: f.dataType.simpleString().upper() for f in df.schema.fields}
        if engine.dialect == "clickhouse":
            table = engine.session.query(f"DESCRIBE ({query})", "ArrowTable")  # type: ignore[attr-defined]
            return {str(r["name"]): str(r["type"]).upper() for r in table.to_pylist()}
        raw = engine.engine.raw_connection()  # type: ignore[attr-defined]
        try:
            cur = raw.cursor()
            cur.execute(query)
            return {str(d[0]): "" for d in cur.description}
        finally:
            raw.close()
    except StorageError:
        raise
    except Exception as exc:  # the engine's own error: a missing table, no permission, a bad path
        raise SourceError(f"source {source!r} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                          "check the location, the connection and that its credentials may read it") from exc


def _check(spec: SourceSpec, found: dict[str, str], needed: dict[str, str | None], where: str,
           dialect: str) -> None:
    for ours, theirs in needed.items():
        if theirs is None:
            continue
        if theirs not in found:
            raise SourceError(
                f"source {spec.name!r}: column {theirs!r} ({ours}) is not in {where}; its columns are "
                f"{sorted(found)}; map it with columns={{{ours!r}: '<column>'}}"
            )
        kind = found[theirs]
        if not kind:
            continue
        if ours == "ts":
            if not any(t in kind for t in ("TIMESTAMP", "DATETIME")):
                raise SourceError(f"source {spec.name!r}: column {theirs!r} (ts) is {kind}, not a timestamp; "
                                  "map a TIMESTAMP column or cast it in a view")
            aware = any(t in kind for t in ("WITH TIME ZONE", "TIMESTAMPTZ", "TIMESTAMP_TZ", "LTZ", "'")) or (
                dialect == "spark" and kind == "TIMESTAMP")
            if not aware and spec.timezone != "UTC":
                raise SourceError(f"source {spec.name!r}: column {theirs!r} (ts) is a timezone-naive {kind}; "
                                  "say what zone it is in with timezone='UTC' (battleground reads UTC), or "
                                  "store timezone-aware timestamps")
        if ours in ("value", "covariate") and not any(
                t in kind for t in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC")):
            raise SourceError(f"source {spec.name!r}: column {theirs!r} ({ours}) is {kind}, not a number; map "
                              "a numeric column or leave it out")


def _lit(value: Any) -> exp.Expression:
    from sqlglot import exp

    return exp.Literal.number(value) if isinstance(value, int) else exp.Literal.string(str(value))


def _col(name: str | None, kind: str, alias: str) -> exp.Expr:
    from sqlglot import exp

    value: exp.Expression = exp.column(name) if name else exp.Null()
    return exp.alias_(exp.cast(value, exp.DataType.build(kind)), alias)


def _check_attributes(spec: SourceSpec, found: dict[str, str]) -> None:
    for attr, column in spec.attributes.items():
        if column not in found:
            raise SourceError(f"source {spec.name!r}: column {column!r} (attribute {attr!r}) is not in "
                              f"{spec.location}; its columns are {sorted(found)}; map it with "
                              f"attributes={{{attr!r}: '<column>'}}")
        kind = found[column]
        if kind and not any(t in kind for t in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC")):
            raise SourceError(f"source {spec.name!r}: column {column!r} (attribute {attr!r}) is {kind}, not a "
                              "number; slices are numeric codes: map a numeric column (a view can code a text "
                              "one, e.g. CASE country WHEN 'DE' THEN 1 … END)")


def _mapped(spec: SourceSpec, relation: exp.Expression, experiment_id: int, exposure_rows: bool,
            attribute: tuple[str, str] | None = None) -> exp.Select:
    """The source's rows in battleground's event columns; with ``attribute`` (name, column), the rows
    where that column is set as attribute events (event type ``name``, value the column)."""
    from sqlglot import exp

    variant = spec.column("variant")
    select = exp.select(
        exp.alias_(_lit(int(experiment_id)), "experiment_id"),
        _col(variant, "VARCHAR", "variant") if variant else exp.alias_(exp.Literal.string(""), "variant"),
        _col(spec.column("user_id"), "VARCHAR", "user_id"),
        exp.alias_(exp.Literal.string(attribute[0]), "event_type") if attribute
        else _col(spec.column("event_type"), "VARCHAR", "event_type"),
        _col(spec.column("ts"), "TIMESTAMP", "ts"),
        _col(attribute[1] if attribute else spec.column("value"), "DOUBLE", "value"),
        _col(None if attribute else spec.column("covariate"), "DOUBLE", "covariate"),
    ).from_(relation.copy())
    if attribute:
        return select.where(exp.column(attribute[1]).is_(exp.Null()).not_())
    if not exposure_rows:  # exposures come from elsewhere: the source's own exposure rows are not used
        select = select.where(exp.NEQ(this=exp.column(str(spec.column("event_type"))),
                                      expression=exp.Literal.string("exposure")))
    return select


def _exposures(spec: SourceSpec, relation: exp.Expression, experiment_id: int) -> exp.Select:
    from sqlglot import exp

    cols = {"user_id": "user_id", "ts": "ts", "variant": "variant", **spec.exposure_columns}
    return exp.select(
        exp.alias_(_lit(int(experiment_id)), "experiment_id"),
        exp.alias_(exp.cast(exp.column(cols["variant"]), exp.DataType.build("VARCHAR")), "variant"),
        exp.alias_(exp.cast(exp.column(cols["user_id"]), exp.DataType.build("VARCHAR")), "user_id"),
        exp.alias_(exp.Literal.string("exposure"), "event_type"),
        exp.alias_(exp.cast(exp.column(cols["ts"]), exp.DataType.build("TIMESTAMP")), "ts"),
        exp.alias_(exp.cast(exp.Null(), exp.DataType.build("DOUBLE")), "value"),
        exp.alias_(exp.cast(exp.Null(), exp.DataType.build("DOUBLE")), "covariate"),
    ).from_(relation.copy())


def open_source(
    spec: SourceSpec, experiment_id: int, *, engine: Engine | None = None,
    assignment_log: pa.Table | None = None, registry_url: str = "",
) -> WarehouseEventStore:
    """A read-only store over ``spec`` for one experiment, its mapping checked against the real columns.

    ``engine`` overrides the spec's connection (e.g. an existing Spark session); ``assignment_log`` gives
    battleground's exposure events when ``spec.exposures == "assignment_log"`` (DuckDB and Spark join
    them with the source in place, without writing anything to it).
    """
    from sqlglot import exp

    try:
        engine = engine or open_engine(spec.connection, spec.spark_conf)
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"source {spec.name!r}: cannot connect with {spec.connection!r} "
                          f"({type(exc).__name__}: {exc}); check the connection setting") from exc
    if engine.dialect == "duckdb":
        engine.connection.execute("SET TimeZone = 'UTC'")  # type: ignore[attr-defined]
    view = f"bg_source_{experiment_id}"
    try:
        relation = _relation_from(engine, spec.format, spec.location, view, catalog=spec.catalog, source=spec.name)
    except StorageError:
        raise
    except Exception as exc:
        raise SourceError(f"source {spec.name!r}: {spec.location!r} cannot be read ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0]}); check the path and the format") from exc
    needed = {c: spec.column(c) for c in (*_REQUIRED, *_OPTIONAL)}
    if spec.exposures == "events" and not needed["variant"]:
        raise SourceError(f"source {spec.name!r}: exposures='events' needs a variant column; map it with "
                          "columns={'variant': '<column>'}")
    found = _columns(engine, relation, spec.name)
    _check(spec, found, needed, spec.location, engine.dialect)
    _check_attributes(spec, found)
    union: exp.Query = _mapped(spec, relation, experiment_id, spec.exposures == "events")
    for attribute in spec.attributes.items():
        union = exp.union(union, _mapped(spec, relation, experiment_id, True, attribute), distinct=False)
    if spec.exposures == "events" and spec.exposure_event != "exposure":
        raise SourceError(f"source {spec.name!r}: exposure rows must have event type 'exposure'; map a view")
    if spec.exposures == "table":
        exposures = _relation_from(engine, spec.exposures_format, str(spec.exposures_location), view + "_exp",
                                   catalog=spec.catalog, source=spec.name)
        found = _columns(engine, exposures, spec.name)
        cols = {"user_id": "user_id", "ts": "ts", "variant": "variant", **spec.exposure_columns}
        _check(spec, found, {k: v for k, v in cols.items() if k != "variant"}, str(spec.exposures_location),
               engine.dialect)
        if cols["variant"] not in found:
            raise SourceError(f"source {spec.name!r}: column {cols['variant']!r} (variant) is not in "
                              f"{spec.exposures_location}; map it with exposure_columns={{'variant': '<column>'}}")
        union = exp.union(union, _exposures(spec, exposures, experiment_id), distinct=False)
    elif spec.exposures == "assignment_log":
        if assignment_log is None:
            raise SourceError(f"source {spec.name!r}: exposures='assignment_log' needs battleground's exposure "
                              "events (open it through the registry), or set exposures='table'")
        name = view + "_log"
        if engine.dialect == "duckdb":
            engine.connection.register(name, assignment_log)  # type: ignore[attr-defined]
        elif engine.dialect == "spark":
            import pandas as pd

            session = engine.session  # type: ignore[attr-defined]
            frame = assignment_log.to_pandas()
            # the log's naive times are UTC; naive, Spark would read them in the session's zone
            frame["ts"] = pd.to_datetime(frame["ts"]).dt.tz_localize("UTC")
            session.createDataFrame(frame).createOrReplaceTempView(name)
        else:
            raise SourceError(f"source {spec.name!r}: the assignment log joins sources on DuckDB or Spark only; "
                              f"on {engine.dialect} set exposures='table' (an exposures table in that engine)")
        log = exp.select("experiment_id", "variant", "user_id", "event_type",
                         exp.alias_(exp.cast(exp.column("ts"), exp.DataType.build("TIMESTAMP")), "ts"),
                         "value", "covariate").from_(name)
        union = exp.union(union, log, distinct=False)
    return WarehouseEventStore(engine, exp.select("*").from_(union.subquery("mapped")), registry_url,
                               name=f"source {spec.name!r}")


# ------------------------------------------------------------------ the registry's record of sources
def save_source(registry_url: str, experiment_id: int, spec: SourceSpec) -> None:
    """Record ``spec`` as the source of experiment ``experiment_id`` (replacing an earlier one)."""
    from sqlalchemy.orm import Session

    from battleground.storage._db import registry_engine
    from battleground.storage._models import SourceRow

    with Session(registry_engine(registry_url)) as session, session.begin():
        row = session.get(SourceRow, int(experiment_id))
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        if row is None:
            session.add(SourceRow(experiment_id=int(experiment_id), name=spec.name, spec=spec.to_dict(),
                                  updated_at=now))
        else:
            row.name, row.spec, row.updated_at = spec.name, spec.to_dict(), now


def load_source(registry_url: str, experiment_id: int) -> SourceSpec | None:
    """The source an experiment reads: its own, else the project's (when the project has exactly one),
    else ``None`` (its events are in battleground's store)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from battleground.storage._db import registry_engine
    from battleground.storage._models import ProjectSourceRow, SourceRow

    with Session(registry_engine(registry_url)) as session:
        row = session.get(SourceRow, int(experiment_id))
        if row is not None:
            return SourceSpec.from_dict(dict(row.spec))
        project = session.scalars(select(ProjectSourceRow).order_by(ProjectSourceRow.name)).all()
    if not project:
        return None
    if len(project) > 1:
        names = ", ".join(repr(p.name) for p in project)
        raise SourceError(f"experiment {experiment_id} has no source of its own and the project has several "
                          f"({names}); choose one with `battleground sources add NAME --experiment "
                          f"{experiment_id}`, or remove the others")
    return SourceSpec.from_dict(dict(project[0].spec))


@dataclass(frozen=True)
class SourceEntry:
    """A registered source: ``experiment_id`` is ``None`` for a project source."""

    spec: SourceSpec
    experiment_id: int | None
    updated_at: dt.datetime

    @property
    def scope(self) -> str:
        return "project" if self.experiment_id is None else f"experiment {self.experiment_id}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.spec.name, "scope": self.scope, "experiment_id": self.experiment_id,
                "updated_at": self.updated_at.isoformat(), "spec": self.spec.to_dict()}


def check_project_source(spec: SourceSpec) -> None:
    """A project source serves every experiment, so its exposures must be per experiment."""
    if spec.exposures == "events":
        raise SourceError(
            f"source {spec.name!r}: a project source cannot take exposures from its own rows "
            "(exposures='events': every experiment would get the same users); use exposures='assignment_log' "
            "or 'table', or register it for one experiment with --experiment"
        )


def save_project_source(registry_url: str, spec: SourceSpec) -> None:
    """Record ``spec`` as a source of the whole project (replacing one of the same name)."""
    from sqlalchemy.orm import Session

    from battleground.storage._db import registry_engine
    from battleground.storage._models import ProjectSourceRow

    check_project_source(spec)
    with Session(registry_engine(registry_url)) as session, session.begin():
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        row = session.get(ProjectSourceRow, spec.name)
        if row is None:
            session.add(ProjectSourceRow(name=spec.name, spec=spec.to_dict(), updated_at=now))
        else:
            row.spec, row.updated_at = spec.to_dict(), now


def list_sources(registry_url: str) -> list[SourceEntry]:
    """Every registered source: the project's by name, then the experiments' by id."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from battleground.storage._db import registry_engine
    from battleground.storage._models import ProjectSourceRow, SourceRow

    with Session(registry_engine(registry_url)) as session:
        project = session.scalars(select(ProjectSourceRow).order_by(ProjectSourceRow.name)).all()
        own = session.scalars(select(SourceRow).order_by(SourceRow.experiment_id)).all()
        return ([SourceEntry(SourceSpec.from_dict(dict(r.spec)), None, r.updated_at) for r in project]
                + [SourceEntry(SourceSpec.from_dict(dict(r.spec)), r.experiment_id, r.updated_at) for r in own])


def find_source(registry_url: str, name: str, experiment_id: int | None = None) -> SourceEntry:
    """The source called ``name`` (of one experiment, or of the project when ``experiment_id`` is None)."""
    for entry in list_sources(registry_url):
        if entry.spec.name == name and entry.experiment_id == experiment_id:
            return entry
    where = "the project" if experiment_id is None else f"experiment {experiment_id}"
    known = sorted({f"{e.spec.name} ({e.scope})" for e in list_sources(registry_url)})
    raise SourceError(f"no source {name!r} registered for {where}; registered: {', '.join(known) or 'none'}; "
                      "see `battleground sources list`")


def remove_source(registry_url: str, name: str, experiment_id: int | None = None) -> None:
    """Forget the source ``name`` (the experiment's, or the project's): its events stay where they are."""
    from sqlalchemy.orm import Session

    from battleground.storage._db import registry_engine
    from battleground.storage._models import ProjectSourceRow, SourceRow

    find_source(registry_url, name, experiment_id)
    with Session(registry_engine(registry_url)) as session, session.begin():
        row = (session.get(ProjectSourceRow, name) if experiment_id is None
               else session.get(SourceRow, int(experiment_id)))
        if row is not None:
            session.delete(row)
