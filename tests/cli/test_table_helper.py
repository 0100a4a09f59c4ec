"""The one table helper: a Rich table when it fits, one block per row when it does not, JSON and CSV of
the raw values; cells are never cut and user text is never read as markup."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from rich.console import Console

from battleground.cli._table import Column, Table, print_tables

RECORDS = [
    {"name": "[bold]not markup[/]", "users": 1234567, "p": 0.000123456, "lift": float("nan")},
    {"name": "treatment-with-a-long-name", "users": 7, "p": 1.0, "lift": 0.0123456789},
]
COLUMNS = [Column.of("name", key=True), Column.of("users", fmt="{:,}", justify="right"),
           Column.of("p", fmt="{:.3g}", justify="right"),
           Column("lift", lambda r: "—" if math.isnan(r["lift"]) else f"{r['lift']:+.4%}", justify="right")]


def _rich(width: int) -> str:
    out = io.StringIO()
    print_tables([Table("rows", "a title", COLUMNS, RECORDS)], "table",
                 console=Console(file=out, width=width, color_system=None))
    return out.getvalue()


@pytest.mark.parametrize("width", [20, 40, 200])
def test_every_cell_whole_at_any_width(width: int) -> None:
    text = _rich(width)
    for cell in ("[bold]not markup[/]", "treatment-with-a-long-name", "1,234,567", "0.000123", "+1.2346%", "—"):
        assert cell in text, (width, cell)
    assert "…" not in text
    stacked = "┃" not in text
    assert stacked == (width < 60)
    if stacked:  # one block per row, headed by its key columns
        assert "• [bold]not markup[/]" in text and "    users  1,234,567" in text


def test_json_and_csv_carry_raw_values(capsys: pytest.CaptureFixture[str]) -> None:
    tables = [Table("rows", "t", COLUMNS, RECORDS)]
    print_tables(tables, "json")
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"name": "[bold]not markup[/]", "users": 1234567, "p": 0.000123456, "lift": None}
    assert rows[1]["lift"] == 0.0123456789
    print_tables(tables, "csv")
    parsed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert parsed[0]["users"] == "1234567" and float(parsed[1]["lift"]) == 0.0123456789
    print_tables([*tables, Table("more", "m", COLUMNS[:1], [{"name": "x"}])], "json", extra={"id": 3})
    assert list(json.loads(capsys.readouterr().out)) == ["id", "rows", "more"]
