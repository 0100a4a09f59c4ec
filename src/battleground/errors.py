"""One error hierarchy for the whole platform.

Every error battleground raises on purpose derives from :class:`BattlegroundError`, with one subclass
per part, so a caller (the CLI, the web app, a user's script) can catch "our" errors without hiding real
bugs. Concrete errors also keep the builtin they always were (``ValueError``, ``LookupError``, …), so
existing ``except ValueError`` code keeps working. Each message names the field, the value and the fix.

>>> from battleground.errors import BattlegroundError, StatsError
>>> from battleground.stats import StatsInputError
>>> issubclass(StatsInputError, StatsError) and issubclass(StatsInputError, BattlegroundError)
True
"""

from __future__ import annotations

__all__ = [
    "BanditError",
    "BattlegroundError",
    "ClientError",
    "ExperimentError",
    "IncrementalError",
    "ModelError",
    "OPEError",
    "SettingsError",
    "StatsError",
    "StorageError",
    "WebError",
]


class BattlegroundError(Exception):
    """Base of every error battleground raises on purpose."""


class SettingsError(BattlegroundError, ValueError):
    """A setting (environment variable, URL, path) is invalid."""


class StorageError(BattlegroundError):
    """The registry or event store cannot do what was asked."""


class ExperimentError(BattlegroundError):
    """Registry, assignment, event input or monitoring of experiments."""


class StatsError(BattlegroundError):
    """Statistics got inputs they cannot analyse."""


class ModelError(BattlegroundError):
    """Model lifecycle: data, training, tracking, champion, serving."""


class BanditError(BattlegroundError):
    """Bandit policies, the simulator and the bandit workflow."""


class OPEError(BattlegroundError):
    """Off-policy evaluation inputs."""


class IncrementalError(BattlegroundError):
    """Incremental learning: records, solvers, streams."""


class WebError(BattlegroundError):
    """Dashboard and JSON API inputs."""


class ClientError(BattlegroundError):
    """The HTTP client of the event API (:mod:`battleground.client`)."""
