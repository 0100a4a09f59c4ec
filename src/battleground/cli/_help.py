"""Help that reads at any width: command summaries in full (wrapped, never cut with "..."), value
placeholders in Click's plain words (``TEXT``, ``INTEGER``, ``PATH``) instead of Python types such as
``<list[str]>``, and docstring markup shown as plain words.

Every group of the CLI uses :class:`HelpGroup`; it tidies each command as it is looked up, so new
commands and options get the same help without any per-option setting.
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperArgument, TyperGroup, TyperOption

__all__ = ["HelpGroup", "plain_text", "summary", "tidy"]

_PLAIN = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN", "path": "PATH",
          "datetime": "DATETIME"}
_LIST = re.compile(r"list\[(.*)\]")
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :func:`~a.b` -> a.b
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str | None) -> str | None:
    """Docstring markup (``literal``, :class:`name`) as the plain words a terminal should show."""
    if not text:
        return text
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


def summary(command: Any) -> str:
    """A command's one-line summary: its ``short_help``, else the first paragraph of its help."""
    if command.short_help:
        return str(command.short_help)
    first = (command.help or "").split("\n\n")[0]
    return " ".join(w for w in first.split() if w != "\b")


def _placeholder(param: Any, ctx: Any) -> str:
    label = str(param.display_type(ctx)).strip("<>")
    if match := _LIST.fullmatch(label):
        label = match.group(1)
    if "|" in label:  # a choice: list the choices, as Click does
        return f"[{label}]"
    return _PLAIN.get(label.lower(), label.upper())


def tidy(command: Any, ctx: Any) -> None:
    """Plain help text for ``command`` and its parameters, and a plain placeholder for each of them
    (once; explicit placeholders stay)."""
    command.help = plain_text(command.help)
    command.short_help = plain_text(command.short_help)
    for param in getattr(command, "params", ()):
        if getattr(param, "help", None):
            param.help = plain_text(param.help)
        if param.metavar is not None:
            continue
        if isinstance(param, TyperArgument):
            param.metavar = str(param.name).upper()
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]  # the name says it
        elif isinstance(param, TyperOption) and not (param.is_flag or param.count):
            param.metavar = _placeholder(param, ctx)


class HelpGroup(TyperGroup):
    """A Typer group whose help lists full command summaries and plain placeholders."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            tidy(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        tidy(self, ctx)
        super().format_help(ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, summary(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
