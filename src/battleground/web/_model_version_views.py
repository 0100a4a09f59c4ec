"""The page of one registered model version: its run's metrics, threshold, tags, artifacts (PNG plots
served back, other files listed) and the champion's gate history, read from MLflow (never written)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from battleground.errors import WebError
from battleground.model.gate import TAG_EXPERIMENT, TAG_STATUS

if TYPE_CHECKING:
    from battleground.settings import Settings

__all__ = ["IMAGE_TYPES", "ModelVersionView", "artifact_bytes", "model_version"]

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
MAX_ARTIFACTS = 200
_HIDDEN_TAGS = ("signature", "secret", "token", "password")


class ModelVersionNotFoundError(WebError, LookupError):
    """No such registered model version (or artifact)."""


@dataclass(frozen=True)
class Artifact:
    path: str
    size: int | None
    image: bool


@dataclass(frozen=True)
class ModelVersionView:
    name: str
    version: str
    aliases: list[str]
    run_id: str | None
    run_name: str | None
    experiment: str | None
    created: dt.datetime | None
    threshold: float
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    artifacts: list[Artifact]
    history: list[dict[str, Any]] = field(default_factory=list)
    champion: str | None = None
    ab_test: str | None = None  # the A/B test (registry id) the gate acted on, from the version's tag
    promoted: bool = False  # the gate promoted this version (its status tag)

    @property
    def promoted_by(self) -> str | None:
        """The A/B test that promoted this version (``None`` when it was refused or none is recorded)."""
        return self.ab_test if self.promoted else None

    @property
    def images(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.image]


def _client(settings: Settings) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)


def _version(client: Any, name: str, version: str) -> Any:
    try:
        return client.get_model_version(name, version)
    except Exception as exc:  # MlflowException: RESOURCE_DOES_NOT_EXIST or a bad version string
        raise ModelVersionNotFoundError(f"no registered model version {name!r} v{version}; the Models page lists them") from exc


def _artifacts(client: Any, run_id: str) -> list[Artifact]:
    out: list[Artifact] = []
    todo = [""]
    while todo and len(out) < MAX_ARTIFACTS:
        folder = todo.pop(0)
        try:
            items = client.list_artifacts(run_id, folder or None)
        except Exception:  # an unreachable artifact store: list nothing rather than fail the page
            return out
        for f in items:
            if f.is_dir:
                if folder.count("/") < 3:
                    todo.append(f.path)
                continue
            suffix = "." + f.path.rsplit(".", 1)[-1].lower() if "." in f.path else ""
            out.append(Artifact(f.path, f.file_size, suffix in IMAGE_TYPES))
    return out


def model_version(settings: Settings, name: str, version: str) -> ModelVersionView:
    """Everything the version page shows. Raises :class:`ModelVersionNotFoundError` when unknown."""
    client = _client(settings)
    mv = _version(client, name, version)
    run = None
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
        except Exception:  # the run was deleted: the version still shows
            run = None
    experiment = None
    if run is not None:
        try:
            experiment = client.get_experiment(run.info.experiment_id).name
        except Exception:
            experiment = run.info.experiment_id
    tags = {**(run.data.tags if run is not None else {}), **dict(mv.tags or {})}
    shown = {k: v for k, v in sorted(tags.items())
             if not k.startswith("mlflow.") and not any(h in k.lower() for h in _HIDDEN_TAGS)}
    history: list[dict[str, Any]] = []
    champion = None
    try:
        from battleground.model.gate import champion_history

        entries, champion = champion_history(settings, name)
        history = [{**e.to_dict(), "when": dt.datetime.fromtimestamp(e.at, dt.UTC)} for e in reversed(entries)]
    except Exception:  # no history recorded (a model registered outside the gate)
        history = []
    try:
        threshold = float(tags.get("decision_threshold", 0.5))
    except ValueError:
        threshold = math.nan
    created = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC) if mv.creation_timestamp else None
    return ModelVersionView(
        name=name, version=str(mv.version), aliases=list(getattr(mv, "aliases", []) or []), run_id=mv.run_id,
        run_name=run.info.run_name if run is not None else None, experiment=experiment, created=created,
        threshold=threshold,
        metrics={k: float(v) for k, v in sorted(run.data.metrics.items())} if run is not None else {},
        params=dict(sorted(run.data.params.items())) if run is not None else {}, tags=shown,
        artifacts=_artifacts(client, mv.run_id) if mv.run_id else [], history=history, champion=champion,
        ab_test=tags.get(TAG_EXPERIMENT) or None, promoted=tags.get(TAG_STATUS) == "promoted",
    )


def artifact_bytes(settings: Settings, name: str, version: str, path: str) -> tuple[bytes, str]:
    """(content, media type) of an image artifact of the version's run, only if the page lists it
    (no path of one's own making is ever opened)."""
    import tempfile
    from pathlib import Path

    client = _client(settings)
    mv = _version(client, name, version)
    listed = {a.path: a for a in _artifacts(client, mv.run_id)} if mv.run_id else {}
    art = listed.get(path)
    if art is None or not art.image:
        raise ModelVersionNotFoundError(f"no image artifact {path!r} in {name} v{version}; the version page lists them")
    with tempfile.TemporaryDirectory(prefix="bg-artifact-") as tmp:
        local = Path(client.download_artifacts(mv.run_id, art.path, tmp))
        data = local.read_bytes()
    return data, IMAGE_TYPES["." + art.path.rsplit(".", 1)[-1].lower()]
