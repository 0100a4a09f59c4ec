"""The CLI turns our errors (``BattlegroundError``) into one line and lets real bugs show a traceback;
messages say what a dry run would do (issue 12 §4, issue 13 §4)."""

from __future__ import annotations

import pytest
from tests.experiment.ab_scenario import build
from typer.testing import CliRunner

from battleground.cli import app
from battleground.experiment.register import Registry
from battleground.settings import Settings


def _invoke(settings: Settings, *args: str) -> object:
    return CliRunner().invoke(app, list(args), env={"BATTLEGROUND_HOME": str(settings.home), "COLUMNS": "200"})


def test_our_errors_are_one_line(settings: Settings) -> None:
    res = _invoke(settings, "experiment", "show", "no-such-experiment")
    assert res.exit_code == 1
    assert "Traceback" not in res.output and res.exception is not None and isinstance(res.exception, SystemExit)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no-such-experiment" in lines[0]


@pytest.mark.parametrize("bug", [RuntimeError("a bug, not a user error"), ValueError("also a bug"),
                                 KeyError("missing"), FileNotFoundError("not ours")])
def test_a_real_bug_shows_a_traceback(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                      bug: Exception) -> None:
    def broken(self: Registry, *args: object, **kwargs: object) -> object:
        raise bug

    monkeypatch.setattr(Registry, "list", broken)
    res = _invoke(settings, "experiment", "list")
    assert res.exception is bug  # not swallowed into "error: …" and exit 1
    assert "error:" not in res.output


@pytest.mark.parametrize("args", [("bandit", "train", "--agent", "nope"),
                                  ("incremental", "run", "/nonexistent", "--mode", "triple")])
def test_bad_cli_input_is_one_line_too(settings: Settings, args: tuple[str, ...]) -> None:
    """What the CLI itself rejects is reported like our errors, not raised as a builtin."""
    res = _invoke(settings, *args)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and args[-1] in lines[0]


def test_dry_run_says_would_record(settings: Settings) -> None:
    sc = build(settings, users=2000, drop_treatment=0.4, target_sample_size=10)
    before = len(sc.registry.audit_log(sc.id))
    dry = _invoke(settings, "experiment", "check", str(sc.id), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "SRM ALERT" in dry.output and "would record" in dry.output and "would stop" in dry.output
    assert "recorded in the audit log" not in dry.output
    assert len(sc.registry.audit_log(sc.id)) == before and sc.registry.get(sc.id).status == "running"
    real = _invoke(settings, "experiment", "check", str(sc.id))
    assert "recorded in the audit log" in real.output and "stopped" in real.output
    assert sc.registry.get(sc.id).status == "stopped"
