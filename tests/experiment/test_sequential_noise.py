"""Issue 12: a sequential experiment must not stop on noise when the relative lift is undefined.

0 conversions in control and 1 in treatment (400 users each): the relative lift is 0.0025/0 = ∞. The
always-valid p-value used to come out as 0 (Λ = ∞), and ``check_end_conditions`` stopped a healthy
experiment. Through the public path: the real registry, assigner and event store in a temporary home.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from battleground.experiment.assign import Assigner
from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.monitoring import Monitor
from battleground.experiment.register import Registry
from battleground.settings import Settings

START = dt.datetime(2022, 3, 1)
METRICS = [{"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True}]


def _sequential_experiment(settings: Settings, conversions: tuple[int, int], users: int = 400) -> int:
    registry = Registry(settings.registry_url)
    rec = registry.create_experiment(
        "noise", variants={"control": 0.5, "treatment": 0.5}, metrics=METRICS, owner="ana",
        start_at=START, end_conditions={"sequential": True}, salt="noise-0",
    )
    rec = registry.start(rec.id)
    store = open_event_store(settings)
    assigner = Assigner(rec)
    ids = np.arange(1, 4 * users + 1)
    arm = np.asarray(assigner.assign_many(ids), dtype=object)
    chosen = {v: ids[arm == v][:users] for v in ("control", "treatment")}
    assert all(c.size == users for c in chosen.values())
    both = np.concatenate([chosen["control"], chosen["treatment"]])
    assigner.expose(store, both, at=START + dt.timedelta(hours=1))
    buyers = [(v, u) for v, k in zip(("control", "treatment"), conversions, strict=True)
              for u in chosen[v][:k]]
    if buyers:
        ingest(store, pd.DataFrame({
            "event_id": [f"purchase:{u}" for _, u in buyers], "experiment": rec.id,
            "variant": [v for v, _ in buyers], "user_id": [str(u) for _, u in buyers],
            "event_type": "purchase", "timestamp": START + dt.timedelta(hours=2),
            "value": pd.array([np.nan] * len(buyers), dtype="Float64"),
        }))
    return rec.id


def test_one_conversion_against_none_does_not_stop(settings: Settings) -> None:
    exp_id = _sequential_experiment(settings, conversions=(0, 1))
    monitor = Monitor(client=settings).put_experiment_id(experiment_id=exp_id)
    frame = monitor.get_abtest_result()
    conv = frame[(frame.metric == "conversion") & (frame.variant == "treatment")].iloc[0]
    assert conv["users"] == 400 and conv["events"] == 1 and conv["method"] == "msprt"
    assert conv["p_value"] > 0.5 and not conv["significant"]
    report = monitor.check_end_conditions(now=START + dt.timedelta(days=1))
    assert not report.met and not report.stopped and report.reasons == ()
    assert Registry(settings.registry_url).get(exp_id).status == "running"


def test_a_real_effect_from_a_zero_baseline_still_stops(settings: Settings) -> None:
    # The absolute-scale fallback keeps the test able to detect an effect when the control has none.
    exp_id = _sequential_experiment(settings, conversions=(0, 120))
    report = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).check_end_conditions(
        now=START + dt.timedelta(days=1)
    )
    assert report.met and report.stopped and "sequential boundary crossed" in report.reasons[0]
