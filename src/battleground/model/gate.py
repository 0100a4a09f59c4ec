"""The one champion gate: the only code that moves ``<name>@champion``.

Every path that trains (``battleground model evaluate``, the Kedro pipelines, ``kedro run``,
``TrainingOrchestrator.optimize_model``, the demo) registers its model as a *candidate* version and
calls :func:`champion_gate`. The gate scores the candidate and the current champion on the same
held-out rows and promotes the candidate only when

1. its score on the comparison metric clears ``threshold`` (``deployment_score_thresh``): at least the
   threshold for a higher-is-better metric (ROC AUC, F-beta, R²), at most it for a lower-is-better one
   (rmse, mae, log_loss, brier: the threshold is then a maximum), and
2. it beats the current champion by more than ``margin`` on those rows in the metric's own direction
   (a tie keeps the incumbent).

The paired bootstrap CI of the difference is computed and recorded with every decision. A refused
candidate stays registered, tagged with the reason. A promotion records the sha256 digest of the
version's files with an HMAC signature (key: ``<home>/gate.key``); the model server loads only a
version whose files still match a signed record (:func:`verified_model_dir`). Every decision is
appended to the registered model's history (``battleground model history NAME``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from battleground.errors import ModelError

if TYPE_CHECKING:
    from battleground.settings import Settings

__all__ = [
    "CHAMPION",
    "GateDecision",
    "HistoryEntry",
    "UntrustedModelError",
    "artifact_digest",
    "champion_gate",
    "champion_history",
    "paired_bootstrap",
    "register_candidate",
    "verified_model_dir",
]

log = logging.getLogger("battleground.model.gate")
CHAMPION = "champion"
TAG_STATUS = "battleground.gate.status"  # candidate | promoted | refused
TAG_REASON = "battleground.gate.reason"
TAG_DIGEST = "battleground.gate.digest"
TAG_SIGNATURE = "battleground.gate.signature"
TAG_SOURCE = "battleground.gate.source"
TAG_EXPERIMENT = "battleground.experiment"  # the A/B test whose decision the gate acted on (its id)
_HISTORY_PREFIX = "battleground.history."


class UntrustedModelError(ModelError, PermissionError):
    """A model version has no signed gate record matching its files; it is not loaded."""


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided for one candidate version, and on what evidence."""

    name: str
    version: str
    source: str
    metric: str
    candidate_score: float
    threshold: float
    margin: float
    champion_version: str | None
    champion_score: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    n_holdout: int
    promoted: bool
    reason: str
    digest: str | None
    at: float
    experiment: str | None = None  # the A/B test (registry id) that drove the decision, when one did
    higher_is_better: bool = True  # False for rmse, mae, log_loss, brier: threshold a maximum, Δ < -margin wins

    @property
    def below_threshold(self) -> bool:
        """Whether the candidate failed ``deployment_score_thresh`` (in the metric's direction)."""
        if self.higher_is_better:
            return self.candidate_score < self.threshold
        return self.candidate_score > self.threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for a console or a log."""
        verb = "promoted" if self.promoted else "refused"
        vs = ""
        if self.champion_version is not None and self.delta is not None:
            vs = (f"; vs champion v{self.champion_version} {self.champion_score:.4f}: Δ {self.delta:+.4f} "
                  f"(95% paired bootstrap CI {self.ci_low:+.4f} … {self.ci_high:+.4f})")
        ab = f" (A/B test {self.experiment})" if self.experiment else ""
        way = "" if self.higher_is_better else " (lower is better)"
        return (f"{self.name} v{self.version} {verb}{ab}: {self.metric}{way} {self.candidate_score:.4f} on "
                f"{self.n_holdout} held-out rows{vs}. {self.reason}")


@dataclass(frozen=True)
class HistoryEntry:
    """One gate decision as stored in the registered model's tags."""

    at: float
    version: str
    action: str  # promoted | refused
    source: str
    metric: str
    score: float
    champion_before: str | None
    reason: str
    experiment: str | None = None  # the A/B test that drove the decision (absent in older entries)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- digests and signatures ------------------------------------------------------------------------


def _digest_dir(folder: Path) -> str:
    """sha256 over every file of ``folder``: relative path and bytes, in sorted path order."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix().encode()
        h.update(len(rel).to_bytes(8, "big") + rel)
        data = path.read_bytes()
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def _download(mlflow: Any, name: str, version: str, dst: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dst))
    return Path(local)


def artifact_digest(mlflow: Any, name: str, version: str) -> str:
    """sha256 of the files of model version ``name``/``version`` (downloaded to a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="bg-digest-") as tmp:
        return _digest_dir(_download(mlflow, name, str(version), Path(tmp)))


