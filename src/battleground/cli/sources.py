"""`battleground sources …` commands: events read in place, registered per project or per experiment."""

from __future__ import annotations

from typing import Any

import typer

from battleground.cli._common import experiment_key as _experiment_key
from battleground.cli._table import (
    Column,
    Table,
    csv_option,
    json_option,
    output_format,
    print_tables,
)

app = typer.Typer(help="Register tables and files read in place (warehouse-native sources).", no_args_is_help=True)

_COLUMN_HELP = ("battleground column=source column, repeatable: user_id, ts, event_type, value, covariate, "
                "variant (e.g. --column user_id=uid --column ts=event_time).")


def _mapping(items: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE; write e.g. user_id=uid", param_hint=option)
        out[ours.strip()] = theirs.strip()
    return out


def _experiment_id(settings: Any, experiment: str | None) -> int | None:
    if experiment is None:
        return None
    from battleground.experiment.register import Registry

    return int(Registry(settings.registry_url).get(_experiment_key(experiment)).id)


@app.command("add")
def add_command(
    name: str = typer.Argument(..., help="What the registry and errors call the source."),
    location: str = typer.Argument(..., help="A table or view name, Parquet files (a glob), a Delta or an "
                                   "Iceberg table (a metadata file or a catalog table, see --format)."),
    experiment: str | None = typer.Option(None, "--experiment", help="Register it for this experiment (id or "
                                          "name) only; default: for the whole project."),
    fmt: str = typer.Option("table", "--format", help="table, parquet, delta or iceberg."),
    connection: str = typer.Option("duckdb", "--connection", help="duckdb, spark, chdb or a SQLAlchemy URL."),
    column: list[str] = typer.Option([], "--column", help=_COLUMN_HELP),
    exposures: str = typer.Option("assignment_log", "--exposures", help="Where exposures come from: "
                                  "assignment_log (battleground's), events (the source's own rows) or table."),
    exposures_location: str | None = typer.Option(None, "--exposures-location", help="The exposures table."),
    exposures_format: str = typer.Option("table", "--exposures-format", help="Its format (as --format)."),
    exposure_column: list[str] = typer.Option([], "--exposure-column", help="Exposures table mapping: user_id, "
                                              "ts, variant (e.g. --exposure-column ts=seen_at)."),
    catalog: list[str] = typer.Option([], "--catalog", help="An Iceberg source's pyiceberg catalog, "
                                      "repeatable: --catalog type=sql --catalog uri=sqlite:///cat.db "
                                      "(LOCATION is then namespace.table)."),
    attribute: list[str] = typer.Option([], "--attribute", help="A user attribute for breakdowns and "
                                        "post-stratification, from a numeric column, repeatable: "
                                        "--attribute country=country_code."),
    timezone: str | None = typer.Option(None, "--timezone", help="UTC: the zone of timezone-naive timestamps."),
    check: bool = typer.Option(True, "--check/--no-check", help="Read the source's columns now and check the "
                               "mapping against them (default)."),
) -> None:
    """Register a source: where events live and how their columns map to battleground's."""
    from battleground.cli._common import console, load_settings, user_errors

    settings = load_settings()
    with user_errors():
        from battleground.storage._sources import (
            SourceSpec,
            check_project_source,
            open_source,
            save_project_source,
            save_source,
        )

        spec = SourceSpec(name, location, connection=connection, format=fmt, columns=_mapping(column, "--column"),
                          exposures=exposures, exposures_location=exposures_location,
                          exposures_format=exposures_format,
                          exposure_columns=_mapping(exposure_column, "--exposure-column"), timezone=timezone,
                          catalog=_mapping(catalog, "--catalog"), attributes=_mapping(attribute, "--attribute"))
        exp_id = _experiment_id(settings, experiment)
        if exp_id is None:
            check_project_source(spec)
        if check:
            open_source(spec, exp_id or 0, assignment_log=_empty_log() if exposures == "assignment_log" else None)
        if exp_id is None:
            save_project_source(settings.registry_url, spec)
            console.print(f"source {name!r} registered for the project (experiments without their own read it)")
        else:
            save_source(settings.registry_url, exp_id, spec)
            console.print(f"source {name!r} registered for experiment {exp_id}")


def _empty_log() -> Any:
    from battleground.storage._arrow import EVENT_SCHEMA

    return EVENT_SCHEMA.empty_table()


def _rows(entries: list[Any]) -> list[dict[str, Any]]:
    return [{"name": e.spec.name, "scope": e.scope, "format": e.spec.format, "location": e.spec.location,
             "connection": e.spec.connection, "exposures": e.spec.exposures,
             "updated_at": e.updated_at} for e in entries]


@app.command("list")
def list_command(as_json: bool = json_option, as_csv: bool = csv_option) -> None:
    """The registered sources, the project's first."""
    from battleground.cli._common import load_settings, user_errors

    with user_errors():
        from battleground.storage._sources import list_sources

        rows = _rows(list_sources(load_settings().registry_url))
    print_tables([Table("sources", "Sources", [Column.of("name"), Column.of("scope"), Column.of("format"),
                                               Column.of("location"), Column.of("connection"),
                                               Column.of("exposures")], rows)],
                 output_format(as_json, as_csv))


@app.command("show")
def show_command(
    name: str = typer.Argument(..., help="The source's name."),
    experiment: str | None = typer.Option(None, "--experiment", help="The experiment it is registered for "
                                          "(default: the project's source of that name)."),
) -> None:
    """A source's whole setting, as JSON."""
    import json

    from battleground.cli._common import load_settings, user_errors

    settings = load_settings()
    with user_errors():
        from battleground.storage._sources import find_source

        entry = find_source(settings.registry_url, name, _experiment_id(settings, experiment))
    typer.echo(json.dumps(entry.to_dict(), indent=2, ensure_ascii=False))


@app.command("remove")
def remove_command(
    name: str = typer.Argument(..., help="The source's name."),
    experiment: str | None = typer.Option(None, "--experiment", help="The experiment it is registered for "
                                          "(default: the project's source of that name)."),
) -> None:
    """Forget a source (nothing is deleted where the events live)."""
    from battleground.cli._common import console, load_settings, user_errors

    settings = load_settings()
    with user_errors():
        from battleground.storage._sources import remove_source

        exp_id = _experiment_id(settings, experiment)
        remove_source(settings.registry_url, name, exp_id)
    console.print(f"source {name!r} removed" + (f" from experiment {exp_id}" if exp_id is not None else ""))
