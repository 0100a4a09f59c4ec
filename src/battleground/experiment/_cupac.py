"""CUPAC with the champion: a registered model's prediction from pre-exposure features as a covariate.

CUPAC (Control Using Predictions As Covariates; Li et al. 2020, DoorDash Engineering) adjusts by a model's
prediction of the metric instead of (or beside) the metric's own pre-period. battleground has the
model registry beside the experiment, so the covariate provider here scores every exposed user with
the MLflow ``@champion`` (or any registered model and alias, or a fitted model given directly) from
features dated *before* the user's first exposure, and stores each prediction as an attribute event
(type ``attribute``, ``value`` = the prediction, at the exposure), which the CUPED++ regression
(:mod:`battleground.experiment._cupedpp`) reads as one more covariate from the same SQL scan. The
statistics stay pure: they see one more column of sums.

Leakage guard: a feature measured at or after the exposure could have been moved by the treatment,
and adjusting by it would remove part of the effect. :func:`cupac_covariate` refuses the whole batch
(:class:`FeatureLeakageError`, naming the feature, the user and both timestamps) when any exposed
user's feature is not dated strictly before that user's first exposure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from battleground.errors import ExperimentError
from battleground.stats import Result

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CupacResult", "FeatureLeakageError", "cupac_covariate"]


class FeatureLeakageError(ExperimentError, ValueError):
    """A feature given to CUPAC is not dated before the user's first exposure (or is not dated at all).

    Attributes:
        feature, user_id: the offending feature and user.
        feature_time, exposure_time: the feature's timestamp and the user's first exposure (naive UTC).
    """

    def __init__(self, feature: str, user_id: str, feature_time: Any, exposure_time: Any, count: int) -> None:
        more = f" ({count - 1} more rows too)" if count > 1 else ""
        when = "has no timestamp" if feature_time is None else f"is dated {feature_time}"
        super().__init__(
            f"leakage: feature {feature!r} of user {user_id!r} {when}, not before the user's first exposure "
            f"{exposure_time}{more}; CUPAC may only use features measured before exposure (the treatment could "
            "have moved later ones): pass features as of a time before each user's exposure"
        )
        self.feature, self.user_id = feature, user_id
        self.feature_time, self.exposure_time = feature_time, exposure_time


class CupacInputError(ExperimentError, ValueError):
    """The features or the model given to CUPAC cannot be used (the message says which and how to fix)."""


@dataclass(frozen=True)
class CupacResult(Result):
    """What scoring an experiment's users did.

    Attributes:
        experiment_id, attribute: the experiment and the attribute (event type) the predictions went to.
        model, version: the model that scored (``"<given>"`` for a model object passed in).
        users_scored: exposed users with features, scored and written.
        users_without_features: exposed users with no feature row (their covariate is "missing").
        rows_ignored: feature rows of users never exposed to the experiment.
        events_written: attribute events stored (a re-run writes none: ingest is idempotent).
        variance_reduction: per ``"metric/variant"``, the variance reduction of the prediction alone as
            the covariate (1 − Var(adjusted lift)/Var(plain lift)); the CUPED++ rows of ``Monitor``
            combine it with the other covariates.
    """

    experiment_id: int
    attribute: str
    model: str
    version: str
    users_scored: int
    users_without_features: int
    rows_ignored: int
    events_written: int
    variance_reduction: dict[str, float] = field(default_factory=dict)


def _naive_utc(values: Any, name: str) -> Any:
    import pandas as pd

    try:
        ts = pd.to_datetime(values, utc=True, errors="raise")
    except (ValueError, TypeError) as exc:
        raise CupacInputError(f"feature timestamps {name!r} must be dates/times, got {exc}") from None
    return ts.dt.tz_convert(None) if hasattr(ts, "dt") else ts.tz_convert(None)


def _predict(model: Any, frame: pd.DataFrame) -> Any:
    import numpy as np

    if hasattr(model, "predict_proba"):  # a classifier given directly: P(class 1)
        out = np.asarray(model.predict_proba(frame), dtype=float)
        out = out[:, -1] if out.ndim == 2 else out
    else:
        out = np.asarray(model.predict(frame), dtype=float)
    out = out.reshape(len(frame), -1)[:, -1] if out.ndim > 1 else out
    if len(out) != len(frame) or not np.all(np.isfinite(out)):
        raise CupacInputError(f"the model must give one finite prediction per user: {len(frame)} users, "
                              f"{len(out)} predictions ({int(np.sum(~np.isfinite(out)))} not finite)")
    return out


def cupac_covariate(
    client: Any,
    experiment: Any,
    features: pd.DataFrame,
    *,
    feature_times: str | Mapping[str, str] = "feature_ts",
    user_column: str = "user_id",
    model: Any = None,
    model_name: str | None = None,
    alias: str = "champion",
    attribute: str = "cupac",
    declare: bool = True,
) -> CupacResult:
    """Score the experiment's exposed users with a model and store the predictions as a CUPED++ covariate.

    Args:
        client: where the registry, events and MLflow live (as for ``Monitor``).
        experiment: the experiment's id or name.
        features: one row per user: ``user_column``, the model's features and their timestamps.
        feature_times: the column dating every feature, or ``{feature: its timestamp column}``; each
            must be before the user's first exposure (else :class:`FeatureLeakageError`).
        model: a fitted model (``predict_proba`` or ``predict``) to use instead of the registry's.
        model_name, alias: the registered model to load (``load_champion``; default the project's model
            at ``@champion``).
        attribute: the event type of the stored predictions (an attribute no metric counts).
        declare: add ``attribute`` to the experiment's ``regression_adjustment`` attributes, so that
            ``Monitor`` shows CUPED++ rows adjusted by the prediction.
    """
    import numpy as np
    import pandas as pd

    from battleground.experiment._cupedpp import REGRESSION_KEY, cupedpp_comparisons
    from battleground.experiment._source import _Backend

    backend = _Backend(client)
    exp_id = backend.resolve_id(experiment)
    rec = backend.registry.get(exp_id)
    counted = {et for m in rec.metrics for et in (m.numerator, m.denominator) if et}
    if not isinstance(attribute, str) or not attribute.strip() or attribute == "exposure" or attribute in counted:
        raise CupacInputError(f"attribute must be an event type no metric counts and not 'exposure', got {attribute!r}; "
                              "e.g. attribute='cupac'")
    if not isinstance(features, pd.DataFrame) or user_column not in features.columns:
        raise CupacInputError(f"features must be a DataFrame with a {user_column!r} column, got "
                              f"{list(getattr(features, 'columns', []))}")
    times = ({str(c): str(feature_times) for c in features.columns if c not in (user_column, feature_times)}
             if isinstance(feature_times, str) else {str(k): str(v) for k, v in feature_times.items()})
    missing = sorted({*times, *times.values()} - set(map(str, features.columns)))
    if missing:
        raise CupacInputError(f"features lack the columns {missing} (feature_times names each feature's timestamp "
                              f"column); the columns are {list(map(str, features.columns))}")
    if not times:
        raise CupacInputError("features have no feature columns besides the user id and the timestamps")
    users = features[user_column].astype(str)
    if users.duplicated().any():
        raise CupacInputError(f"features must have one row per user; {users[users.duplicated()].iloc[0]!r} has several "
                              "(keep each user's latest row dated before their exposure)")
    store = backend.store_for(exp_id)
    rows = store._query("SELECT user_id, MIN(ts), MIN(variant) FROM events WHERE experiment_id = :experiment "
                        "AND event_type = :exposure GROUP BY user_id", {"experiment": exp_id, "exposure": "exposure"})
    first = pd.DataFrame(rows, columns=["user_id", "t0", "variant"]).astype({"user_id": str})
    first["t0"] = _naive_utc(first["t0"], "exposure")
    frame = features.assign(**{user_column: users}).merge(first, left_on=user_column, right_on="user_id",
                                                          how="inner", suffixes=("", "_exposure"))
    for name, col in times.items():  # the leakage guard, feature by feature
        when = _naive_utc(frame[col], col)
        bad = when.isna() | (when >= frame["t0"])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            ft = None if pd.isna(when.iloc[i]) else when.iloc[i].to_pydatetime()
            raise FeatureLeakageError(name, str(frame[user_column].iloc[i]), ft, frame["t0"].iloc[i].to_pydatetime(),
                                      int(bad.sum()))
    name, version = "<given>", ""
    if model is None:
        from battleground.model.tracking import DEFAULT_MODEL_NAME, load_champion

        champ = load_champion(backend.settings, model_name or DEFAULT_MODEL_NAME, alias)
        model, name, version = champ.model, f"{champ.name}@{alias}", champ.version
        inputs = champ.feature_names or list(times)
    else:
        inputs = list(times)
    absent = [c for c in inputs if c not in frame.columns]
    if absent:
        raise CupacInputError(f"the model needs the features {absent}, which the features frame lacks")
    pred = _predict(model, frame[inputs]) if len(frame) else np.empty(0)
    events = pd.DataFrame({
        "event_id": [f"cupac:{attribute}:{u}" for u in frame[user_column]], "experiment": rec.name,
        "variant": frame["variant"].astype(str), "user_id": frame[user_column],
        "event_type": attribute, "timestamp": frame["t0"], "value": pred.astype(float), "covariate": None,
    })
    written = 0
    if len(events):
        from battleground.experiment.events import ingest

        written = int(ingest(store, events).inserted)
    if declare:
        spec = dict(rec.metadata.get(REGRESSION_KEY) or {}) if isinstance(rec.metadata.get(REGRESSION_KEY), dict) else {}
        attrs = list(spec.get("attributes") or [])
        if attribute not in attrs:
            backend.registry.update(exp_id, metadata={REGRESSION_KEY: {**spec, "attributes": [*attrs, attribute]}})
    reduction: dict[str, float] = {}
    info = backend.experiment(exp_id)
    defs = backend._definitions(info)[1]
    if defs and len(frame) and hasattr(store, "covariate_sums"):
        arms = store.covariate_sums(exp_id, defs, [attribute], variants=rec.variant_names,
                                    multiple_exposures=backend.multiple_exposures)
        keep = [i for i, c in enumerate(arms[0].covariates) if c in (attribute, f"{attribute}?")] if arms else []
        only = [_subset(a, keep) for a in arms]
        for c in cupedpp_comparisons([(m.name, m.kind) for m in info.metrics], only, control=info.control):
            reduction[f"{c.metric}/{c.variant}"] = c.variance_reduction
    return CupacResult(experiment_id=exp_id, attribute=attribute, model=name, version=version,
                       users_scored=len(frame), users_without_features=len(first) - len(frame),
                       rows_ignored=len(features) - len(frame), events_written=written,
                       variance_reduction={k: v for k, v in reduction.items() if math.isfinite(v)})


def _subset(arm: Any, keep: Sequence[int]) -> Any:
    """The covariate sums of one arm restricted to the covariates at ``keep``."""
    from dataclasses import replace

    return replace(arm, covariates=tuple(arm.covariates[i] for i in keep),
                   sum_z=tuple(arm.sum_z[i] for i in keep), shift_z=tuple(arm.shift_z[i] for i in keep),
                   sum_zz=tuple(tuple(arm.sum_zz[i][k] for k in keep) for i in keep),
                   sum_yz=tuple(tuple(row[i] for i in keep) for row in arm.sum_yz))
