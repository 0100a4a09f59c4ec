"""`battleground model …` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from battleground.cli._common import console, experiment_key, fail, load_settings, user_errors
from battleground.cli._table import (
    Column,
    Table,
    csv_option,
    json_option,
    output_format,
    print_tables,
)

app = typer.Typer(help="Split data, train, tune, evaluate and pick the champion model.", no_args_is_help=True)

_CONFIG = typer.Option(..., "--config", "-c", "--config_yaml_path",
                       help="Training config YAML (seed 002's training-config.yml keys).")


@app.command("split")
def split(config: Path = _CONFIG) -> None:
    """Write train/valid/calib/test Parquet splits (seed 002's split_data.py)."""
    with user_errors():
        from battleground.model.tracking import split_from_config

        load_settings()
        paths = split_from_config(config)
        for name, path in paths.items():
            console.print(f"{name}: {path}")


@app.command("train")
def train(config: Path = _CONFIG, as_json: bool = json_option, as_csv: bool = csv_option) -> None:
    """Tune and train every supported model, logging trials and models to MLflow (`make train`)."""
    with user_errors():
        fmt = output_format(as_json, as_csv)
        settings = load_settings()
        from battleground.model.tracking import train_from_config

        if fmt == "table":
            with console.status("training…"):
                result = train_from_config(config, settings)
        else:
            result = train_from_config(config, settings)
        records = [{"model": r.model, "validation_score": r.valid_score, "run_id": r.run_id} for r in result.runs]
        print_tables([Table("runs", f"{result.experiment} (batch {result.batch_id}, seed {result.seed})",
                            [Column.of("model", key=True), Column.of("validation score", "validation_score",
                                                                     "{:.4f}", justify="right"),
                             Column.of("run id", "run_id")], records)], fmt)


@app.command("evaluate")
def evaluate(
    config: Path = _CONFIG,
    plots: Path | None = typer.Option(None, "--plots", help="Folder for ROC/PR/calibration PNGs and report.html."),
    experiment: str | None = typer.Option(
        None, "--experiment", metavar="ID|NAME",
        help="The A/B test whose decision this promotion acts on; recorded on the model version, whose page links to it."),
) -> None:
    """Pick the best model, score it on test and register it as champion if it clears the threshold."""
    with user_errors():
        settings = load_settings()
        from battleground.model.tracking import evaluate_from_config

        experiment_id = None
        if experiment is not None:
            from battleground.experiment.register import Registry

            experiment_id = Registry(settings.registry_url).get(experiment_key(experiment)).id  # unknown: a one-line error
        res = evaluate_from_config(config, settings, plots_dir=plots, experiment_id=experiment_id)
        assert res.decision is not None
        console.print(f"champion gate: {res.decision.summary()}")
        console.print(f"champion: {res.name}@champion = version {res.version} ({res.model_type}); "
                      f"{res.metric} valid {res.valid_score:.4f}, test {res.test_score:.4f}")


@app.command("history")
def history(name: str = typer.Argument("churn", help="Registered model name."),
            as_json: bool = json_option, as_csv: bool = csv_option) -> None:
    """Every champion-gate decision for a model: when, which version, metric, promoted or refused, why.

    ``--json`` prints ``{"name", "champion", "history": [...]}``; ``--csv`` one row per decision."""
    with user_errors():
        import datetime as dt

        from battleground.model.gate import champion_history

        fmt = output_format(as_json, as_csv)
        entries, current = champion_history(load_settings(), name)
        promoted = [e.version for e in entries if e.action == "promoted"]
        outside = current is not None and (not promoted or promoted[-1] != current)
        if fmt != "table":
            records = [{"at": dt.datetime.fromtimestamp(e.at, dt.UTC).isoformat(), **{
                k: v for k, v in e.to_dict().items() if k != "at"}} for e in entries]
            columns = [Column.of(k, key=k in ("at", "version")) for k in (records[0] if records else ["at"])]
            print_tables([Table("history", f"{name}@champion history", columns, records)], fmt,
                         extra={"name": name, "champion": current, "moved_outside_gate": outside})
            return
        console.print(f"{name}@champion now names v{current}" if current else f"{name}: no champion yet")
        for e in entries:  # one line each: a table truncates the reason in a narrow terminal
            when = dt.datetime.fromtimestamp(e.at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            ab = f"; A/B test {e.experiment}" if e.experiment else ""
            console.print(f"{when} UTC  v{e.version} {e.action} ({e.source}; {e.metric} {e.score:.4f}; champion "
                          f"before: {('v' + e.champion_before) if e.champion_before else 'none'}{ab}): {e.reason}",
                          soft_wrap=True, highlight=False)
        if outside:
            console.print(f"[bold red]warning:[/] @champion names v{current}, which the gate did not promote last "
                          f"(last promoted: {promoted[-1] if promoted else 'none'}): the alias was moved outside "
                          "the gate, and the model server refuses to load it")


@app.command("leaderboard")
def leaderboard_cmd(
    config: Path | None = typer.Option(None, "--config", "-c", help="Use this config's splits, task and metric."),
    models: str | None = typer.Option(None, help="Comma-separated model types (default: every tunable one "
                                                 "of the task)."),
    n_characters: int = typer.Option(4000, help="Synthetic churn characters when no config is given."),
    seed: int = typer.Option(0, help="Seed for the synthetic data and the models."),
    top_k: int = typer.Option(0, help="Also fit a soft-voting ensemble of the top k (k >= 2; classification)."),
    cv: int = typer.Option(0, help="k-fold CV on the training rows (grouped by entity id): mean and sd per model."),
    trials: int = typer.Option(0, "--trials", min=0, help="Tune each model with this many Optuna trials first; "
                                                         "its untuned default stays on the board as a baseline row."),
    metric: str | None = typer.Option(None, help="Rank by this metric, in its own direction (default: the "
                                                 "config's comparison metric, else roc_auc / rmse)."),
    as_json: bool = json_option,
    as_csv: bool = csv_option,
) -> None:
    """Compare model types on validation data, best first (like PyCaret's compare_models); a config
    with ``task: regression`` compares regressors on RMSE, MAE and R²."""
    with user_errors():
        fmt = output_format(as_json, as_csv)
        load_settings()
        from battleground.model.data import CreateDataSet, read_splits
        from battleground.model.tracking import TrainingConfig, _features
        from battleground.model.train import (
            REGRESSORS,
            TUNABLE,
            higher_is_better,
            leaderboard,
            score,
            top_k_voting,
            tune,
        )

        task = "classification"
        if config is not None:
            cfg = TrainingConfig.from_yaml(config)
            task, metric = cfg.task, metric or cfg.metric
            splits = read_splits(cfg.splits_dir)
            X_train, y_train = _features(splits["train"], cfg.label, cfg.non_features)
            X_valid, y_valid = _features(splits["valid"], cfg.label, cfg.non_features)
            ids = [c for c in cfg.id_columns if c in splits["train"].columns]
            groups = splits["train"][ids[0]].to_numpy() if ids else None
        else:
            groups = None
            ds = CreateDataSet(n_characters=n_characters, seed=seed)
            X_train, y_train = ds.load_train_set()
            X_valid, y_valid = ds.load_test_set()
        if top_k and task == "regression":
            fail(f"--top-k {top_k}: the soft-voting ensemble is for classification; drop --top-k for task: regression")
        kinds = [m.strip() for m in models.split(",")] if models else list(
            REGRESSORS if task == "regression" else TUNABLE)
        tuned = {}
        for kind in kinds if trials else []:
            res = tune(kind, X_train, y_train, X_valid, y_valid, n_trials=trials, seed=seed, task=task,
                       metric=metric or ("rmse" if task == "regression" else "roc_auc"))
            tuned[res.model] = dict(res.trainer.params or {})  # the refit's: best trial + its early-stopped rounds
        board = leaderboard(X_train, y_train, X_valid, y_valid, models=kinds, params=tuned, metric=metric,
                            seed=seed, cv=cv, groups=groups, task=task)
        table = board.table
        if top_k:
            voter = top_k_voting(board, X_train, y_train, k=top_k, seed=seed)
            console.print(f"voting(top {top_k}: {', '.join(voter.voting_models)}) roc_auc = "
                          f"{score('roc_auc', y_valid, voter.predict_proba(X_valid)[:, 1]):.4f}")
        from collections.abc import Mapping
        from typing import Any

        records = [{str(k): v for k, v in r.items()} for r in table.to_dict(orient="records")]

        def cell(name: str) -> Any:
            def show(r: Mapping[str, Any]) -> str:
                return f"{r[name]:.4f}" if isinstance(r[name], float) else str(r[name])
            return show

        def spread(r: Mapping[str, Any]) -> str:
            return f"{r[mean]:.4f} ± {r[mean.replace('_mean', '_sd')]:.4f}"

        columns = [Column(str(c), cell(str(c)), key=(c == "model")) for c in table.columns
                   if fmt != "table" or not str(c).startswith("cv_")]
        mean = next((str(c) for c in table.columns if str(c).endswith("_mean")), "")
        if fmt == "table" and mean:  # one "mean ± sd" column; JSON and CSV keep both numbers
            columns.append(Column(mean.removesuffix("_mean") + f" ({cv}-fold)", spread))
        way = "largest" if higher_is_better(board.metric) else "smallest"
        print_tables([Table("leaderboard", f"leaderboard (validation; {board.metric}, {way} first)", columns,
                            records)], fmt)


@app.command("predict")
def predict(
    input: Path = typer.Option(..., "--input", "-i", help="Records to score: .parquet (read in chunks), .csv or "
                                                          ".json (records)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write predictions (.parquet or .csv)."),
    model_name: str = typer.Option("churn", help="Registered model whose 'champion' alias scores the rows."),
    chunk_rows: int = typer.Option(100_000, "--chunk-rows", min=1, help="Rows scored per chunk (bounds memory)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Processes scoring chunks in parallel "
                                       "(default: one per CPU core, at most one per chunk)."),
) -> None:
    """Batch-score a file with the champion: writes the input's id column (if any), churn_probability
    and churn_label (a regression champion: prediction), in the input's row order; nothing is written
    unless every row is scored."""
    with user_errors():
        from battleground.model.batch import batch_predict, check_paths
        from battleground.model.tracking import load_champion

        settings = load_settings()
        check_paths(input, output)  # a wrong path fails before the model loads
        champ = load_champion(settings, model_name)
        res = batch_predict(champ, input, output, chunk_rows=chunk_rows, workers=workers)
        console.print(f"{res.rows} predictions from {res.model} v{res.version} in {res.chunks} chunk(s), "
                      f"{res.workers} worker(s), {res.seconds:.1f} s → {output}")
