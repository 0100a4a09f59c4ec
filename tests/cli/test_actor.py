"""The audit log names who acted from the CLI: ``--actor``, else $BATTLEGROUND_ACTOR, else the OS user."""

from __future__ import annotations

import getpass
from pathlib import Path

from typer.testing import CliRunner

from battleground.cli import app


def test_cli_actions_carry_their_actor(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from battleground.experiment.register import Registry
    from battleground.settings import Settings

    home = tmp_path / ".battleground"
    env = {"BATTLEGROUND_HOME": str(home), "BATTLEGROUND_DATABASE_URL": "", "BATTLEGROUND_ACTOR": ""}
    # no terminal, no $USER/$LOGNAME: the password database still names the OS user (os.getlogin fails here)
    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    run = CliRunner()
    steps = [
        (["experiment", "create", "acted", "--metric", "conv:proportion:buy", "--actor", "alice"], {}),
        (["experiment", "start", "acted"], {"BATTLEGROUND_ACTOR": "bob"}),
        (["experiment", "stop", "acted", "--reason", "done"], {}),
        (["experiment", "archive", "acted", "--actor", "carol"], {"BATTLEGROUND_ACTOR": "bob"}),
    ]
    for args, extra in steps:
        done = run.invoke(app, args, env={**env, **extra})
        assert done.exit_code == 0, done.output
    registry = Registry(Settings.from_env({"BATTLEGROUND_HOME": str(home)}).registry_url)
    actors = [(e.action, e.actor) for e in registry.audit_log("acted")]
    os_user = getpass.getuser()
    assert os_user and os_user != "unknown"
    assert actors == [("create", "alice"), ("start", "bob"), ("stop", os_user), ("archive", "carol")]
