"""Kedro's project pipeline registry (``kedro run -p NAME``): the same pipelines as
``battleground pipeline run``."""

from __future__ import annotations

from battleground.pipelines.registry import register_pipelines

__all__ = ["register_pipelines"]
