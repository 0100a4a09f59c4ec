"""The churn pipelines on Kedro: ``battleground pipeline list`` / ``run -p NAME [--env game2_env]``.

Conf (``conf/base``, ``conf/game2_env``) ships inside the package; data goes under
``<BATTLEGROUND_HOME>/pipelines/<env>/``. Names load lazily so importing this does not import Kedro.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CONF_DIR": "battleground.pipelines.registry", "ENVIRONMENTS": "battleground.pipelines.registry",
    "PIPELINE_NAMES": "battleground.pipelines.registry", "PipelineRun": "battleground.pipelines.registry",
    "register_pipelines": "battleground.pipelines.registry", "run_pipeline": "battleground.pipelines.registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'battleground.pipelines' has no attribute {name!r}")
