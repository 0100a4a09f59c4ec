"""`battleground incremental …` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from battleground.cli._common import console, fail, load_settings, user_errors

app = typer.Typer(help="Incremental (Lambda-Learner-style) model updates from a stream.", no_args_is_help=True)

_CKPT_HELP = "Checkpoint folder (default: <BATTLEGROUND_HOME>/incremental/checkpoints)."


def _checkpoints(path: Path | None) -> Path:
    return path if path is not None else load_settings().home / "incremental" / "checkpoints"


@app.command("run")
def run_command(
    source: Path = typer.Argument(..., help="Folder of Parquet mini-batches, read in file-name order."),
    checkpoint_dir: Path | None = typer.Option(None, "--checkpoint-dir", help=_CKPT_HELP),
    mode: str = typer.Option("glmix", help="glmix (per-entity random effects) or single (one model)."),
    penalty: float = typer.Option(10.0, help="L2 penalty λ (prior precision of new coefficients)."),
    delta: float = typer.Option(0.8, help="Forgetting factor δ in [0, 1]."),
    warmup: Path | None = typer.Option(None, help="Parquet file to fit the GLMix fixed effect on first."),
    fixed_effect_penalty: float = typer.Option(1.0, help="L2 penalty of the fixed effect."),
    checkpoint_every: int = typer.Option(1, help="Checkpoint after this many batches."),
    keep_last: int = typer.Option(5, help="Checkpoint versions to keep."),
    max_batches: int | None = typer.Option(None, help="Stop after this many new batches."),
    throttle: float = typer.Option(0.0, help="Seconds to wait after each batch (simulates a live stream)."),
) -> None:
    """Update a model from mini-batches, checkpointing; a restart resumes after the last checkpoint."""
    with user_errors():
        checkpoint_dir = _checkpoints(checkpoint_dir)
        from battleground.incremental import GLMix, SequentialBayesianLogisticRegression, run_stream
        from battleground.incremental._stream import CheckpointStore

        store = CheckpointStore(checkpoint_dir)
        model = None
        if not store.versions():
            if mode == "glmix":
                model = GLMix(penalty=penalty, delta=delta, fixed_effect_penalty=fixed_effect_penalty)
                if warmup is not None:
                    import pandas as pd

                    model.fit_fixed_effect(pd.read_parquet(warmup))
            elif mode == "single":
                if warmup is not None:
                    fail("--warmup fits the GLMix fixed effect; it has no use with --mode single")
                model = SequentialBayesianLogisticRegression(penalty=penalty, delta=delta)
            else:
                fail(f"mode must be 'glmix' or 'single', got {mode!r}")
        else:
            latest = store.latest()
            assert latest is not None
            console.print(f"resuming from version {latest.version} (watermark {latest.watermark})")

        def report(key: str, _model: object, meta: dict) -> None:
            console.print(f"batch {key}: {meta.get('n', '?')} records, Newton iterations {meta.get('nit', '?')}")

        result = run_stream(source, checkpoint_dir, model=model, checkpoint_every=checkpoint_every,
                            keep_last=keep_last, max_batches=max_batches, throttle_s=throttle, on_batch=report)
        ck = result.checkpoint
        console.print(
            f"processed {result.processed} batches ({result.records} records), skipped {result.skipped} "
            f"already learned; checkpoint version {ck.version if ck else '-'}, watermark {ck.watermark if ck else '-'}"
        )


@app.command("status")
def status_command(
    checkpoint_dir: Path | None = typer.Option(None, "--checkpoint-dir", help=_CKPT_HELP),
) -> None:
    """Show the checkpoint versions and the newest one's watermark."""
    with user_errors():
        checkpoint_dir = _checkpoints(checkpoint_dir)
        from battleground.incremental._stream import CheckpointStore

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

        from battleground.incremental._solver import sigmoid
        from battleground.incremental._stream import CheckpointStore

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
