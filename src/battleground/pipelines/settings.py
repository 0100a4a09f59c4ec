"""Kedro project settings: lets Kedro's own CLI (``kedro run``, ``kedro viz``) run the churn pipelines.

A folder made by ``battleground pipeline kedro-project DIR`` names ``battleground.pipelines`` as its
``package_name``; Kedro then reads this module and :mod:`battleground.pipelines.pipeline_registry`.
Configuration is the folder's own ``conf/`` (Kedro's default ``CONF_SOURCE``), loaded exactly as
``battleground pipeline run`` loads it.
"""

from __future__ import annotations

from typing import Any

from kedro.config import OmegaConfigLoader

from battleground.pipelines.registry import CONFIG_LOADER_ARGS as _ARGS
from battleground.settings import quiet_third_party_telemetry

quiet_third_party_telemetry()  # Kedro's, MLflow's (unless the user set the variables)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS: dict[str, Any] = dict(_ARGS)

from battleground.pipelines.hooks import EnvironmentGuard  # noqa: E402 - after the telemetry switch

HOOKS = (EnvironmentGuard(),)
