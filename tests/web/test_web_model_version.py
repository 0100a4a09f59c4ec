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
