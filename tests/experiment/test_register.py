"""The experiment registry: rules (each leaves the database unchanged), audit log, the seed's facade."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from battleground.experiment.register import (
    EndConditions,
    ExperimentNotFoundError,
    RegisterExperiment,
    Registry,
    RegistryError,
    RegistryRuleError,
    resolve_client,
)
from battleground.settings import Settings
from battleground.storage._db import dispose_all, registry_engine

TABLES = ("experiments", "variants", "metrics", "end_conditions", "audit_log")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("settings" if request.param == "sqlite" else "postgres_settings")


@pytest.fixture
def registry(backend: Settings) -> Registry:
    return Registry(backend.registry_url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for the many rule tests of this module (each uses its own experiment names)."""
    if request.param == "sqlite":
        yield Registry(f"sqlite:///{tmp_path_factory.mktemp('rules') / 'registry.db'}")
        return
    admin_url = os.environ.get("BATTLEGROUND_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"bg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield Registry(f"{admin_url.rpartition('/')[0]}/{name}")
    finally:
        dispose_all()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def snapshot(registry: Registry) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every registry table, straight from the database."""
    with registry_engine(registry.url).connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))] for t in TABLES
        }


def _draft(registry: Registry, name: str = "checkout") -> int:
    return registry.create_experiment(
        name, variants={"control": 0.5, "treatment": 0.5},
        metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase"}],
    ).id


def _running(registry: Registry, name: str) -> int:
    key = _draft(registry, name)
    registry.start(key)
    return key


def _stopped(registry: Registry, name: str) -> int:
    key = _running(registry, name)
    registry.stop(key, "done")
    return key


def _archived(registry: Registry, name: str) -> int:
    key = _stopped(registry, name)
    registry.archive(key)
    return key


def _two_drafts(registry: Registry, name: str) -> int:
    _draft(registry, f"{name}-taken")
    return _draft(registry, name)


# (label, setup(registry, name) → experiment id, the violating call(registry, id, name), rule named in
# the error, offending value shown in the error, <name> standing for the experiment's name)
RULES: list[tuple[str, Callable[[Registry, str], int], Callable[[Registry, int, str], Any], str, str]] = [
    ("draft→stopped", _draft, lambda r, k, n: r.stop(k, "why"), "status moves draft → running → stopped → archived only", "draft → stopped"),
    ("draft→archived", _draft, lambda r, k, n: r.archive(k), "status moves draft → running → stopped → archived only", "draft → archived"),
    ("running→running", _running, lambda r, k, n: r.start(k), "status moves draft → running → stopped → archived only", "running → running"),
    ("running→archived", _running, lambda r, k, n: r.archive(k), "status moves draft → running → stopped → archived only", "running → archived"),
    ("stopped→running", _stopped, lambda r, k, n: r.start(k), "status moves draft → running → stopped → archived only", "stopped → running"),
    ("stopped→stopped", _stopped, lambda r, k, n: r.stop(k, "again"), "status moves draft → running → stopped → archived only", "stopped → stopped"),
    ("archived→running", _archived, lambda r, k, n: r.start(k), "status moves draft → running → stopped → archived only", "archived → running"),
    ("archived→archived", _archived, lambda r, k, n: r.archive(k), "status moves draft → running → stopped → archived only", "archived → archived"),
    ("variants frozen", _running, lambda r, k, n: r.set_variants(k, {"control": 0.2, "treatment": 0.8}), "variants and weights frozen once running", "['control', 'treatment']"),
    ("variants frozen after stop", _stopped, lambda r, k, n: r.set_variants(k, ["control", "b", "c"]), "variants and weights frozen once running", "['control', 'b', 'c']"),
    ("traffic frozen", _running, lambda r, k, n: r.update(k, traffic=0.5), "traffic frozen once running", "0.5"),
    ("salt frozen", _running, lambda r, k, n: r.update(k, salt="other"), "salt frozen once running", "'other'"),
    ("weights sum to 1 (create)", _draft, lambda r, k, n: r.create_experiment(f"{n}-x", variants={"a": 0.3, "b": 0.3}), "weights sum to 1", "0.6"),
    ("weights sum to 1 (edit)", _draft, lambda r, k, n: r.set_variants(k, {"control": 0.6, "treatment": 0.6}), "weights sum to 1", "1.2"),
    ("weights in (0, 1]", _draft, lambda r, k, n: r.set_variants(k, {"control": 1.5, "treatment": -0.5}), "weights in (0, 1]", "1.5"),
    ("two controls", _draft, lambda r, k, n: r.set_variants(k, [{"name": "a", "weight": 0.5, "is_control": True}, {"name": "b", "weight": 0.5, "is_control": True}]), "exactly one control", "['a', 'b']"),
    ("no control", _draft, lambda r, k, n: r.create_experiment(f"{n}-x", variants=[{"name": "a", "weight": 0.5, "is_control": False}, {"name": "b", "weight": 0.5, "is_control": False}]), "exactly one control", "[]"),
    ("unique experiment name", _draft, lambda r, k, n: r.create_experiment(n), "unique experiment name", "'<name>'"),
    ("unique experiment name (rename)", _two_drafts, lambda r, k, n: r.update(k, name=f"{n}-taken"), "unique experiment name", "'<name>-taken'"),
    ("unique variant names", _draft, lambda r, k, n: r.set_variants(k, [{"name": "a", "weight": 0.5}, {"name": "a", "weight": 0.5}]), "unique variant names", "['a']"),
    ("unique metric names", _draft, lambda r, k, n: r.add_metric(k, "conversion", "mean", "purchase"), "unique metric names", "['conversion']"),
    ("archived read-only", _archived, lambda r, k, n: r.update(k, description="late edit"), "archived experiments are read-only", "'<name>'"),
    ("at least two variants", _draft, lambda r, k, n: r.create_experiment(f"{n}-x", variants=["only"]), "at least two variants", "['only']"),
    ("ratio needs denominator", _draft, lambda r, k, n: r.add_metric(k, "ctr", "ratio", "click"), "ratio metrics need a denominator", "None"),
]


@pytest.mark.parametrize(("label", "setup", "violate", "rule", "value"), RULES, ids=[r[0] for r in RULES])
def test_rule_violation_names_rule_and_value_and_changes_nothing(
    shared_registry: Registry, label: str, setup: Callable[[Registry, str], int],
    violate: Callable[[Registry, int, str], Any], rule: str, value: str,
) -> None:
    registry = shared_registry
    name = f"rule-{RULES.index(next(r for r in RULES if r[0] == label))}"
    key = setup(registry, name)
    before = snapshot(registry)
    with pytest.raises(RegistryRuleError) as info:
        violate(registry, key, name)
    message = str(info.value)
    assert f"rule '{rule}'" in message
    assert value.replace("<name>", name) in message
    assert info.value.rule == rule
    assert snapshot(registry) == before


def test_lifecycle_and_audit_log(registry: Registry) -> None:
    exp = registry.create_experiment(
        "checkout", variants={"control": 0.5, "treatment": 0.5}, description="new checkout",
        hypothesis="fewer steps convert better", owner="ana", start_at="2022-03-05", end_at="2022-03-19",
        metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True},
                 {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression",
                  "guardrail": True}],
        metadata={"team": "payments"}, salt="s-1", traffic=0.5, actor="ana",
    )
    assert (exp.status, exp.control, exp.variant_names, exp.salt, exp.traffic) == (
        "draft", "control", ("control", "treatment"), "s-1", 0.5)
    assert exp.window() == (dt.datetime(2022, 3, 5), dt.datetime(2022, 3, 19))
    assert registry.get("checkout") == registry.get(exp.id) == registry.get(str(exp.id)) == exp
    registry.update(exp.id, description="newer checkout", metadata={"jira": "PAY-1"}, actor="bo")
    registry.set_variants(exp.id, {"control": 0.4, "treatment": 0.6}, actor="bo")
    registry.set_end_conditions(exp.id, target_sample_size=1000, max_duration_days=14, actor="bo")
    registry.add_metric(exp.id, "revenue", "mean", "purchase", actor="bo")
    started = registry.start(exp.id, actor="cy")
    assert started.status == "running" and started.started_at is not None
    registry.record(exp.id, "srm_alert", "p = 1e-5", actor="monitor")
    stopped = registry.stop(exp.id, "target sample size reached", actor="cy")
    assert (stopped.status, stopped.stop_reason) == ("stopped", "target sample size reached")
    archived = registry.archive(exp.id, actor="cy")
    assert archived.status == "archived" and archived.archived_at is not None
    final = registry.get(exp.id)
    assert final.metadata == {"team": "payments", "jira": "PAY-1"}
    assert [(v.name, v.weight) for v in final.variants] == [("control", 0.4), ("treatment", 0.6)]
    assert final.end_conditions == EndConditions(1000, 14.0, False)
    assert [m.name for m in final.metrics] == ["conversion", "ctr", "revenue"]

    log = registry.audit_log(exp.id)
    assert [(e.action, e.actor) for e in log] == [
        ("create", "ana"), ("edit", "bo"), ("set_variants", "bo"), ("set_end_conditions", "bo"),
        ("add_metric", "bo"), ("start", "cy"), ("srm_alert", "monitor"), ("stop", "cy"), ("archive", "cy"),
    ]
    assert log[0].detail["experiment"]["name"] == "checkout"
    assert log[1].detail["description"] == {"old": "new checkout", "new": "newer checkout"}
    assert log[2].detail["new"] == [{"name": "control", "weight": 0.4, "is_control": True},
                                    {"name": "treatment", "weight": 0.6, "is_control": False}]
    assert log[3].detail["new"]["target_sample_size"] == 1000
    assert log[5].detail == {"from": "draft", "to": "running"}
    assert log[6].detail == {"message": "p = 1e-5"}
    assert log[7].detail == {"from": "running", "to": "stopped", "reason": "target sample size reached"}
    assert all(a.at <= b.at for a, b in itertools.pairwise(log))
    assert [e.name for e in registry.list()] == ["checkout"]
    assert registry.list(status="running") == []


def test_audit_log_is_append_only(registry: Registry) -> None:
    from sqlalchemy.orm import Session

    from battleground.storage._models import AuditRow

    key = _draft(registry)
    with Session(registry_engine(registry.url)) as session:
        entry = session.query(AuditRow).filter_by(experiment_id=key).one()
        entry.action = "forged"
        with pytest.raises(PermissionError, match="append-only"):
            session.flush()
        session.rollback()
        session.delete(session.query(AuditRow).filter_by(experiment_id=key).one())
        with pytest.raises(PermissionError, match="append-only"):
            session.flush()


def test_lookups_and_input_errors(registry: Registry) -> None:
    _draft(registry)
    with pytest.raises(ExperimentNotFoundError, match="no experiment 'nope'"):
        registry.get("nope")
    with pytest.raises(ExperimentNotFoundError, match="no experiment 99"):
        registry.get(99)
    with pytest.raises(RegistryError, match="stop needs a reason"):
        registry.stop("checkout", " ")
    with pytest.raises(RegistryError, match="status must be one of"):
        registry.list(status="paused")
    with pytest.raises(RegistryRuleError, match="names are not all digits"):
        registry.create_experiment("2022")
    with pytest.raises(RegistryError, match="start_at must be an ISO date"):
        registry.create_experiment("bad-date", start_at="5 March")
    with pytest.raises(RegistryRuleError, match="end after start"):
        registry.create_experiment("bad-window", start_at="2022-03-05", end_at="2022-03-01")
    with pytest.raises(RegistryRuleError, match="metric kind"):
        registry.add_metric("checkout", "x", "median", "purchase")


# --------------------------------------------------------------------------------------------------
# The seed's facade
# --------------------------------------------------------------------------------------------------


def _seed_example(client_arg: Any) -> RegisterExperiment:
    """The seed's three lines, as written."""
    client = RegisterExperiment(client=client_arg)  # db
    client.add_experiment(meta={"name": "Galileo신규모델", "실험시작일": "2022-03-05"})
    client.add_end_condition({"목표samplesize": 100})  # 종료조건 입력
    return client


def _check_seed_result(client: RegisterExperiment) -> None:
    exp = client.get_experiment()
    assert exp.name == "Galileo신규모델"
    assert exp.status == "draft"
    assert exp.start_at == dt.datetime(2022, 3, 5)
    assert [(v.name, v.weight, v.is_control) for v in exp.variants] == [
        ("control", 0.5, True), ("treatment", 0.5, False)]
    assert exp.end_conditions.target_sample_size == 100
    assert [m.name for m in exp.metrics] == ["conversion"]
    assert [e.action for e in client.registry.audit_log(exp.id)] == ["create", "set_end_conditions"]


def test_seed_example_with_a_path(tmp_path: Any) -> None:
    client = _seed_example(str(tmp_path / "bg"))
    assert client.settings.registry_url == f"sqlite:///{tmp_path / 'bg' / 'registry.db'}"
    _check_seed_result(client)


@pytest.fixture
def local_battleground_database() -> Iterator[str]:
    """The seed's bare host points at database ``battleground`` on that host: here the local server.

    Only this test uses that database; an advisory lock keeps two test runs apart, and each run drops
    and recreates it, so the example runs as written on a fresh database every time (whatever an
    older checkout's migrations left there).
    """
    from battleground.storage._pg import ensure_database

    url = "postgresql://postgres@127.0.0.1:5432/battleground"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute("SELECT pg_advisory_lock(7311402099)")
        try:
            admin.execute("DROP DATABASE IF EXISTS battleground WITH (FORCE)")
            ensure_database(url)
            Registry(url)  # migrate
            yield url
        finally:
            admin.execute("SELECT pg_advisory_unlock(7311402099)")


def test_seed_example_with_a_bare_host(local_battleground_database: str) -> None:
    assert resolve_client("127.0.0.1").registry_url == local_battleground_database
    client = _seed_example("127.0.0.1")
    assert client.settings.registry_url == local_battleground_database
    assert client.settings.events_url == local_battleground_database
    _check_seed_result(client)


def test_facade_meta_keys_and_errors(tmp_path: Any) -> None:
    client = RegisterExperiment(client=tmp_path, actor="tester")
    exp = client.add_experiment(meta={
        "실험명": "korean-keys", "설명": "desc", "가설": "h", "담당자": "kim", "실험종료일": "2022-04-01",
        "실험군": {"A": 0.5, "B": 0.5}, "트래픽": 0.5, "campaign": "spring",
    })
    assert (exp.name, exp.description, exp.hypothesis, exp.owner) == ("korean-keys", "desc", "h", "kim")
    assert exp.end_at == dt.datetime(2022, 4, 1) and exp.traffic == 0.5 and exp.control == "A"
    assert exp.metadata == {"campaign": "spring"}
    ec = client.add_end_condition({"최대기간": 14, "순차검정": True}).end_conditions
    assert ec == EndConditions(None, 14.0, True)
    with pytest.raises(RegistryError, match="unknown end condition 'deadline'"):
        client.add_end_condition({"deadline": 3})
    with pytest.raises(RegistryError, match="meta needs a name"):
        client.add_experiment(meta={"실험시작일": "2022-03-05"})
    with pytest.raises(RegistryError, match="gives 'name' twice"):
        client.add_experiment(meta={"name": "a", "실험명": "b"})
    with pytest.raises(RegistryRuleError, match="target sample size is a positive integer"):
        client.add_end_condition({"목표samplesize": -3})
    other = RegisterExperiment(client=tmp_path)
    with pytest.raises(RegistryError, match="no experiment chosen"):
        other.add_end_condition({"목표samplesize": 100})
    assert other.put_experiment_id("korean-keys").get_experiment().id == exp.id


def test_resolve_client_forms(tmp_path: Any) -> None:
    assert resolve_client("127.0.0.1").registry_url == "postgresql://postgres@127.0.0.1:5432/battleground"
    assert resolve_client("127.0.0.1:6543").events_url == "postgresql://postgres@127.0.0.1:6543/battleground"
    assert resolve_client("localhost").registry_url == "postgresql://postgres@localhost:5432/battleground"
    folder = resolve_client(str(tmp_path / "bg"))
    assert folder.registry_url == f"sqlite:///{tmp_path / 'bg' / 'registry.db'}"
    assert folder.events_url == f"duckdb:///{tmp_path / 'bg' / 'events.duckdb'}"
    assert resolve_client(f"sqlite:///{tmp_path}/r.db").events_url == f"duckdb:///{tmp_path}/events.duckdb"
    assert resolve_client(f"duckdb:///{tmp_path}/e.duckdb").registry_url == f"sqlite:///{tmp_path}/registry.db"
    assert resolve_client("postgres://u@127.0.0.1/db").registry_url == "postgresql://u@127.0.0.1/db"
    assert resolve_client(tmp_path / "x.db").registry_url == f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ValueError, match="is not supported"):
        resolve_client("mysql://127.0.0.1/db")
    with pytest.raises(TypeError, match="client must be"):
        resolve_client(3.5)


