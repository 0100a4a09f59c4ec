"""Seeded synthetic data sets (generated in code, never downloaded).

``make_churn_tables`` builds the four game-subscription tables of the churn example;
``build_churn_features`` turns them into one feature row per character as of a cut-off date;
``tables_as_of`` cuts the tables back to what was known on a date (for batch prediction).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CHURN_VARIANTS", "build_churn_features", "make_churn_tables", "read_churn_tables", "tables_as_of",
    "write_churn_tables",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from battleground.datasets import _churn

        return getattr(_churn, name)
    raise AttributeError(f"module 'battleground.datasets' has no attribute {name!r}")
