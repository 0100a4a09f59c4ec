"""Pipeline batch predict scores with ``@champion``, not with the newest candidate; raw tables are files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from battleground.pipelines.registry import run_pipeline
from battleground.settings import Settings

SMALL = {"n_characters": 600}
DUMMY = {"class": "sklearn.dummy.DummyClassifier", "params": {"strategy": "prior"}}


def test_batch_predict_uses_the_champion_not_a_worse_newer_candidate(settings: Settings) -> None:
    from battleground.model.gate import champion_history

    run_pipeline("sub_churn_train_from_raw", settings, params=SMALL)
    entries, champion = champion_history(settings, "churn")
    assert champion == "1" and entries[-1].action == "promoted"
    # a worse model trained later: registered as v2, refused by the gate, and the newest artefact on disk
    run_pipeline("sub_churn_train", settings, params={**SMALL, "model": DUMMY})
    entries, champion = champion_history(settings, "churn")
    assert champion == "1" and entries[-1].version == "2" and entries[-1].action == "refused"
    result = run_pipeline("sub_churn_batch_predict", settings, params=SMALL)
    predictions = pd.read_csv(result.outputs["predictions"])
    assert set(predictions["model_version"].astype(str)) == {"1"}
    assert predictions["churn_probability"].nunique() > 10  # the dummy would give one constant value


def test_batch_predict_without_a_champion_is_clear(settings: Settings) -> None:
    run_pipeline("sub_churn_raw", settings, params=SMALL)
    with pytest.raises(FileNotFoundError, match=r"churn@champion.*sub_churn_train_from_raw"):
        run_pipeline("sub_churn_batch_predict", settings, params=SMALL)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_pipelines_read_raw_tables_from_a_configured_folder(settings: Settings, tmp_path: Path, fmt: str) -> None:
    import shutil

    from battleground.datasets import make_churn_tables, write_churn_tables

    own = tmp_path / "my_tables"
    write_churn_tables(make_churn_tables(500, seed=9), own, fmt=fmt)  # type: ignore[arg-type]
    conf = tmp_path / "conf"
    shutil.copytree(Path(__file__).parents[2] / "src/battleground/pipelines/conf", conf)
    catalog = conf / "base" / "catalog.yml"
    text = catalog.read_text()
    start = text.index("raw_tables:")
    end = text.index("features_train:")
    catalog.write_text(text[:start] + f"raw_tables:\n  type: battleground.pipelines.datasets.ChurnTablesDataset\n"
                       f"  filepath: {own}\n  file_format: {fmt}\n" + text[end:])
    result = run_pipeline("sub_churn_standard_features", settings, conf_source=conf)
    train = pd.read_parquet(result.outputs["features_train"])
    assert train["char_id"].max() <= 500 and len(train) > 100
    assert not (settings.home / "pipelines" / "base" / "01_raw").exists()  # nothing regenerated


def test_raw_pipeline_writes_the_four_tables_as_files(settings: Settings) -> None:
    from battleground.datasets import read_churn_tables

    result = run_pipeline("sub_churn_raw", settings, params=SMALL)
    folder = Path(result.outputs["raw_tables"])
    assert sorted(p.name for p in folder.iterdir()) == ["characters.parquet", "currency.parquet",
                                                        "sub_miss.parquet", "subscriptions.parquet"]
    assert len(read_churn_tables(folder, fmt="parquet")["characters"]) == 600
    with pytest.raises(FileNotFoundError, match=r"characters\.csv not found"):
        read_churn_tables(folder, fmt="csv")
