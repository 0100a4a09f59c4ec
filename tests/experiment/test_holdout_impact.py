"""The cumulative impact of everything shipped, measured against a project holdout: the holdout is a
registry row whose variants are "holdout" (control) and "shipped"; exposures come from the Assigner,
metric events are logged under it, and Monitor's ordinary sums and statistics compare the two (DuckDB
and PostgreSQL event stores), matching the pure statistics on the same per-user values. The CLI creates
and shows a holdout, and `experiment create --layer --range` registers a layered experiment."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from battleground import stats
from battleground.cli import app
from battleground.experiment.assign import Assigner
from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.monitoring import Monitor
from battleground.experiment.register import Registry
from battleground.settings import Settings

START = dt.datetime(2026, 11, 2)


@pytest.fixture(params=["duckdb", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("settings" if request.param == "duckdb" else "postgres_settings")


def test_holdout_report_measures_what_shipped_with_the_ab_statistics(backend: Settings) -> None:
    registry = Registry(backend.registry_url)
    hold = registry.create_holdout(
        "shop-h2", fraction=0.2, project="shop", start_at=START, end_at=START + dt.timedelta(days=30),
        metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True},
                 {"name": "revenue", "kind": "mean", "numerator": "purchase", "cuped_lookback_days": None}],
        salt="shop-h2",
    )
    registry.start(hold.id, at=START)
    shipped_exp = registry.start(registry.create_experiment("new-checkout", project="shop").id, at=START)
    assert shipped_exp.holdout is not None and shipped_exp.holdout.id == hold.id
    n = 6000 if "postgresql" in backend.registry_url else 12000
    users = np.array([f"s{i}" for i in range(n)], dtype=object)
    store = open_event_store(backend)
    Assigner(registry.get(hold.id)).expose(store, users, at=START + dt.timedelta(hours=1))
    arm = Assigner(registry.get(hold.id)).assign_many(users)
    rng = np.random.default_rng(17)
    # what shipped lifts conversion from 10 % to 13 %; the held-out users never saw it
    bought = rng.random(n) < np.where(arm == "shipped", 0.13, 0.10)
    amount = np.round(rng.gamma(2.0, 20.0, n), 2)
    buyers = np.flatnonzero(bought)
    ingest(store, pd.DataFrame({
        "event_id": [f"buy-{i}" for i in buyers], "experiment_id": hold.id, "variant": arm[buyers],
        "user_id": users[buyers], "event_type": "purchase", "timestamp": START + dt.timedelta(days=2),
        "value": amount[buyers],
    }))
    result = Monitor(client=backend).put_experiment_id(hold.id).result()
    rows = {(r.metric, r.variant): r for r in result.rows}
    held, rest = arm == "holdout", arm == "shipped"
    assert rows[("conversion", "holdout")].users == held.sum() and rows[("conversion", "shipped")].users == rest.sum()
    assert abs(held.mean() - 0.2) < 0.02
    got = rows[("conversion", "shipped")]
    # the comparison is shipped (treatment) vs holdout (control), by the same pure statistics
    conv = stats.compare_means((bought[held].sum(), held.sum()), (bought[rest].sum(), rest.sum()), proportion=True)
    assert got.abs_lift == pytest.approx(conv.estimate, rel=1e-9)
    assert got.p_value == pytest.approx(conv.p_value, rel=1e-6)
    assert got.abs_lift > 0 and got.significant
    value = np.where(bought, amount, 0.0)
    rev = stats.compare_means(value[held], value[rest])
    assert rows[("revenue", "shipped")].abs_lift == pytest.approx(rev.estimate, rel=1e-9)
    assert result.srm is not None and result.srm.status == "ok"  # 20/80 split as declared


def test_cli_holdout_and_layered_create(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"BATTLEGROUND_HOME": str(tmp_path / ".battleground"), "BATTLEGROUND_DATABASE_URL": ""}
    run = CliRunner()

    def ok(*args: str) -> str:
        done = run.invoke(app, list(args), env=env)
        assert done.exit_code == 0, done.output
        return " ".join(done.output.split())

    out = ok("experiment", "holdout", "create", "h1", "--fraction", "0.05", "--project", "shop",
             "--metric", "conv:proportion:purchase")
    assert "holds out buckets [0, 500) of 10,000 (5 % of units)" in out
    ok("experiment", "start", "h1")
    out = ok("experiment", "create", "layered", "--project", "shop", "--layer", "checkout", "--range", "0-2500")
    assert "layer checkout buckets [0, 2500) of 10,000 (25 % of units)" in out
    out = ok("experiment", "create", "auto", "--project", "shop", "--layer", "checkout", "--buckets", "1000")
    assert "[2500, 3500)" in out
    ok("experiment", "start", "layered")
    show = ok("experiment", "show", "layered")
    assert "project: shop" in show and "behind holdout: #1 h1 (5.00% held out)" in show
    assert "layer: checkout: buckets [0, 2500)" in show
    listing = ok("experiment", "holdout", "show", "h1")
    assert "layered" in listing and "holds out 5.00% of project shop" in listing
    bad = run.invoke(app, ["experiment", "holdout", "create", "h2", "--fraction", "1.5"], env=env)
    assert bad.exit_code != 0 and "holdout fraction in (0, 1)" in " ".join(bad.output.split())
    clash = run.invoke(app, ["experiment", "create", "c", "--layer", "checkout", "--range", "2000-3000"], env=env)
    assert clash.exit_code != 0 and "overlaps [0, 2500) of running experiment 'layered'" in " ".join(clash.output.split())
    outside = run.invoke(app, ["experiment", "create", "d", "--layer", "checkout", "--range", "0-10001"], env=env)
    assert outside.exit_code != 0 and "layer range within [0, 10000)" in " ".join(outside.output.split())