def _key(settings: Settings) -> bytes:
    """The gate's signing key, ``<home>/gate.key`` (made on first use, owner-readable only)."""
    path = settings.ensure_home() / "gate.key"
    if not path.exists():
        try:
            with path.open("x", encoding="utf-8") as fh:  # "x": two first users cannot both write one
                fh.write(secrets.token_hex(32))
            path.chmod(0o600)
        except FileExistsError:
            pass
    return path.read_text(encoding="utf-8").strip().encode()


def _signature(settings: Settings, name: str, version: str, digest: str) -> str:
    return hmac.new(_key(settings), f"{name}\n{version}\n{digest}".encode(), hashlib.sha256).hexdigest()


def verified_model_dir(settings: Settings, name: str, version: str, tags: Mapping[str, str], dst: Path) -> Path:
    """Download version ``name``/``version`` into ``dst`` and return its folder if its files match the
    gate's signed record; else raise :class:`UntrustedModelError` (nothing is unpickled).

    The caller loads the model from the returned folder, the same bytes that were hashed.
    """
    from battleground.model.tracking import _mlflow

    digest, signature = tags.get(TAG_DIGEST), tags.get(TAG_SIGNATURE)
    if not digest or not signature:
        raise UntrustedModelError(
            f"model {name!r} version {version} has no champion-gate record (tag {TAG_DIGEST!r}): it was not "
            "promoted by the gate; promote it with `battleground model evaluate` or the pipelines")
    if not hmac.compare_digest(signature, _signature(settings, name, str(version), digest)):
        raise UntrustedModelError(
            f"model {name!r} version {version}: the gate record's signature does not match this home's gate key "
            "(written by someone else, or a different BATTLEGROUND_HOME); promote it again through the gate")
    local = _download(_mlflow(settings), name, str(version), dst)
    actual = _digest_dir(local)
    if not hmac.compare_digest(actual, digest):
        raise UntrustedModelError(
            f"model {name!r} version {version}: its files changed since the gate promoted them "
            f"(sha256 {actual[:12]}… != recorded {digest[:12]}…); promote it again through the gate")
    return local


# -- statistics ------------------------------------------------------------------------------------


