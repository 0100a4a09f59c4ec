"""A/B experiments: registry, assignment, events, statistics, monitoring and reports.

The seed's modules are the public face (``battleground.experiment.register``, ``.assign``, ``.events``,
``.ab_test``, ``.monitoring``, ``.report``); the names below are re-exported lazily, so importing this
package costs nothing until one of them is used.

Example:
    >>> from battleground.experiment import ABTest
    >>> ABTest(metric="proportion", baseline=0.10, mde=0.10).get_sample_size().n_control_ceil  # +10 % relative
    14749
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ABTest": "ab_test",
    "Assigner": "assign",
    "EventValidationError": "events",
    "IngestResult": "events",
    "MakeReport": "report",
    "Monitor": "monitoring",
    "RegisterExperiment": "register",
    "Registry": "register",
    "assign_variants": "assign",
    "check_experiments": "monitoring",
    "cupac_covariate": "monitoring",
    "ingest": "events",
    "offline_aa": "monitoring",
    "open_event_store": "events",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
