"""Batch predict: chunks in worker processes give exactly the single-shot scores, in input order; bad
input names the path or column and leaves no output file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from battleground.settings import Settings


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, churn_sets):
    """A LightGBM champion with categorical columns, promoted through the gate; and its settings."""
    from tests.model.test_gate import log_model

    from battleground.model.gate import champion_gate, register_candidate
    from battleground.model.tracking import load_champion
    from battleground.model.train import Trainer

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path_factory.mktemp("batch") / ".battleground")})
    X_train, y_train, X_test, y_test = churn_sets
    model = Trainer("lightgbm", params={"n_estimators": 30}).fit(X_train, y_train)
    version = register_candidate(settings, log_model(settings, model, X_test), "churn", source="test")
    champion_gate(settings, "churn", version, X_test, y_test, metric="roc_auc", threshold=0.0, source="test",
                  n_boot=10)
    return settings, load_champion(settings)


@pytest.fixture(scope="module")
def rows(churn_sets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5,000 rows drawn from the test set, with ids, an unseen category and missing values."""
    _, _, X_test, _ = churn_sets
    rng = np.random.default_rng(7)
    frame = X_test.iloc[rng.integers(0, len(X_test), 5000)].reset_index(drop=True)
    frame.loc[::97, "class"] = "Pandaren-monk"  # unseen in training
    frame.loc[::89, "days_since_mastery"] = np.nan
    frame.insert(0, "char_id", rng.permutation(5000) + 10_000)  # not sorted: order must come from the input
    path = tmp_path_factory.mktemp("batch_rows") / "rows.parquet"
    frame.to_parquet(path, index=False, row_group_size=1100)  # row groups that do not align with chunks
    return path


def test_chunked_parallel_equals_single_shot_in_order(champion, rows: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from battleground.model.batch import batch_predict

    _, champ = champion
    frame = pd.read_parquet(rows)
    single = np.asarray(champ.model.predict(frame.drop(columns=["char_id"])), dtype=float)  # MLflow pyfunc, one shot
    out = tmp_path / "scores.parquet"
    res = batch_predict(champ, rows, out, chunk_rows=700, workers=2)
    assert (res.rows, res.chunks, res.workers, res.version) == (5000, 8, 2, "1")
    got = pq.read_table(out).to_pandas()
    assert list(got.columns) == ["char_id", "churn_probability", "churn_label"]
    assert got["char_id"].tolist() == frame["char_id"].tolist()  # row order preserved
    np.testing.assert_array_equal(got["churn_probability"].to_numpy(), single)  # exactly, not approximately
    assert got["churn_label"].tolist() == (single >= champ.threshold).astype(int).tolist()
    # one process and a CSV output give the same numbers
    csv = tmp_path / "scores.csv"
    res1 = batch_predict(champ, rows, csv, chunk_rows=1234, workers=1)
    assert (res1.rows, res1.chunks) == (5000, 5)
    np.testing.assert_array_equal(pd.read_csv(csv)["churn_probability"].to_numpy(), single)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_bad_input_names_the_column_or_path_and_writes_nothing(champion, rows: Path, tmp_path: Path) -> None:
    from battleground.model.batch import batch_predict
    from battleground.model.data import ModelInputError

    _, champ = champion
    broken = tmp_path / "broken.parquet"
    pd.read_parquet(rows).drop(columns=["sub_type"]).rename(columns={"race": "rac"}).to_parquet(broken)
    out = tmp_path / "out" / "scores.parquet"
    with pytest.raises(ModelInputError, match=r"lacks the model's feature column\(s\) \['race', 'sub_type'\]"
                                              r".*did you mean 'rac'"):
        batch_predict(champ, broken, out, chunk_rows=700, workers=2)
    with pytest.raises(ModelInputError, match=r"input='.*nosuch\.parquet' does not exist"):
        batch_predict(champ, tmp_path / "nosuch.parquet", out)
    with pytest.raises(ModelInputError, match=r"output='.*scores\.txt' has suffix '\.txt'"):
        batch_predict(champ, rows, tmp_path / "scores.txt")
    with pytest.raises(ModelInputError, match="chunk_rows must be an integer >= 1, got 0"):
        batch_predict(champ, rows, out, chunk_rows=0)
    with pytest.raises(ModelInputError, match="workers must be an integer >= 1, got 0"):
        batch_predict(champ, rows, out, workers=0)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_a_failing_chunk_leaves_no_output(champion, rows: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk that fails after earlier chunks were written stops the run; no partial file stays."""
    import battleground.model.batch as batch

    _, champ = champion
    frame = pd.read_parquet(rows)
    frame.loc[4321, "account_age_days"] = -1  # a sentinel in the 7th chunk of 700
    bad = tmp_path / "bad_values.parquet"
    frame.to_parquet(bad, index=False)
    real = batch._score_batch

    def fragile(model, chunk, features):
        if -1 in chunk.column("account_age_days").to_pylist():
            raise RuntimeError("chunk failed")
        return real(model, chunk, features)

    monkeypatch.setattr(batch, "_score_batch", fragile)  # the workers are forked: they see it too
    out = tmp_path / "scores.parquet"
    for workers in (1, 2):
        with pytest.raises(RuntimeError, match="chunk failed"):
            batch.batch_predict(champ, bad, out, chunk_rows=700, workers=workers)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_values.parquet"]


def test_cli_model_predict_chunks_and_errors(champion, rows: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from battleground.cli import app

    settings, _ = champion
    monkeypatch.setenv("BATTLEGROUND_HOME", str(settings.home))
    out = tmp_path / "scores.parquet"
    res = CliRunner().invoke(app, ["model", "predict", "-i", str(rows), "-o", str(out), "--chunk-rows", "700",
                                   "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "5000 predictions from churn v1 in 8 chunk(s), 2 worker(s)" in res.output
    assert len(pd.read_parquet(out)) == 5000
    missing = tmp_path / "missing.parquet"
    res = CliRunner().invoke(app, ["model", "predict", "-i", str(missing), "-o", str(tmp_path / "x.parquet")])
    assert res.exit_code == 1 and "does not exist" in res.output and "missing.parquet" in res.output
    assert not (tmp_path / "x.parquet").exists()
