"""The Kedro dataset of the four raw churn tables: one folder of CSV or Parquet files.

``raw_tables`` in ``catalog.yml`` names the folder (``filepath``) and the format (``file_format``:
``parquet`` or ``csv``). ``sub_churn_raw`` (the data generator) writes ``characters``, ``currency``,
``subscriptions`` and ``sub_miss`` there; every other pipeline reads them back, so pointing
``filepath`` at a folder of your own tables (same columns) runs the pipelines on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset

from battleground.pipelines.registry import PipelineError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ChurnTablesDataset"]

FORMATS = ("parquet", "csv")


class ChurnTablesDataset(AbstractDataset[dict[str, "pd.DataFrame"], dict[str, "pd.DataFrame"]]):
    """``{table name: DataFrame}`` stored as ``<filepath>/<name>.<file_format>``."""

    def __init__(self, filepath: str, file_format: str = "parquet", metadata: dict[str, Any] | None = None) -> None:
        if file_format not in FORMATS:
            raise PipelineError(f"raw_tables file_format={file_format!r} is unknown; valid: {list(FORMATS)}")
        self._folder = Path(filepath)
        self._format = file_format
        self.metadata = metadata

    def load(self) -> dict[str, pd.DataFrame]:
        from battleground.datasets import read_churn_tables

        return read_churn_tables(self._folder, fmt=self._format)  # type: ignore[arg-type]

    def save(self, data: dict[str, pd.DataFrame]) -> None:
        from battleground.datasets import write_churn_tables

        write_churn_tables(data, self._folder, fmt=self._format)  # type: ignore[arg-type]

    def _exists(self) -> bool:
        from battleground.datasets._churn import TABLES

        return all((self._folder / f"{name}.{self._format}").exists() for name in TABLES)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._folder), "file_format": self._format}
