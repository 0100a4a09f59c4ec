"""Every table the CLI prints keeps every number whole at 80 columns and in a pipe, and comes as JSON
and CSV of the raw values (issue 13 §4)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.experiment.ab_scenario import build
from typer.testing import CliRunner

from battleground.cli import app
from battleground.experiment.monitoring import Monitor
from battleground.settings import Settings

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _env(settings: Settings, columns: int = 80) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATTLEGROUND_")}
    return {**env, "BATTLEGROUND_HOME": str(settings.home), "COLUMNS": str(columns), "PYTHONPATH": SRC,
            "TERM": "dumb"}


def _piped(settings: Settings, *args: str, columns: int = 80) -> str:
    """The command's output through a pipe (not a terminal), at ``columns`` columns."""
    out = subprocess.run([sys.executable, "-m", "battleground", *args], capture_output=True, text=True,
                         env=_env(settings, columns), timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _invoke(settings: Settings, *args: str) -> str:
    res = CliRunner().invoke(app, list(args), env={"BATTLEGROUND_HOME": str(settings.home)})
    assert res.exit_code == 0, res.output
    return res.stdout


def _status_numbers(settings: Settings, experiment_id: int) -> list[str]:
    """Every number of the status table as the CLI formats it, from the underlying result."""
    frame = Monitor(client=settings).put_experiment_id(experiment_id=experiment_id).get_abtest_result()
    numbers = []
    for r in frame.itertuples():
        numbers.append(f"{r.users:,}")
        numbers.append(f"{r.value:.3%}" if r.kind in ("proportion", "ratio") else f"{r.value:,.4g}")
        if r.is_control:
            continue
        numbers += [f"{r.abs_lift:+.4g}", f"{r.abs_ci_lower:+.4g}", f"{r.abs_ci_upper:+.4g}",
                    f"{r.rel_lift:+.2%}", f"{r.rel_ci_lower:+.2%}", f"{r.rel_ci_upper:+.2%}",
                    f"{r.p_value:.3g}", f"{r.p_value_adjusted:.3g}"]
    return numbers


def _whole(number: str, text: str) -> bool:
    """``number`` appears in ``text`` not as part of a longer number."""
    import re

    return re.search(rf"(?<![\d.,]){re.escape(number)}(?![\d])", text) is not None


@pytest.mark.parametrize("columns", [80, 200])
def test_status_keeps_every_number_whole_in_a_pipe(settings: Settings, columns: int) -> None:
    sc = build(settings, name="a-long-experiment-name-for-narrow-terminals", users=600)
    text = _piped(settings, "experiment", "status", str(sc.id), columns=columns)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= columns or columns == 80
    missing = [n for n in _status_numbers(settings, sc.id) if not _whole(n, text)]
    assert missing == []
    for metric in ("conversion", "revenue", "ctr", "errors"):
        assert metric in text


def test_status_json_and_csv_carry_the_raw_values(settings: Settings) -> None:
    sc = build(settings, users=600)
    frame = Monitor(client=settings).put_experiment_id(experiment_id=sc.id).get_abtest_result()
    payload = json.loads(_invoke(settings, "experiment", "status", str(sc.id), "--json"))
    # The CUPED-adjusted comparison of a metric with a pre-period covariate travels as its own row.
    adjusted = [r for r in payload["rows"] if r["metric"].endswith(" (CUPED)")]
    rows = [r for r in payload["rows"] if r not in adjusted]
    assert len(rows) == len(frame)
    assert [(r["metric"], r["variant"], r["method"]) for r in adjusted] == [("ctr (CUPED)", "treatment", "cuped")]
    by_key = {(r["metric"], r["variant"]): r for r in rows}
    for r in frame.itertuples():
        got = by_key[(r.metric, r.variant)]
        assert got["users"] == r.users and got["value"] == pytest.approx(r.value, rel=1e-15)
        if not r.is_control:
            assert got["p_value"] == pytest.approx(r.p_value, rel=1e-15)
            assert got["rel_ci_lower"] == pytest.approx(r.rel_ci_lower, rel=1e-15)
    assert payload["srm"]["status"] in ("ok", "warn", "alert")
    assert payload["experiment"]["id"] == sc.id

    table = list(csv.DictReader(io.StringIO(_invoke(settings, "experiment", "status", str(sc.id), "--csv"))))
    assert len(table) == len(payload["rows"])
    assert {(t["metric"], t["variant"]) for t in table} == set(by_key) | {("ctr (CUPED)", "treatment")}
    treated = next(t for t in table if t["metric"] == "conversion" and t["variant"] == "treatment")
    assert float(treated["p_value"]) == pytest.approx(by_key[("conversion", "treatment")]["p_value"], rel=1e-15)


def test_both_json_and_csv_is_a_usage_error(settings: Settings) -> None:
    res = CliRunner().invoke(app, ["experiment", "list", "--json", "--csv"],
                             env={"BATTLEGROUND_HOME": str(settings.home)})
    assert res.exit_code == 2 and "--json" in res.output


def test_registry_tables_fit_80_columns_and_come_as_json(settings: Settings) -> None:
    sc = build(settings, name="checkout-button-with-a-rather-long-name", users=200)
    sc.registry.stop(sc.id, "target sample size reached after a long and eventful fortnight")
    for args in (("experiment", "list"), ("experiment", "show", str(sc.id)), ("experiment", "audit", str(sc.id))):
        text = _piped(settings, *args)
        assert "…" not in text, args
        assert "checkout-button-with-a-rather-long-name" in text, args
    listed = json.loads(_invoke(settings, "experiment", "list", "--json"))
    assert [(e["id"], e["name"], e["status"]) for e in listed] == [(sc.id, sc.experiment.name, "stopped")]
    assert listed[0]["variants"] == [{"name": "control", "weight": 0.5, "is_control": True},
                                     {"name": "treatment", "weight": 0.5, "is_control": False}]
    shown = json.loads(_invoke(settings, "experiment", "show", str(sc.id), "--json"))
    assert [m["name"] for m in shown["metrics"]] == ["conversion", "revenue", "ctr", "errors"]
    assert shown["experiment"]["stop_reason"] == "target sample size reached after a long and eventful fortnight"
    audit = json.loads(_invoke(settings, "experiment", "audit", str(sc.id), "--json"))
    assert [a["action"] for a in audit] == ["create", "start", "stop"]
    assert audit[-1]["detail"]["reason"] == "target sample size reached after a long and eventful fortnight"
    audit_csv = list(csv.DictReader(io.StringIO(_invoke(settings, "experiment", "audit", str(sc.id), "--csv"))))
    assert [a["action"] for a in audit_csv] == ["create", "start", "stop"]
