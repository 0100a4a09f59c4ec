"""The seed's ``experiment.ab_test``, ``experiment.monitoring`` and ``experiment.report`` examples, run
as written. Fixed typos: the heading ``experiment.monotoring`` is ``experiment.monitoring``; the seed's
``expeirment_id=`` spelling is accepted as it is. The inputs the seed left out (``# input :``) are
filled in, and the seed's example hosts (``'10.x.x.x'``, ``'1.1.1.1'``) are replaced by a folder or a
PostgreSQL URL, which ``client=`` accepts as well."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from battleground.experiment.assign import Assigner
from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.register import Registry


def _simulate(client: str, name: str = "실험id") -> None:
    """Users exposed from the experiment's start (2022-03-05) and their conversions."""
    registry = Registry(client)
    store = open_event_store(client)
    assigner = Assigner.from_registry(registry, name)
    rng = np.random.default_rng(0)
    ids = np.arange(1, 4001)
    at = [dt.datetime(2022, 3, 5) + dt.timedelta(minutes=int(m)) for m in rng.integers(0, 5 * 1440, ids.size)]
    assigner.expose(store, ids, at=at)
    variant = np.asarray(assigner.assign_many(ids), dtype=object)
    converts = rng.random(ids.size) < np.where(variant == "treatment", 0.16, 0.10)
    ingest(store, pd.DataFrame({
        "event_id": [f"conversion:{i}" for i in ids[converts]], "experiment": name,
        "variant": variant[converts].astype(str), "user_id": ids[converts],
        "event_type": "conversion",
        "timestamp": [t + dt.timedelta(hours=1) for t, c in zip(at, converts, strict=True) if c],
    }))


def test_seed_ab_test_example() -> None:
    # 7. experiment.ab_test — "# input :" filled in: the arms' data and the planning effect.
    from battleground.experiment.ab_test import ABTest

    abtest = ABTest(control=(1000, 10000), treatment=(1100, 10000), metric="proportion", mde=0.1)
    t = abtest.get_t_test()
    n = abtest.get_sample_size()
    assert t.method == "welch" and t.p_value == pytest.approx(0.021068257468733975, rel=1e-6)
    assert n.n_control_ceil == 14749 and "unpooled" in n.formula


def test_seed_register_monitoring_and_report_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / ".battleground"
    monkeypatch.setenv("BATTLEGROUND_HOME", str(home))  # where MakeReport() (no client=) looks
    monkeypatch.delenv("BATTLEGROUND_DATABASE_URL", raising=False)

    # 5. experiment.register (the seed's host '10.x.x.x' → a folder)
    from battleground.experiment.register import RegisterExperiment

    client = RegisterExperiment(client=str(home))  # db
    client.add_experiment(meta={"name": "실험id", "실험시작일": "2022-03-05"})
    client.add_end_condition({"목표samplesize": 100})  # 종료조건 입력
    client.start()
    _simulate(str(home))

    # 8. experiment.monitoring (the seed's host '1.1.1.1' → the same folder)
    # input : 실험 id, 실험기간 정보 / output : 해당 기간 동안 성과 (CTR 등)
    from battleground.experiment.monitoring import Monitor

    monitor = Monitor(client=str(home))
    monitor.put_experiment_id(expeirment_id="실험id")
    frame = monitor.get_abtest_result(start_dt="2022-03-01", end_dt="2022-03-10")
    assert list(frame["variant"]) == ["control", "treatment"] and frame["users"].sum() == 4000
    treatment = frame.iloc[1]
    assert treatment["metric"] == "conversion" and treatment["significant"] and treatment["abs_lift"] > 0

    # 6. experiment.report — 실험 종료 이후 리포트 생성
    from battleground.experiment.report import MakeReport

    report = MakeReport()
    cr = report.create_report()
    assert cr.verdict == "ship" and Path(cr.html_path).is_file() and Path(cr.markdown_path).is_file()
    assert "## Decision: ship treatment" in Path(cr.markdown_path).read_text(encoding="utf-8")


def test_seed_monitoring_example_on_postgres(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from battleground.experiment.monitoring import Monitor, settings_of
    from battleground.experiment.register import RegisterExperiment

    RegisterExperiment(client=postgres_url).add_experiment(meta={"name": "실험id", "실험시작일": "2022-03-05"})
    Registry(postgres_url).start("실험id")
    _simulate(postgres_url)
    monitor = Monitor(client=postgres_url)
    monitor.put_experiment_id(expeirment_id="실험id")
    frame = monitor.get_abtest_result(start_dt="2022-03-01", end_dt="2022-03-10")
    assert frame["users"].sum() == 4000 and frame.iloc[1]["significant"]
    # The seed's bare host means PostgreSQL at that host; nothing connects until a result is asked for.
    monkeypatch.delenv("PGUSER", raising=False)
    Monitor(client="1.1.1.1")
    assert settings_of("1.1.1.1").registry_url == "postgresql://postgres@1.1.1.1:5432/battleground"
