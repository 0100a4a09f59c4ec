"""Help texts are complete at 80 columns: no cut short help, no Python type names, no doc markup;
``--version`` and shell completion exist (issue 13 §4)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import typer.main
from typer.testing import CliRunner

import battleground
from battleground.cli import app

_TYPE_NAMES = re.compile(r"<(?:str|int|float|bool|path|Path|datetime|list\[[^\]]*\])>")
_MARKUP = ("``", ":class:", ":func:", ":meth:", ":data:", ">>>")


def _subcommands(cmd: Any) -> list[tuple[str, Any]]:
    """A group's commands (typer vendors its own click, so this is duck-typed)."""
    commands = getattr(cmd, "commands", None) or {}
    return [(name, sub) for name, sub in commands.items() if not sub.hidden]


def _commands() -> Iterator[tuple[list[str], Any]]:
    def walk(cmd: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, cmd
        for name, sub in _subcommands(cmd):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def _help(path: list[str]) -> str:
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert res.exit_code == 0, res.output
    return res.output


def _flat(text: str) -> str:
    return " ".join(text.split())


def _first_paragraph(cmd: Any) -> str:
    return _flat((cmd.help or "").split("\n\n")[0].replace("``", ""))


def test_every_help_is_complete_and_plain() -> None:
    commands = list(_commands())
    assert len(commands) > 40  # every group and command was visited
    problems = []
    for path, cmd in commands:
        text = _help(path)
        if found := _TYPE_NAMES.findall(text):
            problems.append((path, "type names", found))
        if found := [m for m in _MARKUP if m in text]:
            problems.append((path, "doc markup", found))
        if max(len(line) for line in text.splitlines()) > 80:
            problems.append((path, "wider than 80 columns", None))
        for name, sub in _subcommands(cmd):  # each subcommand's summary in full, never "..."-cut
            if _first_paragraph(sub) not in _flat(text):
                problems.append((path, "cut summary", name))
    assert problems == []


def test_version() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"battleground {battleground.__version__}"


def test_shell_completion_is_available() -> None:
    text = _help([])
    assert "--install-completion" in text and "--show-completion" in text
    # in a fresh process: the completion script must not depend on what earlier tests did in this one
    res = subprocess.run([sys.executable, "-m", "battleground", "--show-completion", "bash"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "SHELL": "/bin/bash"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "complete" in res.stdout and "battleground" in res.stdout.lower()
