"""The bandit views: battle and OPE summaries found under ``<home>/bandit``."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground.web._view_common import jsonable

if TYPE_CHECKING:
    from battleground.settings import Settings

__all__ = ["CSV_ROW_LIMIT", "BanditFile", "bandit_file_path", "bandit_files", "bandit_root", "read_csv_table"]

CSV_ROW_LIMIT = 500


@dataclass(frozen=True)
class BanditFile:
    """A summary found under ``<home>/bandit``: a CSV table, a JSON summary or an HTML report."""

    path: str  # relative to the bandit folder, with forward slashes
    kind: str  # "csv", "json" or "html"
    size: int
    modified: dt.datetime
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    total_rows: int = 0
    text: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "path": self.path, "kind": self.kind, "size": self.size, "modified": self.modified,
            "columns": self.columns, "rows": self.rows, "total_rows": self.total_rows,
            "text": self.text, "error": self.error,
        })


def bandit_root(settings: Settings) -> Path:
    return settings.home / "bandit"


def _walk(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and (
            path.suffix.lower() in (".csv", ".json") or path.name.lower() == "report.html"
        ):
            yield path


def read_csv_table(path: Path, limit: int = CSV_ROW_LIMIT) -> tuple[list[str], list[list[str]], int]:
    """Header, the first ``limit`` rows and the row count of a CSV file (numbers shortened)."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        rows: list[list[str]] = []
        total = 0
        for raw in reader:
            total += 1
            if len(rows) < limit:
                rows.append([_short_number(c) for c in raw])
    return header, rows, total


def _short_number(text: str) -> str:
    try:
        x = float(text)
    except ValueError:
        return text
    if text.strip().lstrip("+-").isdigit() or not math.isfinite(x):
        return text
    return f"{x:.6g}"


def bandit_files(settings: Settings, *, with_content: bool = True) -> list[BanditFile]:
    """Every ``*.csv``, ``*.json`` and ``report.html`` under ``<home>/bandit`` (recursively)."""
    root = bandit_root(settings)
    out = []
    for path in _walk(root):
        stat = path.stat()
        rel = path.relative_to(root).as_posix()
        kind = "html" if path.suffix.lower() == ".html" else path.suffix.lower().lstrip(".")
        modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
        info: dict[str, Any] = {"path": rel, "kind": kind, "size": stat.st_size, "modified": modified}
        if with_content:
            try:
                if kind == "csv":
                    columns, rows, total = read_csv_table(path)
                    info.update(columns=columns, rows=rows, total_rows=total)
                elif kind == "json":
                    data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
                    info["text"] = json.dumps(data, indent=2, ensure_ascii=False, default=str)[:20000]
            except (OSError, ValueError, csv.Error) as exc:
                # the error names the file by its place under <home>/bandit, never by its full path
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                info["error"] = f"could not read {rel}: {reason}"
        out.append(BanditFile(**info))
    return out


def bandit_file_path(settings: Settings, relative: str) -> Path | None:
    """The file ``relative`` names under ``<home>/bandit`` if it is one the page lists, else ``None``
    (no way out of the folder: ``..``, absolute paths and links are refused)."""
    root = bandit_root(settings).resolve()
    try:
        candidate = (root / relative).resolve()
    except (OSError, ValueError):
        return None
    if root not in candidate.parents or not candidate.is_file():
        return None
    if candidate.suffix.lower() not in (".csv", ".json") and candidate.name.lower() != "report.html":
        return None
    return candidate
