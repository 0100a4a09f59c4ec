"""Event input: a batch from a DataFrame, an Arrow table, a file, records or columns, as an Arrow table.

Nothing is validated here except that the input can be read; a value of the wrong kind names its row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground._contract import ContractError
from battleground.errors import ExperimentError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "OPTIONAL", "REQUIRED", "EventText", "EventValidationError", "LineMap", "RejectedRow", "read_events",
    "read_events_located",
]

REQUIRED = ("event_id", "experiment", "variant", "user_id", "event_type", "timestamp")
OPTIONAL = ("value", "covariate")
_ALIASES = {"experiment_id": "experiment", "ts": "timestamp"}


@dataclass(frozen=True)
class RejectedRow:
    """A well-formed row that an experiment's rules refused (a time after its stop or outside its
    window, a variant it lacks); see :func:`~battleground.experiment.events.ingest`'s ``partial``.

    Attributes:
        row: 0-based position in the batch.
        field: the offending column.
        reason: why, naming the value and the rule.
        event_id: the row's event id (to re-send it or drop it).
        line: the row's line in the CSV or JSON-lines file it was read from (1-based), when it was.
    """

    row: int
    field: str
    reason: str
    event_id: str
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "line": self.line, "field": self.field, "event_id": self.event_id,
                "reason": self.reason}


class EventValidationError(ExperimentError, ContractError):
    """A batch of events was rejected (it breaks the input contract of :mod:`battleground._contract` or
    the registry's rules); nothing of it was written.

    Attributes:
        row: 0-based position of the first offending row in the batch (``None`` for batch-level
            problems such as a missing column).
        field: the offending column.
        line: the physical line of that row in the file it was read from (1-based; a CSV file's header
            and blank lines count), when the batch came from a CSV or JSON-lines file.
        source: that file's name (not its folder).
        detail: the message without the row, line and field.
        rejected: when well-formed rows were refused by the experiments' rules (a time after the stop),
            every such row and why; ``ingest(..., partial=True)`` stores the others.
    """

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None,
                 line: int | None = None, source: str | None = None,
                 rejected: tuple[RejectedRow, ...] = ()) -> None:
        if line is not None:
            where = f"line {line} of {source} " + (f"(row {row}), " if row is not None else "")
        else:
            where = f"row {row}, " if row is not None else ""
        super().__init__(f"{where}field '{field}': {message}" if field else f"{where}{message}")
        self.row = row
        self.field = field
        self.line = line
        self.source = source
        self.detail = message
        self.rejected = rejected
        self._groups: tuple[str, ...] = ()
        self._total = 0

    @classmethod
    def refused(cls, rejected: tuple[RejectedRow, ...], groups: tuple[str, ...], total: int
                ) -> EventValidationError:
        """The all-or-nothing error of a batch some of whose well-formed rows the experiments' rules
        refuse (``groups[i]``: why row ``rejected[i]`` was, without its value): the first row's reason
        and, when there are more, how many, which and why."""
        first = rejected[0]
        message = first.reason
        if len(rejected) > 1:
            by_group: dict[str, list[RejectedRow]] = {}
            for r, group in zip(rejected, groups, strict=True):
                by_group.setdefault(group, []).append(r)
            parts = []
            for why, rows in by_group.items():
                lines = all(r.line is not None for r in rows)
                where = "line" if lines else "row"
                numbers = [str(r.line if lines else r.row) for r in rows[:10]]
                parts.append(f"{len(rows)} {why} ({where}{'s' if len(rows) > 1 else ''} {', '.join(numbers)}"
                             f"{', …' if len(rows) > 10 else ''})")
            message += f"; in all {len(rejected)} of the batch's {total} rows are refused: {'; '.join(parts)}"
        message += (f"; the batch is refused whole: pass partial=True (CLI --partial, API \"partial\": true) to store "
                    f"the other {total - len(rejected)} rows and get the refused ones back")
        exc = cls(message, row=first.row, field=first.field, rejected=rejected)
        exc._groups, exc._total = groups, total
        return exc

    def at_line(self, line: int, source: str, rejected: tuple[RejectedRow, ...] | None = None
                ) -> EventValidationError:
        """The same error, placed at a line of a file (``rejected``: its refused rows, with their lines)."""
        if rejected is not None and self._groups:
            placed = EventValidationError.refused(rejected, self._groups, self._total)
            return EventValidationError(placed.detail, row=self.row, field=self.field, line=line, source=source,
                                        rejected=rejected)
        return EventValidationError(self.detail, row=self.row, field=self.field, line=line, source=source,
                                    rejected=self.rejected if rejected is None else rejected)


def _kind(value: Any) -> str:
    """A coarse type name of one Python value, for messages about mixed columns."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    return type(value).__name__


_TEXT_FIELDS = frozenset({"event_id", "experiment", "experiment_id", "variant", "user_id", "event_type"})


def _array(name: str, values: Sequence[Any]) -> Any:
    """An Arrow array of one column of Python values; a value of the wrong kind names its row.

    Text columns may mix strings and integers (integers are ids written as their decimal text).
    """
    import pyarrow as pa

    if name in _TEXT_FIELDS:
        for i, v in enumerate(values):
            if v is not None and (isinstance(v, bool) or not isinstance(v, str | int)):
                raise EventValidationError(f"{v!r} is a {_kind(v)}; this column holds text or integers",
                                           row=i, field=name)
            if isinstance(v, int) and abs(v) >= 2**63:
                raise EventValidationError(f"the integer {v} does not fit in 64 bits; send a longer id as text",
                                           row=i, field=name)
            if isinstance(v, str):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise EventValidationError(
                        "is not valid Unicode text (a lone surrogate); send UTF-8 text", row=i, field=name
                    ) from None
        if any(isinstance(v, int) for v in values) and any(isinstance(v, str) for v in values):
            values = [str(v) if isinstance(v, int) else v for v in values]
    elif name in OPTIONAL:
        for i, v in enumerate(values):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise EventValidationError(f"{v!r} is a {_kind(v)}; this column holds numbers", row=i, field=name)
    try:
        return pa.array(values, from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        kinds = [_kind(v) for v in values if v is not None]
        # The most common kind is the column's; a tie goes to the kind seen first.
        expected = max(dict.fromkeys(kinds), key=kinds.count) if kinds else "?"
        for i, v in enumerate(values):
            if v is not None and _kind(v) != expected:
                raise EventValidationError(
                    f"{v!r} is a {_kind(v)} but the column holds {expected} values", row=i, field=name
                ) from None
        raise EventValidationError(f"cannot be read: {exc}", field=name) from None


def _from_pandas(frame: pd.DataFrame) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    names = [str(c) for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise EventValidationError("given twice; keep one", field=repeated[0])
    arrays = []
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, np.dtype) and col.dtype.kind == "f":
            # Keep NaN as NaN (pandas' own conversion would silently turn it into "no value").
            arrays.append(pa.array(col.to_numpy(), from_pandas=False))
            continue
        if col.dtype == object and str(name) in OPTIONAL:
            # In an object column pandas' converter would also read NaN as "no value": only None and
            # pd.NA mean that; a NaN is rejected like everywhere else.
            nan = np.flatnonzero([isinstance(v, float) and v != v for v in col.tolist()])
            if nan.size:
                raise EventValidationError(
                    "is nan; numbers must be finite (leave it empty, None or pd.NA, when there is no value)",
                    row=int(nan[0]), field=str(name),
                )
        try:
            arrays.append(pa.Array.from_pandas(col))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            values = col.tolist()
            arrays.append(_array(str(name), [None if _is_missing(v) else v for v in values]))
    return pa.Table.from_arrays(arrays, names=names)


def _is_missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(value is None or (not isinstance(value, str | bytes) and pd.isna(value)))
    except (TypeError, ValueError):
        return False


def _from_columns(columns: Mapping[str, Sequence[Any]]) -> pa.Table:
    import pyarrow as pa

    arrays, names = [], []
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise EventValidationError(f"the columns have different lengths {sorted(lengths)}")
    for name, values in columns.items():
        names.append(str(name))
        if isinstance(values, pa.Array | pa.ChunkedArray):
            arrays.append(values)
        elif hasattr(values, "dtype") and getattr(values, "ndim", 1) == 1 and not isinstance(values, list):
            import pandas as pd

            frame = _from_pandas(pd.DataFrame({str(name): values}))
            arrays.append(frame.column(0))
        else:
            arrays.append(_array(str(name), list(values)))
    return pa.Table.from_arrays(arrays, names=names)


def _from_records(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    names: dict[str, None] = {}
    for r in records:
        for k in r:
            names.setdefault(str(k), None)
    return _from_columns({n: [r.get(n) for r in records] for n in names})


def _read_csv(source: Path | bytes, name: str | None = None) -> pa.Table:
    """A CSV file (a path, or its bytes: an HTTP body) as an Arrow table of text and float64 columns."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    name = name or (source.name if isinstance(source, Path) else "the CSV text")
    # Text stays text (ids like "007" must not become 7); only an empty cell is "no value", so that a
    # literal NaN is read as NaN and rejected rather than silently dropped. Numbers are read as text too
    # and converted below: the reader's own inference would turn a column with one bad cell into a text
    # column, and the error would then blame the column's first row instead of the bad one.
    text = ("event_id", "experiment", "experiment_id", "variant", "user_id", "event_type", "timestamp", "ts")
    opts = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in (*text, *OPTIONAL)}, null_values=[""], strings_can_be_null=True,
    )
    try:
        table = pacsv.read_csv(source if isinstance(source, Path) else pa.BufferReader(source),
                               convert_options=opts)
    except pa.ArrowInvalid as exc:
        detail = str(exc)
        if "straddling" in detail:
            reason = "a row is longer than the reader's block (fields hold at most 200 characters)"
        elif "UTF8" in detail or "UTF-8" in detail:
            reason = "it is not UTF-8 text; save it as UTF-8"
        elif "Empty CSV file" in detail:
            reason = "it is empty; the first line names the columns"
        else:
            reason = detail.splitlines()[0][:200]
        raise EventValidationError(f"{name} is not a readable CSV file: {reason}") from None
    for col_name in OPTIONAL:
        if col_name in table.column_names:
            i = table.column_names.index(col_name)
            table = table.set_column(i, col_name, _csv_numbers(table.column(i), col_name))
    return table


def _csv_numbers(col: Any, name: str) -> Any:
    """A CSV column of number text as float64; the first cell that is not a number names its row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    try:
        return pc.cast(col, pa.float64())
    except pa.ArrowInvalid:
        pass
    # The first bad cell by bisection on prefixes: a few vectorised casts, not a Python loop over rows.
    lo, hi = 0, len(col)  # the prefix [0, lo) converts; [0, hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(col.slice(0, mid), pa.float64())
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    bad = col[hi - 1].as_py()
    raise EventValidationError(f"{_short(bad)} is not a number (like 12.5 or -3; leave the cell empty for no value)",
                               row=hi - 1, field=name)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}…({len(str(value))} characters)"


def _csv_lines(source: Path | bytes, rows: Sequence[int]) -> list[int | None]:
    """The physical lines (1-based) of data rows (0-based) of a CSV file: the reader skips empty lines,
    so count the non-empty ones, the header first. Only called on an error or for refused rows, so the
    happy path pays nothing for it."""
    import io

    wanted = set(rows)
    found: dict[int, int] = {}
    seen = -1  # non-empty lines after the header's
    with source.open("rb") if isinstance(source, Path) else io.BytesIO(source) as f:
        for number, raw in enumerate(f, start=1):
            if raw.strip(b"\r\n"):
                if seen in wanted:
                    found[seen] = number
                    if len(found) == len(wanted):
                        break
                seen += 1
    return [found.get(r) for r in rows]


def _read_json_lines(path: Path, *, lines: bool) -> tuple[pa.Table, list[int] | None]:
    try:
        records, numbers = _json_records(path, lines=lines)
    except UnicodeDecodeError:
        raise EventValidationError(f"{path.name} is not UTF-8 text; save it as UTF-8") from None
    return _from_records(records), numbers


def _json_records(source: Path | bytes, *, lines: bool, name: str | None = None
                  ) -> tuple[list[Any], list[int] | None]:
    """The records of a JSON(-lines) file (a path, or its bytes) and, for JSON lines, the line each
    record was on."""
    import io
    import json

    name = name or (source.name if isinstance(source, Path) else "the JSON text")
    records: list[Any] = []
    numbers: list[int] | None = None
    # The same line splitting for a file and for bytes (universal newlines).
    with (source.open(encoding="utf-8") if isinstance(source, Path)
          else io.TextIOWrapper(io.BytesIO(source), encoding="utf-8")) as f:
        if lines:
            numbers = []
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise EventValidationError(f"line {number} of {name} is not JSON: {exc}") from None
                    numbers.append(number)
        else:
            try:
                loaded = json.load(f)
            except json.JSONDecodeError as exc:
                raise EventValidationError(f"{name} is not JSON: {exc}") from None
            records = loaded if isinstance(loaded, list) else [loaded]
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            line = f"line {numbers[i]} of " if numbers else ""
            raise EventValidationError(f"{line}{name} must hold one JSON object per event, got {_short(r)}")
    return records, numbers


@dataclass(frozen=True)
class EventText:
    """A CSV or JSON-lines document held in memory (an HTTP body), read like a file of that type: an
    error of a row names the row's line of the document.

    Attributes:
        body: the document's bytes (UTF-8).
        format: ``"csv"`` (the first line names the columns) or ``"jsonl"`` (one JSON object a line).
        name: what messages call the document.

    Example:
        >>> from battleground.experiment._event_input import EventText, read_events_located
        >>> table, lines = read_events_located(EventText(b"event_id,variant\\ne1,control\\n", "csv"))
        >>> table.num_rows, lines.line(0)
        (1, 2)
    """

    body: bytes
    format: str
    name: str = "the request body"

    def __post_init__(self) -> None:
        if self.format not in ("csv", "jsonl"):
            raise EventValidationError(f"format must be 'csv' or 'jsonl', got {self.format!r}")


class LineMap:
    """Where each row of a batch read from a CSV or JSON-lines file was in the file (see
    :func:`read_events_located`)."""

    def __init__(self, source: Path | bytes, numbers: list[int] | None = None, name: str | None = None) -> None:
        self.source = source
        self.numbers = numbers
        self.name = name or (source.name if isinstance(source, Path) else "the request body")

    def line(self, row: int) -> int | None:
        """The physical line (1-based) of a row (0-based), or ``None`` when it cannot be told."""
        return self.lines([row])[0]

    def lines(self, rows: Sequence[int]) -> list[int | None]:
        """:meth:`line` of several rows, from one pass over a CSV file."""
        if self.numbers is not None:
            numbers = self.numbers
            return [numbers[r] if 0 <= r < len(numbers) else None for r in rows]
        return _csv_lines(self.source, rows)

    def placed(self, rejected: tuple[RejectedRow, ...]) -> tuple[RejectedRow, ...]:
        """``rejected`` with each row's line."""
        import dataclasses

        found = self.lines([r.row for r in rejected])
        return tuple(dataclasses.replace(r, line=n) for r, n in zip(rejected, found, strict=True))

    def locate(self, exc: EventValidationError) -> EventValidationError:
        """``exc`` placed at its row's line of the file (unchanged if it names no row)."""
        if exc.row is None or exc.line is not None:
            return exc
        line = self.line(exc.row)
        return exc if line is None else exc.at_line(line, self.name, self.placed(exc.rejected))


def _read_text(text: EventText) -> tuple[pa.Table, LineMap]:
    lines = LineMap(text.body, name=text.name)
    try:
        if text.format == "csv":
            return _read_csv(text.body, text.name), lines
        try:
            records, lines.numbers = _json_records(text.body, lines=True, name=text.name)
        except UnicodeDecodeError:
            raise EventValidationError(f"{text.name} is not UTF-8 text; send UTF-8") from None
        return _from_records(records), lines
    except EventValidationError as exc:
        raise lines.locate(exc) from None


def read_events_located(source: Any) -> tuple[pa.Table, LineMap | None]:
    """:func:`read_events`, and for a CSV or JSON-lines file (or :class:`EventText`) where its rows were;
    an error of a row read from such a file names the row's line."""
    if isinstance(source, EventText):
        return _read_text(source)
    if isinstance(source, str | Path):
        path = Path(source)
        suffix = path.suffix.lower()
        if path.is_file() and suffix in (".csv", ".jsonl", ".ndjson"):
            lines = LineMap(path)
            try:
                if suffix == ".csv":
                    return _read_csv(path), lines
                try:
                    records, lines.numbers = _json_records(path, lines=True)
                except UnicodeDecodeError:
                    raise EventValidationError(f"{path.name} is not UTF-8 text; save it as UTF-8") from None
                return _from_records(records), lines
            except EventValidationError as exc:
                raise lines.locate(exc) from None
    return read_events(source), None


def read_events(source: Any) -> pa.Table:
    """An Arrow table from a DataFrame, an Arrow table, a Parquet/CSV/JSON(-lines) file, a list of dicts
    or a dict of columns. Nothing is validated here except that the input can be read."""
    import sys

    import pyarrow as pa

    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    pandas = sys.modules.get("pandas")  # a DataFrame means pandas is imported already
    if pandas is not None and isinstance(source, pandas.DataFrame):
        return _from_pandas(source)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise EventValidationError(f"no such file {str(path)!r}")
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            try:
                return pq.read_table(path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise EventValidationError(f"{path} is not a readable Parquet file: {exc}") from None
        if suffix == ".csv":
            return _read_csv(path)
        if suffix in (".json", ".jsonl", ".ndjson"):
            return _read_json_lines(path, lines=suffix != ".json")[0]
        raise EventValidationError(
            f"unknown file type {suffix!r} of {str(path)!r}; use .parquet, .csv, .json or .jsonl"
        )
    if isinstance(source, Mapping):
        return _from_columns(source)
    if isinstance(source, Sequence):
        if not all(isinstance(r, Mapping) for r in source):
            raise EventValidationError("a list of events must hold one dict per event")
        return _from_records(source)
    raise EventValidationError(
        f"cannot read events from {type(source).__name__}; pass a DataFrame, an Arrow table, a file "
        "path, a list of dicts or a dict of columns"
    )
