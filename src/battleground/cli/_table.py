"""One way to print a table: for people a Rich table that fits the terminal (stacked when it does not),
for scripts JSON or CSV of the raw values.

A command builds :class:`Table` objects (raw records plus the columns people see) and hands them to
:func:`print_tables` with the format the user chose (``--json`` / ``--csv``). Nothing is ever cut: a
table wider than the terminal (80 columns, or a pipe) is printed as one block per row instead.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import typer

__all__ = ["Column", "OutputFormat", "Table", "csv_option", "json_option", "output_format", "print_tables"]

OutputFormat = Literal["table", "json", "csv"]

json_option = typer.Option(False, "--json", help="Print the raw values as JSON instead of a table.")
csv_option = typer.Option(False, "--csv", help="Print the raw values as CSV instead of a table.")

# Rich's default box with padding (0, 1): one border per column plus one, and a space each side.
_BORDER_PER_COLUMN = 3


def output_format(as_json: bool, as_csv: bool) -> OutputFormat:
    """The format of ``--json``/``--csv`` (at most one of them)."""
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="--json/--csv")
    return "json" if as_json else "csv" if as_csv else "table"


@dataclass(frozen=True)
class Column:
    """A column people see: its heading and how a record becomes the cell's text.

    ``key`` columns name the row (they head each block in the stacked layout); ``markup`` cells may
    carry Rich markup (our own styling only, never user data).
    """

    header: str
    cell: Callable[[Mapping[str, Any]], str]
    justify: Literal["left", "right"] = "left"
    key: bool = False
    markup: bool = False

    @classmethod
    def of(cls, header: str, field_name: str | None = None, fmt: str = "{}", **kwargs: Any) -> Column:
        """A column showing one field with a format string (``None`` shows as an empty cell)."""
        name = field_name or header

        def cell(record: Mapping[str, Any]) -> str:
            value = record.get(name)
            return "" if value is None else fmt.format(value)

        return cls(header, cell, **kwargs)


@dataclass(frozen=True)
class Table:
    """Raw ``records`` (what JSON and CSV print) and the ``columns`` people see."""

    name: str
    title: str
    columns: Sequence[Column]
    records: Sequence[Mapping[str, Any]]


def print_tables(tables: Sequence[Table], fmt: OutputFormat, *, console: Any = None,
                 extra: Mapping[str, Any] | None = None) -> None:
    """Print ``tables`` as Rich tables, JSON or CSV.

    JSON: one table without ``extra`` prints the list of its records; otherwise an object with one list
    per table name after ``extra``. CSV: the records of each table (all their fields); several tables are
    separated by a blank line and each preceded by a ``# name`` line.
    """
    if fmt == "json":
        payload: Any
        if len(tables) == 1 and not extra:
            payload = [dict(r) for r in tables[0].records]
        else:
            payload = {**(extra or {}), **{t.name: [dict(r) for r in t.records] for t in tables}}
        typer.echo(json.dumps(_plain(payload), ensure_ascii=False, indent=2))
        return
    if fmt == "csv":
        for i, table in enumerate(tables):
            if len(tables) > 1:
                typer.echo(("\n" if i else "") + f"# {table.name}")
            typer.echo(_csv(table.records), nl=False)
        return
    if console is None:
        from battleground.cli._common import console as shared

        console = shared
    for table in tables:
        _print_rich(console, table)


def _plain(value: Any) -> Any:
    """JSON values: NaN and ±inf become ``null``, datetimes ISO strings, numpy scalars Python ones."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return _plain(value.item())
    return str(value)


def _csv(records: Sequence[Mapping[str, Any]]) -> str:
    fields: dict[str, None] = {}
    for r in records:
        fields.update(dict.fromkeys(r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for r in records:
        plain = _plain(dict(r))
        writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
                         for k, v in plain.items()})
    return buffer.getvalue()


def _print_rich(console: Any, table: Table) -> None:
    from rich.markup import escape
    from rich.table import Table as RichTable
    from rich.text import Text

    def text(column: Column, record: Mapping[str, Any]) -> Text:
        cell = column.cell(record)
        return Text.from_markup(cell) if column.markup else Text(cell)

    rows = [[text(c, r) for c in table.columns] for r in table.records]
    widths = [max([len(c.header), *(row[i].cell_len for row in rows)]) for i, c in enumerate(table.columns)]
    needed = sum(widths) + _BORDER_PER_COLUMN * len(widths) + 1
    if needed <= console.width:
        out = RichTable(title=escape(table.title))
        for c in table.columns:
            out.add_column(c.header, justify=c.justify, no_wrap=True)
        for row in rows:
            out.add_row(*row)
        console.print(out)
        return
    # Too wide for this terminal: one block per row, every cell whole (the terminal wraps long lines).
    console.print(Text(table.title, style="italic"), soft_wrap=True)
    labels = [c for c in table.columns if not c.key]
    pad = max((len(c.header) for c in labels), default=0)
    for row in rows:
        head = Text(" · ").join(cell for c, cell in zip(table.columns, row, strict=True) if c.key and cell.plain)
        head.stylize("bold")
        console.print(Text("• ") + head, soft_wrap=True)
        for c, cell in zip(table.columns, row, strict=True):
            if not c.key and cell.plain:
                console.print(Text(f"    {c.header:<{pad}}  ") + cell, soft_wrap=True)