def test_cli_lifecycle(backend: Settings) -> None:
    from typer.testing import CliRunner

    from battleground.cli import app

    env = {"BATTLEGROUND_HOME": str(backend.home), "COLUMNS": "250"}
    if backend.registry_url.startswith("postgresql"):
        env["BATTLEGROUND_DATABASE_URL"] = backend.registry_url
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, result.output
        return " ".join(result.output.split())

    out = run("experiment", "create", "checkout", "--variants", "control=0.4,green=0.6",
              "--metric", "conversion:proportion:purchase", "--metric", "ctr:ratio:click:impression",
              "--guardrail", "ctr", "--start", "2022-03-05", "--target-sample-size", "500", "--owner", "ana")
    assert "created experiment #1 checkout (draft): control 0.4 (control), green 0.6" in out
    assert "weights sum to 1" in run("experiment", "create", "bad", "--variants", "a=0.3,b=0.3", code=1)
    assert "unique experiment name" in run("experiment", "create", "checkout", code=1)
    listing = run("experiment", "list")
    assert "checkout" in listing and "draft" in listing and "conversion, ctr" in listing
    shown = run("experiment", "show", "checkout")
    assert "planned window: 2022-03-05 → open" in shown and "guardrail" in shown and "target sample size 500" in shown
    assert "is now running" in run("experiment", "start", "1")
    assert "status moves draft → running → stopped → archived only" in run("experiment", "start", "1", code=1)
    assert "Missing option '--reason'" in run("experiment", "stop", "1", code=2)
    assert "is now stopped" in run("experiment", "stop", "checkout", "--reason", "target reached")
    assert "is now archived" in run("experiment", "archive", "checkout")
    audit = run("experiment", "audit", "checkout")
    for action in ("create", "start", "stop", "archive", "target reached"):
        assert action in audit
    assert "no experiment 'nope'" in run("experiment", "show", "nope", code=1)
    exp = Registry(backend.registry_url).get("checkout")
    assert (exp.status, exp.control, exp.owner, exp.stop_reason) == ("archived", "control", "ana", "target reached")
    assert [m.guardrail for m in exp.metrics] == [False, True]
