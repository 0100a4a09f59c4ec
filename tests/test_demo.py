"""`battleground demo` end to end, at the fast sizes: every stage runs and leaves what it promises."""

from __future__ import annotations

import io
import math
from pathlib import Path

from rich.console import Console

from battleground.demo import run_demo
from battleground.experiment.register import Registry
from battleground.settings import Settings


def test_demo_runs_every_part(settings: Settings) -> None:
    out = io.StringIO()
    summary = run_demo(settings, fast=True, console=Console(file=out, width=140))
    text = out.getvalue()

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
