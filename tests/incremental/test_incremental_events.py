"""``battleground incremental run --from-events``: learning from the events the store already holds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from battleground.cli import app
from battleground.incremental import SequentialBayesianLogisticRegression, load_model

START = dt.datetime(2026, 3, 1)


def _seed(home: Path) -> pd.DataFrame:
    """An experiment whose treatment converts more; returns the exposures with the label each must get."""
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.register import Registry
    from battleground.settings import Settings

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home)})
    registry = Registry(settings.registry_url)
    rec = registry.create_experiment(
        "stream-truth", variants={"control": 0.5, "treatment": 0.5},
        metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True}],
        start_at=START)
    registry.start(rec.id)
    rng = np.random.default_rng(16)
    rows, truth = [], []
    for u in range(400):
        variant = "treatment" if u % 2 else "control"
        at = START + dt.timedelta(minutes=10 * u)
        rows.append({"event_id": f"x-{u}", "experiment": "stream-truth", "variant": variant, "user_id": f"u{u}",
                     "event_type": "exposure", "timestamp": at})
        label = 0.0
        r = rng.random()
        if r < (0.35 if variant == "treatment" else 0.15):  # converts within the 1-hour window
            rows.append({"event_id": f"p-{u}", "experiment": "stream-truth", "variant": variant,
                         "user_id": f"u{u}", "event_type": "purchase", "timestamp": at + dt.timedelta(minutes=30)})
            label = 1.0
        elif r < 0.5:  # converts too late: label 0
            rows.append({"event_id": f"p-{u}", "experiment": "stream-truth", "variant": variant,
                         "user_id": f"u{u}", "event_type": "purchase", "timestamp": at + dt.timedelta(hours=3)})
        truth.append({"at": at, "label": label, "variant|control": float(variant == "control"),
                      "variant|treatment": float(variant == "treatment")})
    ingest(open_event_store(settings), rows)
    frame = pd.DataFrame(truth)
    horizon = max(r["timestamp"] for r in rows)
    return frame[frame["at"] + dt.timedelta(hours=1) <= horizon].drop(columns="at").reset_index(drop=True)


def test_run_from_events_learns_labels_within_the_window(tmp_path: Path) -> None:
    home = tmp_path / "home"
    expected = _seed(home)
    runner = CliRunner()
    ck = tmp_path / "ck"
    args = ["incremental", "run", "--from-events", "stream-truth", "--label-event", "purchase", "--window-hours",
            "1", "--mode", "single", "--checkpoint-dir", str(ck), "--batch-size", "100"]
    env = {"BATTLEGROUND_HOME": str(home)}
    r = runner.invoke(app, [*args, "--max-batches", "2"], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, args, env=env)  # resumes after the watermark
    assert r.exit_code == 0, r.output
    model = load_model(ck)
    ref = SequentialBayesianLogisticRegression()
    for start in range(0, len(expected), 100):
        ref.partial_fit(expected.iloc[start : start + 100].assign(weight=1.0, offset=0.0)[
            ["label", "weight", "offset", "variant|control", "variant|treatment"]])
    assert model.feature_names_in_ == ["variant|control", "variant|treatment"]
    np.testing.assert_array_equal(model.coef_, ref.coef_)
    assert model.coef_[2] > model.coef_[1]  # the treatment converts more
    r = runner.invoke(app, ["incremental", "run", "--from-events", "stream-truth", "--checkpoint-dir",
                            str(tmp_path / "x")], env=env)
    assert r.exit_code == 1 and "--label-event" in r.output
