"""`battleground events …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Ingest and inspect experiment events.", no_args_is_help=True)


@app.command("ingest")
def ingest_command(
    file: str = typer.Argument(..., help="Events file: .parquet, .csv, .jsonl (one JSON object a line) or .json."),
    experiment: str | None = typer.Option(
        None, "--experiment", help="Experiment (name or id) of every row, when the file has no experiment column."
    ),
    partial: bool = typer.Option(
        False, "--partial", help="Store the rows the experiments accept and list those they refuse (a time "
        "after the stop, …); by default such a file is refused whole, naming the rows."
    ),
    producer: str | None = typer.Option(
        None, "--producer", help="The sender's id; with --sequence a re-sent file is reported as a replay."
    ),
    sequence: int | None = typer.Option(
        None, "--sequence", help="The file's number for its producer (0, 1, 2, …; a re-send keeps it)."
    ),
) -> None:
    """Validate a file of events and store it in one transaction (re-sending it adds nothing)."""
    from battleground.cli._common import console, load_settings, user_errors

    with user_errors():
        from battleground.experiment.events import ingest, open_event_store

        key: int | str | None = experiment
        if experiment is not None and experiment.strip().isdigit():
            key = int(experiment)
        result = ingest(open_event_store(load_settings()), file, experiment=key, partial=partial,
                        producer=producer, sequence=sequence)
        console.print(
            f"received {result.received:,} · inserted {result.inserted:,} · duplicates {result.duplicates:,}"
            + (f" · conflicts {result.conflicts:,} (re-sent ids with other content; the stored events were kept)"
               if result.conflicts else "")
            + (f" · rejected {len(result.rejected):,} (not stored)" if result.rejected else "")
            + (f" · replays {result.replays:,}" if result.sequence is not None else ""),
            highlight=False,
        )
        if result.sequence is not None:
            s = result.sequence
            told = {"next": "the producer's next batch", "late": "a batch that was missing, arriving late",
                    "replay": "a replay: this producer sent this sequence before",
                    "gap": f"after a gap: sequences {s.missing[0]}–{s.missing[1]} have not arrived" if s.missing else ""}
            console.print(f"producer {s.producer!r} sequence {s.sequence}: {told[s.status]}",
                          highlight=False, markup=False)
        for r in result.rejected[:20]:
            where = f"line {r.line}" if r.line is not None else f"row {r.row}"
            console.print(f"  rejected {where} ({r.event_id!r}), field '{r.field}': {r.reason}",
                          highlight=False, markup=False)
        if len(result.rejected) > 20:
            console.print(f"  … and {len(result.rejected) - 20:,} more rejected rows", highlight=False)


@app.command("count")
def count_command(
    experiment: str | None = typer.Argument(None, help="Experiment id or name (default: all events)."),
) -> None:
    """Number of stored events (of one experiment, or all), by event type."""
    from battleground.cli._common import console, load_settings, user_errors

    with user_errors():
        from battleground.experiment.events import count_events, open_event_store

        key: int | str | None = experiment
        if experiment is not None and experiment.strip().isdigit():
            key = int(experiment)
        total, by_type = count_events(open_event_store(load_settings()), key)
        what = f"experiment {experiment}" if experiment is not None else "all experiments"
        detail = ", ".join(f"{t} {n:,}" for t, n in by_type)
        console.print(f"{total:,} events in {what}" + (f" ({detail})" if detail else ""))


@app.command("sql")
def sql_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    dialect: str = typer.Option("duckdb", "--dialect", help="SQL dialect: bigquery, snowflake, trino, "
                                "databricks, spark, clickhouse, mysql, postgres, duckdb, … (sqlglot's names)."),
    table: str = typer.Option("events", "--table", help="Table (or view) holding the events, in battleground's "
                              "event columns (experiment_id, variant, user_id, event_type, ts, value, covariate)."),
    multiple_exposures: str = typer.Option("exclude", "--multiple-exposures", help="exclude, first or keep."),
) -> None:
    """Print the metric-sums query of an experiment in an engine's dialect (one definition, compiled with
    sqlglot), to run where the events live."""
    from battleground.cli._common import console, load_settings, user_errors

    with user_errors():
        from battleground.experiment._metric_sums import check_multiple_exposures, metric_query
        from battleground.experiment.register import Registry
        from battleground.storage._warehouse import sums_sql

        key: int | str = int(experiment) if experiment.strip().isdigit() else experiment
        rec = Registry(load_settings().registry_url).get(key)
        if not rec.metrics:
            from battleground.experiment._metric_sums import SourceSettingError

            raise SourceSettingError(f"experiment {rec.name!r} has no metrics; register metrics with "
                                     "`battleground experiment create --metric …`")
        # sqlglot's notes on a dialect's limits (e.g. Presto's millisecond timestamps) go to stderr, so
        # stdout stays exactly the SQL whatever logging handlers the process has
        import logging
        import sys

        log = logging.getLogger("sqlglot")
        note = logging.StreamHandler(sys.stderr)
        note.setFormatter(logging.Formatter("note: %(message)s"))
        propagate, log.propagate = log.propagate, False
        log.addHandler(note)
        from battleground.experiment._cupedpp import regression_adjustment

        spec = regression_adjustment(dict(rec.metadata))  # CUPED++ rides in the same scan
        try:
            text = sums_sql(rec.id, [metric_query(m) for m in rec.metrics], dialect, rec.start_at, rec.end_at,
                            multiple_exposures=check_multiple_exposures(multiple_exposures), relation=table,
                            attributes=None if spec is None else spec.attributes)
        finally:
            log.removeHandler(note)
            log.propagate = propagate
        console.print(text, markup=False, highlight=False, soft_wrap=True)
