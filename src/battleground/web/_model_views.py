"""The model views: the leaderboard of MLflow runs with the champion marked."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground.web._view_common import jsonable

if TYPE_CHECKING:
    from battleground.settings import Settings

__all__ = ["CHAMPION_ALIAS", "CHAMPION_MODEL", "Leaderboard", "LeaderboardRow", "leaderboard", "leaderboard_chart"]

CHAMPION_MODEL = "churn"
CHAMPION_ALIAS = "champion"


@dataclass(frozen=True)
class LeaderboardRow:
    run_id: str
    run_name: str
    experiment: str
    model_type: str
    batch: str | None
    started: dt.datetime | None
    metrics: dict[str, float]
    score: float
    champion: bool

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "run_id": self.run_id, "run_name": self.run_name, "experiment": self.experiment,
            "model_type": self.model_type, "batch": self.batch, "started": self.started,
            "metrics": self.metrics, "score": self.score, "champion": self.champion,
        })


@dataclass(frozen=True)
class Leaderboard:
    rows: list[LeaderboardRow]
    metric_names: list[str]
    champion: dict[str, Any] | None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [r.to_dict() for r in self.rows], "metrics": list(self.metric_names),
            "champion": jsonable(self.champion), "message": self.message,
        }


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    return None


_LEAD_METRICS = ("validation_score", "valid_roc_auc", "valid_pr_auc", "valid_f1", "valid_accuracy")


def leaderboard(settings: Settings, *, model_name: str = CHAMPION_MODEL) -> Leaderboard:
    """Model runs of every MLflow experiment, best validation score first, the champion marked."""
    path = _sqlite_path(settings.mlflow_uri)
    if path is not None and not path.exists():
        return Leaderboard([], [], None, message=(
            "no MLflow store yet: train models with `battleground model train` (or `make demo`) and reload"
        ))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    runs: list[Any] = []
    if experiments:
        token = None
        while True:
            page = client.search_runs(list(experiments), max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                break
    champion: dict[str, Any] | None = None
    try:
        mv = client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
        champion = {"name": model_name, "alias": CHAMPION_ALIAS, "version": str(mv.version), "run_id": mv.run_id}
    except Exception:  # MlflowException when there is no such model or alias: no champion yet
        champion = None
    rows = []
    for run in runs:
        tags = run.data.tags
        if tags.get("battleground.kind") == "trial" or tags.get("mlflow.parentRunId"):
            continue
        metrics = {k: float(v) for k, v in run.data.metrics.items()}
        score = metrics.get("validation_score", math.nan)
        started = dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC) if run.info.start_time else None
        rows.append(LeaderboardRow(
            run_id=run.info.run_id, run_name=run.info.run_name or run.info.run_id[:8],
            experiment=experiments.get(run.info.experiment_id, run.info.experiment_id),
            model_type=tags.get("model_type") or run.data.params.get("model_type") or "—",
            batch=tags.get("battleground.batch"), started=started, metrics=metrics, score=score,
            champion=champion is not None and champion["run_id"] == run.info.run_id,
        ))
    rows.sort(key=lambda r: (not math.isfinite(r.score), -r.score if math.isfinite(r.score) else 0.0))
    present = {k for r in rows for k in r.metrics}
    names = [m for m in _LEAD_METRICS if m in present]
    names += sorted(k for k in present if k.startswith("valid_") and k not in names)
    names += [m for m in ("fit_seconds",) if m in present]
    message = None if rows else "the MLflow store has no model runs yet"
    return Leaderboard(rows, names, champion, message)


def leaderboard_chart(board: Leaderboard) -> str:
    """A bar chart of the validation score per run (champion highlighted), as an HTML div."""
    import plotly.graph_objects as go

    rows = [r for r in board.rows if math.isfinite(r.score)][:30]
    if not rows:
        return ""
    fig = go.Figure(go.Bar(
        x=[f"{r.model_type} · {r.run_name}" for r in rows], y=[r.score for r in rows],
        marker_color=["#1e8e3e" if r.champion else "#1a73e8" for r in rows],
        hovertext=[r.run_id for r in rows],
    ))
    fig.update_layout(
        title="validation score by run (green: champion)", height=320, template="plotly_white",
        margin={"l": 40, "r": 20, "t": 50, "b": 60},
    )
    from battleground._html import chart

    return chart(fig)

