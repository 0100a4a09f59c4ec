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
) -> None:
    """Validate a file of events and store it in one transaction (re-sending it adds nothing)."""
    from battleground.cli._common import console, load_settings, user_errors

    with user_errors():
        from battleground.experiment.events import ingest, open_event_store

        key: int | str | None = experiment
        if experiment is not None and experiment.strip().isdigit():
            key = int(experiment)
        result = ingest(open_event_store(load_settings()), file, experiment=key)
        console.print(
            f"received {result.received:,} · inserted {result.inserted:,} · duplicates {result.duplicates:,}"
            + (f" · conflicts {result.conflicts:,} (re-sent ids with other content; the stored events were kept)"
               if result.conflicts else "")
        )


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
