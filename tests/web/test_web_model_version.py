"""A page per registered model version: metrics, threshold, tags, artifacts (PNG plots served back,
only those listed), the champion's history; the leaderboard links the champion to it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

HTML = {"accept": "text/html"}
# a 1×1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_version_page_shows_metrics_threshold_and_alias(client: Any, mlflow_runs: dict[str, str]) -> None:
    board = client.get("/leaderboard", headers=HTML).text
    assert 'id="champion-link" href="/models/churn/1"' in board
    html = client.get("/models/churn/1", headers=HTML).text
    assert "churn v1" in html and "@champion" in html and "churn-training" in html
    metrics = html[html.index('id="version-metrics"'):html.index('id="version-tags"')]
    assert ">validation_score<" in metrics and ">0.81<" in metrics and ">0.86<" in metrics  # valid_roc_auc
    assert 'id="threshold">0.5<' in metrics
    assert "model_type" in html and "lightgbm" in html
    assert "No gate decision recorded for churn; @champion is v1" in html


def test_unknown_versions_and_artifacts_are_404(client: Any, mlflow_runs: dict[str, str]) -> None:
    assert client.get("/models/churn/99", headers=HTML).status_code == 404
    assert client.get("/models/nope/1", headers=HTML).status_code == 404
    assert client.get("/models/churn/1/artifacts/../../registry.db").status_code == 404


def test_png_artifacts_are_shown_and_served(client: Any, seeded: Any, mlflow_runs: dict[str, str], tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    settings = seeded.settings
    mlflow = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    plot = tmp_path / "roc.png"
    plot.write_bytes(PNG)
    notes = tmp_path / "notes.txt"
    notes.write_text("<script>alert(1)</script>")
    mlflow.log_artifact(mlflow_runs["lightgbm"], str(plot), "plots")
    mlflow.log_artifact(mlflow_runs["lightgbm"], str(notes))
    html = client.get("/models/churn/1", headers=HTML).text
    assert '<img src="/models/churn/1/artifacts/plots/roc.png" alt="plots/roc.png"' in html
    assert "notes.txt" in html and "<script>alert" not in html
    r = client.get("/models/churn/1/artifacts/plots/roc.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == PNG
    # listed but not an image: not served (only PNG/JPEG come back)
    assert client.get("/models/churn/1/artifacts/notes.txt").status_code == 404


def test_version_page_links_champion_run_and_the_ab_test_that_promoted_it(client: Any, seeded: Any,
                                                                          mlflow_runs: dict[str, str]) -> None:
    """What the gate records (``experiment_id`` → the version's ``battleground.experiment`` tag and its
    history entry) becomes links: champion → MLflow run → /experiments/{id}."""
    import json

    from mlflow.tracking import MlflowClient

    from battleground.model.gate import TAG_EXPERIMENT, TAG_STATUS, HistoryEntry

    settings = seeded.settings
    mlflow = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    exp_id = seeded.ids["checkout-button"]
    run = mlflow_runs["lightgbm"]
    mlflow.create_registered_model("churn-ab")
    for status, ab in (("promoted", exp_id), ("refused", 999)):
        v = mlflow.create_model_version("churn-ab", source=f"runs:/{run}/model", run_id=run).version
        mlflow.set_model_version_tag("churn-ab", v, TAG_STATUS, status)
        mlflow.set_model_version_tag("churn-ab", v, TAG_EXPERIMENT, str(ab))
        entry = HistoryEntry(at=1.7e9 + int(v), version=str(v), action=status, source="model evaluate", metric="roc_auc",
                             score=0.8, champion_before=None, reason="test", experiment=str(ab))
        mlflow.set_registered_model_tag("churn-ab", f"battleground.history.{int(v):013d}.{v}", json.dumps(entry.to_dict()))
    mlflow.set_registered_model_alias("churn-ab", "champion", "1")
    html = client.get("/models/churn-ab/1", headers=HTML).text
    assert f'promoted by the A/B test <a id="promoted-by" href="/experiments/{exp_id}">experiment {exp_id}</a>' in html
    assert f'<a id="run-link" href="/leaderboard#run-{run}">' in html
    history = html[html.index('id="history"'):]
    assert f'<a href="/experiments/{exp_id}">{exp_id}</a>' in history and '<a href="/experiments/999">999</a>' in history
    # the link lands on the experiment's page, and the run link on the run's leaderboard row
    assert client.get(f"/experiments/{exp_id}", headers=HTML).status_code == 200
    assert f'<tr id="run-{run}">' in client.get("/leaderboard", headers=HTML).text
    # a refused version says it was gated on the test, not promoted by it
    refused = client.get("/models/churn-ab/2", headers=HTML).text
    assert "gated on the A/B test" in refused and "promoted by the A/B test" not in refused
