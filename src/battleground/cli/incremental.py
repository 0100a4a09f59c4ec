"""`battleground incremental …` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from battleground.cli._common import console, fail, load_settings, user_errors

app = typer.Typer(help="Incremental (Lambda-Learner-style) model updates from a stream.", no_args_is_help=True)

_CKPT_HELP = "Checkpoint folder (default: <BATTLEGROUND_HOME>/incremental/checkpoints)."


def _checkpoints(path: Path | None) -> Path:
    return path if path is not None else load_settings().home / "incremental" / "checkpoints"


_DEFAULTS = {"mode": "glmix", "penalty": 10.0, "delta": 0.8, "fixed_effect_penalty": 1.0}


def _check_against_checkpoint(latest: object, given: dict[str, object], checkpoint_dir: Path) -> None:
    """Options the user passed that disagree with the checkpoint would be ignored silently: refuse them."""
    have = {"mode": latest.kind, **latest.params}  # type: ignore[attr-defined]
    clashes = [f"--{name.replace('_', '-')} {value} (the checkpoint has {have[name]})"
               for name, value in given.items() if value is not None and name in have and have[name] != value]
    if clashes:
        fail(f"{'; '.join(clashes)}: the checkpoint in {checkpoint_dir} was trained with other settings. "
                         "Drop these options to resume it, or pass a new --checkpoint-dir to start a new model")


def _source(source: str | None, from_events: str | None, *, batch_size: int, idle_exit: float | None,
            max_wait: float, label_event: str | None, exposure_event: str, window_hours: float,
            features: list[str], entity: bool) -> object:
    if (source is None) == (from_events is None):
        fail("pass either SOURCE (a folder or a stream URL) or --from-events EXPERIMENT, not "
                         f"{'both' if source else 'neither'}")
    if from_events is None:
        from battleground.incremental._brokers import open_source

        assert source is not None
        return open_source(source, batch_size=batch_size, idle_exit_s=idle_exit, max_wait_s=max_wait)
    if label_event is None:
        fail("--from-events needs --label-event, the event type that makes a record's label 1")
    import datetime as dt

    from battleground.experiment.events import open_event_store
    from battleground.experiment.register import Registry
    from battleground.incremental._events_source import EventStoreSource

    settings = load_settings()
    key: str | int = int(from_events) if from_events.isdigit() else from_events
    experiment = Registry(settings.registry_url).get(key)
    return EventStoreSource(open_event_store(settings), experiment.id, label_event=label_event,
                            exposure_event=exposure_event, window=dt.timedelta(hours=window_hours),
                            features=features, entity="user_id" if entity else None, batch_size=batch_size)


@app.command("run")
def run_command(
    source: str | None = typer.Argument(None, help="Folder of Parquet mini-batches (natural file-name order: batch-9 "
                                 "before batch-10), or a stream URL: nats://HOST:PORT/STREAM/SUBJECT?durable=NAME "
                                 "or redis://HOST:PORT/DB?stream=KEY&group=NAME."),
    checkpoint_dir: Path | None = typer.Option(None, "--checkpoint-dir", help=_CKPT_HELP),
    mode: str | None = typer.Option(None, help="glmix (per-entity random effects, default) or single (one model)."),
    penalty: float | None = typer.Option(None, help="L2 penalty λ (prior precision of new coefficients; default 10)."),
    delta: float | None = typer.Option(None, help="Forgetting factor δ in [0, 1] (default 0.8)."),
    warmup: Path | None = typer.Option(None, help="Parquet file to fit the GLMix fixed effect on first."),
    fixed_effect_penalty: float | None = typer.Option(None, help="L2 penalty of the fixed effect (default 1)."),
    checkpoint_every: int = typer.Option(1, help="Checkpoint after this many batches."),
    keep_last: int = typer.Option(5, help="Checkpoint versions to keep."),
    max_batches: int | None = typer.Option(None, help="Stop after this many new batches."),
    throttle: float = typer.Option(0.0, help="Seconds to wait after each batch (simulates a live stream)."),
    on_bad_record: str = typer.Option("raise", help="raise (name batch, file and row), skip the bad rows, or "
                                      "quarantine them with their reason into --dead-letter-dir."),
    dead_letter_dir: Path | None = typer.Option(None, help="Folder for quarantined rows (default: "
                                                "<checkpoint-dir>/dead-letter)."),
    batch_size: int = typer.Option(1000, help="Records per mini-batch (stream URLs only)."),
    idle_exit: float | None = typer.Option(None, help="Stop when a stream URL has had no record for this many "
                                           "seconds (default: run until stopped)."),
    max_wait: float = typer.Option(1.0, help="Learn a partial batch when a stream URL has been quiet this many "
                                   "seconds (batch boundaries then depend on timing)."),
    from_events: str | None = typer.Option(None, "--from-events", help="Learn from the stored events of this "
                                           "experiment (name or id) instead of SOURCE: one record per exposure."),
    label_event: str | None = typer.Option(None, help="--from-events: the event type that makes the label 1."),
    exposure_event: str = typer.Option("exposure", help="--from-events: the event type of a record."),
    window_hours: float = typer.Option(24.0, help="--from-events: hours after the exposure a label event counts."),
    feature: list[str] = typer.Option(["variant"], "--feature", help="--from-events: declared feature columns "
                                      "(variant as one-hot, value, covariate); repeat the option for several."),
) -> None:
    """Update a model from mini-batches, checkpointing; a restart resumes after the last checkpoint."""
    with user_errors():
        checkpoint_dir = _checkpoints(checkpoint_dir)
        from battleground.incremental import GLMix, SequentialBayesianLogisticRegression, run_stream
        from battleground.incremental._checkpoint import CheckpointStore

        store = CheckpointStore(checkpoint_dir)
        model = None
        latest = store.latest()
        if latest is None:
            settings = {k: v if v is not None else _DEFAULTS[k] for k, v in
                        {"mode": mode, "penalty": penalty, "delta": delta,
                         "fixed_effect_penalty": fixed_effect_penalty}.items()}
            if settings["mode"] == "glmix":
                model = GLMix(penalty=settings["penalty"], delta=settings["delta"],
                              fixed_effect_penalty=settings["fixed_effect_penalty"])
                if warmup is not None:
                    import pandas as pd

                    model.fit_fixed_effect(pd.read_parquet(warmup))
            elif settings["mode"] == "single":
                if warmup is not None:
                    fail("--warmup fits the GLMix fixed effect; it has no use with --mode single")
                if fixed_effect_penalty is not None:
                    fail("--fixed-effect-penalty belongs to GLMix; it has no use with --mode single")
                model = SequentialBayesianLogisticRegression(penalty=settings["penalty"], delta=settings["delta"])
            else:
                fail(f"mode must be 'glmix' or 'single', got {settings['mode']!r}")
        else:
            _check_against_checkpoint(latest, {"mode": mode, "penalty": penalty, "delta": delta,
                                               "fixed_effect_penalty": fixed_effect_penalty}, checkpoint_dir)
            console.print(f"resuming from version {latest.version} (watermark {latest.watermark})")

        def report(key: str, _model: object, meta: dict) -> None:
            console.print(f"batch {key}: {meta.get('n', '?')} records, Newton iterations {meta.get('nit', '?')}")

        stream = _source(source, from_events, batch_size=batch_size, idle_exit=idle_exit, max_wait=max_wait,
                         label_event=label_event, exposure_event=exposure_event, window_hours=window_hours,
                         features=feature, entity=(latest.kind if latest else (mode or "glmix")) == "glmix")
        dead = dead_letter_dir if dead_letter_dir is not None else checkpoint_dir / "dead-letter"
        result = run_stream(stream, checkpoint_dir, model=model, checkpoint_every=checkpoint_every,
                            keep_last=keep_last, max_batches=max_batches, throttle_s=throttle,
                            on_bad_record=on_bad_record, dead_letter_dir=dead, on_batch=report)
        ck = result.checkpoint
        console.print(
            f"processed {result.processed} batches ({result.records} records), skipped {result.skipped} "
            f"already learned, rejected {result.rejected} records"
            + (f" (quarantined in {dead})" if result.quarantined else "")
            + f"; checkpoint version {ck.version if ck else '-'}, watermark {ck.watermark if ck else '-'}"
        )


@app.command("status")
def status_command(
    checkpoint_dir: Path | None = typer.Option(None, "--checkpoint-dir", help=_CKPT_HELP),
) -> None:
    """Show the checkpoint versions and the newest one's watermark."""
    with user_errors():
        checkpoint_dir = _checkpoints(checkpoint_dir)
        from battleground.incremental._checkpoint import CheckpointStore

        store = CheckpointStore(checkpoint_dir)
        latest = store.latest()
        if latest is None:
            fail(f"no checkpoint in {checkpoint_dir}; `battleground incremental run` writes them")
        console.print(f"versions: {store.versions()}")
        console.print(f"latest: v{latest.version} kind={latest.kind} batches={latest.n_batches} "
                      f"watermark={latest.watermark} created={latest.created_at}")


