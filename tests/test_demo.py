"""`battleground demo` end to end, at the fast sizes: every stage runs and leaves what it promises."""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from pathlib import Path

import pytest
from rich.console import Console

from battleground.demo import DAYS, START, DemoSizes, run_demo
from battleground.experiment.register import Registry
from battleground.settings import Settings


def test_demo_runs_every_part(settings: Settings, capfd: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    summary = run_demo(settings, fast=True, console=Console(file=out, width=140))
    text = out.getvalue()
    captured = capfd.readouterr()

    registry = Registry(settings.registry_url)
    checkout = registry.get(summary.checkout_experiment)
    model_ab = registry.get(summary.model_experiment)
    # Both A/B tests were stopped by an end condition (or the end of the simulation), with a reason.
    assert checkout.status == "stopped" and "target sample size reached" in (checkout.stop_reason or "")
    assert model_ab.status == "stopped" and model_ab.stop_reason == summary.model_stop_reason
    assert [v.name for v in model_ab.variants] == ["baseline", "champion"]
    assert summary.checkout_decision and summary.model_decision
    assert summary.champion.startswith("churn v")
    assert summary.bandit_winner
    assert math.isfinite(summary.incremental_auc_lift)
    for name in ("checkout report", "model A/B report", "bandit report"):
        path = Path(summary.files[name])
        assert path.is_file() and path.stat().st_size > 10_000, name
        assert "<script src=\"http" not in path.read_text(encoding="utf-8")  # opens offline
    for stage in ("checkout", "models", "model_ab", "bandit", "incremental"):
        assert stage in summary.seconds
    assert "what to open" in text and "battleground ui" in text and "mlflow ui" in text


    # The checkout test is checked every simulated day, so it stops the day its plan is met instead of
    # overshooting to the end of the fortnight; both experiments live on the simulated calendar.
    target = checkout.end_conditions.target_sample_size
    assert target is not None
    users = [int(n) for n in re.findall(r"(?:control|green_button)=(\d+)", checkout.stop_reason or "")]
    per_day_per_arm = DemoSizes.fast().users_per_day / 2
    assert len(users) == 2 and min(users) >= target and max(users) < target + 1.5 * per_day_per_arm, users
    for exp in (checkout, model_ab):
        assert exp.started_at == START
        assert exp.stopped_at is not None and START < exp.stopped_at <= START + dt.timedelta(days=DAYS)
    assert checkout.stopped_at < START + dt.timedelta(days=DAYS)  # before the simulation ran out

    # No library warning or registry chatter reaches the output.
    everything = text + captured.out + captured.err
    for noise in ("Successfully registered model", "Created version", "Warning", "warnings.warn"):
        assert noise not in everything, noise