def paired_bootstrap(y: Any, p_new: Any, p_old: Any, metric: str, *, beta: float = 0.5, n_boot: int = 300,
                     seed: int = 0, level: float = 0.95,
                     thresholds: tuple[float, float] = (0.5, 0.5)) -> tuple[float, float, float]:
    """(Δ, low, high): ``metric(new) - metric(old)`` on all rows, and its paired bootstrap percentile CI.

    Both models are scored on the same resampled rows; for a classification metric a resample with one
    class only is skipped. ``thresholds`` (new, old) are each model's own label threshold, used by F-beta.
    For rmse, mae and r2 ``y`` holds the targets and ``p_new``/``p_old`` the predicted values. Δ is the raw
    difference: for a lower-is-better metric a better candidate has Δ < 0.
    """
    from scipy.stats import rankdata

    from battleground.model.train import metric_task, score

    regression = metric_task(metric) == "regression"

    def one(yy: np.ndarray, p: np.ndarray, thr: float) -> float:
        if metric not in ("roc_auc", "validation_score"):
            return score(metric, yy, p, beta=beta, threshold=thr)
        # Mann-Whitney U from mid-ranks: scikit-learn's ROC AUC without its per-call checks
        pos = yy == 1
        n_pos = int(pos.sum())
        return float((rankdata(p)[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (yy.size - n_pos)))

    yy = np.asarray(y, dtype=float) if regression else np.asarray(y).astype(int)
    a, b = np.asarray(p_new, dtype=float), np.asarray(p_old, dtype=float)
    t_new, t_old = thresholds
    delta = score(metric, yy, a, beta=beta, threshold=t_new) - score(metric, yy, b, beta=beta, threshold=t_old)
    rng = np.random.default_rng(seed)
    draws: list[float] = []
    for _ in range(int(n_boot)):
        idx = rng.integers(0, yy.size, yy.size)
        if not regression and yy[idx].min() == yy[idx].max():
            continue
        draws.append(one(yy[idx], a[idx], t_new) - one(yy[idx], b[idx], t_old))
    if not draws:
        return float(delta), float("nan"), float("nan")
    tail = (1 - level) / 2
    lo, hi = np.quantile(draws, [tail, 1 - tail])
    return float(delta), float(lo), float(hi)


def _threshold(client: Any, mv: Any) -> float:
    """The label threshold stored with a version's run (``decision_threshold``), 0.5 when none."""
    try:
        return float(client.get_run(mv.run_id).data.tags.get("decision_threshold", 0.5))
    except Exception:  # a version without a run (registered from a path): the plain default
        return 0.5


# -- registry --------------------------------------------------------------------------------------


def register_candidate(settings: Settings, model_uri: str, name: str, *, source: str,
                       tags: Mapping[str, str] | None = None) -> str:
    """Register ``model_uri`` as a new version of ``name`` tagged as a gate candidate; returns the version."""
    from battleground.model.tracking import _mlflow

    mlflow = _mlflow(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mv = mlflow.register_model(model_uri, name)
    client = mlflow.MlflowClient()
    for key, value in {TAG_STATUS: "candidate", TAG_SOURCE: source, **dict(tags or {})}.items():
        client.set_model_version_tag(name, mv.version, key, str(value))
    return str(mv.version)


def _predict(model: Any, X: Any) -> np.ndarray:
    return np.asarray(model.predict(X), dtype=float).ravel()


def _current_champion(settings: Settings, client: Any, name: str, X: Any, tmp: Path) -> tuple[Any, Any]:
    """(model version, P(class 1) on ``X``) of the current trusted champion, or (None, None)."""
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # MlflowException: no such model or no alias yet
        return None, None
    import mlflow.pyfunc

    try:
        local = verified_model_dir(settings, name, str(mv.version), mv.tags, tmp / "champion")
    except UntrustedModelError as exc:
        # an alias moved behind the gate's back does not count as an incumbent to beat
        log.warning("current %s@champion v%s is not trusted, comparing with nothing: %s", name, mv.version, exc)
        return mv, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
    try:
        return mv, _predict(model, X)
    except Exception as exc:  # the held-out rows do not fit the champion's schema: no fair comparison
        raise ModelError(f"the current {name}@champion v{mv.version} cannot score the held-out rows ({exc}); "
                         "the gate cannot compare the candidate with it: register the candidate under another "
                         "registered_model_name") from exc


def champion_gate(settings: Settings, name: str, version: str, X_holdout: Any, y_holdout: Any, *,
                  metric: str, threshold: float, margin: float = 0.0, beta: float = 0.5, source: str,
                  n_boot: int = 300, seed: int = 0, override: str | None = None,
                  experiment_id: int | str | None = None) -> GateDecision:
    """Score candidate ``name``/``version`` and the current champion on ``(X_holdout, y_holdout)`` and
    move ``@champion`` to the candidate only if it clears ``threshold`` and beats the champion by more
    than ``margin``. The decision is tagged on the version and appended to the history either way.

    The metric's direction decides both rules: for rmse, mae, log_loss and brier (lower is better)
    ``threshold`` is a maximum and the candidate must lower the champion's value by more than ``margin``;
    for rmse, mae and r2 ``y_holdout`` holds the targets and the models predict values.

    ``override`` (a reason, e.g. ``"rollback: v5 mis-scores new players"``) promotes a version the
    rules would refuse, such as a rollback; it is scored, recorded and signed like any promotion.

    ``experiment_id`` (the registry id of the A/B test whose decision led here) is recorded with the
    decision, in the history and as the version's ``battleground.experiment`` tag, so that the model
    version page links the champion to the experiment that promoted it.
    """
    import mlflow.pyfunc

    from battleground.model.tracking import _mlflow
    from battleground.model.train import higher_is_better, metric_task, score

    experiment = _experiment_ref(experiment_id)
    if not np.isfinite(threshold) or not np.isfinite(margin) or margin < 0:
        raise ModelError(f"threshold={threshold!r} must be finite and margin={margin!r} finite and >= 0")
    higher = higher_is_better(metric)
    if metric_task(metric) == "regression":
        y = np.asarray(y_holdout, dtype=float)
        if y.size == 0 or not np.isfinite(y).all():
            raise ModelError(f"the held-out targets must be non-empty and finite to score a candidate on {metric}, "
                             f"got {y.size} rows ({int((~np.isfinite(y)).sum())} not finite); drop missing targets")
    else:
        y = np.asarray(y_holdout).astype(int)
    if metric_task(metric) == "classification" and (y.size == 0 or y.min() == y.max()):
        raise ModelError(f"the held-out rows need both classes to score a candidate, got {np.unique(y).tolist()}; "
                         "give the split a larger test share")
    ml = _mlflow(settings)
    client = ml.MlflowClient()
    version = str(version)
    with tempfile.TemporaryDirectory(prefix="bg-gate-") as tmp:
        local = _download(ml, name, version, Path(tmp) / "candidate")
        digest = _digest_dir(local)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            candidate = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
        p_new = _predict(candidate, X_holdout)
        t_new = _threshold(client, client.get_model_version(name, version))
        cand_score = float(score(metric, y, p_new, beta=beta, threshold=t_new))
        champ_mv, p_old = _current_champion(settings, client, name, X_holdout, Path(tmp))
    champ_version = None if champ_mv is None else str(champ_mv.version)
    champ_score = delta = lo = hi = None
    if p_old is not None:
        t_old = _threshold(client, champ_mv)
        champ_score = float(score(metric, y, p_old, beta=beta, threshold=t_old))
        delta, lo, hi = paired_bootstrap(y, p_new, p_old, metric, beta=beta, n_boot=n_boot, seed=seed,
                                         thresholds=(t_new, t_old))
    if override is not None and champ_version != version:
        if not str(override).strip():
            raise ModelError("override='' must say why the rules are set aside, e.g. 'rollback: v5 broke'")
        promoted, reason = True, f"override: {override}"
    elif champ_version == version:
        promoted, reason = False, f"v{version} already holds @champion"
    elif cand_score < threshold if higher else cand_score > threshold:
        promoted, reason = False, (
            f"{metric} {cand_score:.4f} is below deployment_score_thresh {threshold:.4f}" if higher else
            f"{metric} {cand_score:.4f} is above deployment_score_thresh {threshold:.4f} (the most {metric} "
            "allowed: lower is better)")
    elif delta is not None and not (delta if higher else -delta) > margin:
        promoted, reason = False, (f"{metric} {cand_score:.4f} does not beat champion v{champ_version} "
                                   f"({champ_score:.4f}) by more than champion_margin {margin:.4f}"
                                   + ("" if higher else " (lower is better)"))
    else:
        promoted = True
        beat = "" if delta is None else (f" and beats champion v{champ_version} by {delta:+.4f} > {margin:.4f}"
                                         if higher else f" and beats champion v{champ_version}: {metric} lower by "
                                         f"{-delta:.4f} > {margin:.4f}")
        reason = (f"clears deployment_score_thresh {threshold:.4f}" + beat
                  + ("" if champ_version is None or delta is not None else
                     f"; the previous champion v{champ_version} was not trusted or not comparable"))
    decision = GateDecision(
        name=name, version=version, source=source, metric=metric, candidate_score=cand_score, threshold=threshold,
        margin=margin, champion_version=champ_version, champion_score=champ_score, delta=delta, ci_low=lo,
        ci_high=hi, n_holdout=int(y.size), promoted=promoted, reason=reason, digest=digest if promoted else None,
        at=time.time(), experiment=experiment, higher_is_better=higher)
    tags = {TAG_STATUS: "promoted" if promoted else "refused", TAG_REASON: reason[:4900],
            "battleground.gate.decision": json.dumps(decision.to_dict())[:4900]}
    if experiment is not None:
        tags[TAG_EXPERIMENT] = experiment
    if promoted:
        tags |= {TAG_DIGEST: digest, TAG_SIGNATURE: _signature(settings, name, version, digest)}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if promoted:  # the alias moves last: a version is never champion without its record
        client.set_registered_model_alias(name, CHAMPION, version)
    entry = HistoryEntry(at=decision.at, version=version, action="promoted" if promoted else "refused",
                         source=source[:200], metric=metric, score=cand_score, champion_before=champ_version,
                         reason=reason[:2000], experiment=experiment)  # short fields: the JSON stays whole within MLflow's tag limit
    client.set_registered_model_tag(name, f"{_HISTORY_PREFIX}{int(decision.at * 1000):013d}.{version}",
                                    json.dumps(entry.to_dict()))
    (log.info if promoted else log.warning)("champion gate: %s", decision.summary())
    return decision


def _experiment_ref(experiment_id: int | str | None) -> str | None:
    """The A/B test reference a gate decision records: a registry id (a positive whole number)."""
    if experiment_id is None:
        return None
    text = str(experiment_id).strip()
    if isinstance(experiment_id, bool) or not text.isdigit() or int(text) < 1:
        raise ModelError(f"experiment_id must be the registry id of the A/B test (a whole number >= 1), "
                         f"got {experiment_id!r}; `battleground experiment list` shows the ids")
    return str(int(text))


def champion_history(settings: Settings, name: str) -> tuple[list[HistoryEntry], str | None]:
    """(every gate decision for ``name``, oldest first; the version ``@champion`` names now)."""
    from battleground.model.tracking import _mlflow

    client = _mlflow(settings).MlflowClient()
    try:
        model = client.get_registered_model(name)
    except Exception as exc:  # MlflowException: RESOURCE_DOES_NOT_EXIST
        raise ModelError(f"no registered model named {name!r}; train and evaluate one first") from exc
    entries = [HistoryEntry(**json.loads(v)) for k, v in sorted(model.tags.items()) if k.startswith(_HISTORY_PREFIX)]
    current = model.aliases.get(CHAMPION) if isinstance(model.aliases, Mapping) else None
    return entries, None if current is None else str(current)