@app.command("score")
def score_command(
    input_path: Path = typer.Argument(..., help="Parquet file of rows (entity, offset, feature columns)."),
    checkpoint_dir: Path | None = typer.Option(None, "--checkpoint-dir", help=_CKPT_HELP),
    output: Path = typer.Option(..., help="Parquet file to write with added score and probability."),
    version: int | None = typer.Option(None, help="Model version (default: newest)."),
) -> None:
    """Score a Parquet file with a checkpointed model."""
    with user_errors():
        checkpoint_dir = _checkpoints(checkpoint_dir)
        import pandas as pd

        from battleground.incremental._checkpoint import CheckpointStore
        from battleground.incremental._solver import sigmoid

        model, ckpt = CheckpointStore(checkpoint_dir).load(version)
        frame = pd.read_parquet(input_path)
        scores = model.decision_function(frame.drop(columns=[c for c in ("label", "weight") if c in frame]))
        out = frame.assign(score=scores, probability=sigmoid(scores))
        out.to_parquet(output)
        console.print(f"scored {len(out)} rows with model v{ckpt.version} → {output}")


@app.command("generate")
def generate_command(
    out_dir: Path = typer.Argument(..., help="Folder for the mini-batch Parquet files."),
    batches: int = typer.Option(20, help="Number of mini-batches."),
    batch_size: int = typer.Option(500, help="Records per mini-batch."),
    entities: int = typer.Option(50, help="Number of entities."),
    features: int = typer.Option(10, help="Number of dense features."),
    seed: int = typer.Option(0, help="Random seed."),
    warmup_file: Path | None = typer.Option(None, help="Also write a warm-up set for the fixed effect here."),
) -> None:
    """Write a synthetic drifting stream (seeded) as Parquet mini-batches."""
    with user_errors():
        from battleground.incremental import make_stream

        stream = make_stream(n_batches=batches, batch_size=batch_size, n_entities=entities,
                             n_features=features, seed=seed, holdout_size=1)
        out_dir.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(stream.train):
            frame.to_parquet(out_dir / f"batch-{t:06d}.parquet")
        if warmup_file is not None:
            stream.warmup.to_parquet(warmup_file)
        console.print(f"wrote {batches} batches of {batch_size} records to {out_dir}")
