"""Every error battleground raises on purpose shares one base, one subclass per part."""

import importlib

import pytest

from battleground import errors

ERRORS = [
    ("battleground.stats", "StatsInputError", errors.StatsError, ValueError),
    ("battleground.experiment._records", "RegistryError", errors.ExperimentError, ValueError),
    ("battleground.experiment._records", "ExperimentNotFoundError", errors.ExperimentError, LookupError),
    ("battleground.experiment.events", "EventValidationError", errors.ExperimentError, ValueError),
    ("battleground.storage.events", "StoreUnavailableError", errors.StorageError, RuntimeError),
    ("battleground.storage._filelock", "StoreLockedError", errors.StorageError, RuntimeError),
    ("battleground.model.tracking", "ConfigError", errors.ModelError, ValueError),
    ("battleground.model.tracking", "ChampionThresholdError", errors.ModelError, RuntimeError),
    ("battleground.ope._validation", "OPEInputError", errors.OPEError, ValueError),
    ("battleground.bandit.simulator", "SimulatorInputError", errors.BanditError, ValueError),
    ("battleground.bandit._base", "PolicyInputError", errors.BanditError, ValueError),
    ("battleground.bandit._config", "ConfigError", errors.BanditError, ValueError),
    ("battleground.bandit.workflow", "MissingArtifactError", errors.BanditError, LookupError),
    ("battleground.incremental._solver", "OptimizationError", errors.IncrementalError, RuntimeError),
    ("battleground.incremental._records", "UnknownFeatureError", errors.IncrementalError, LookupError),
    ("battleground.web._api", "BatchError", errors.WebError, ValueError),
    ("battleground.client", "RequestRefusedError", errors.ClientError, ValueError),
    ("battleground.client", "DeliveryError", errors.ClientError, RuntimeError),
]


@pytest.mark.parametrize(("module", "name", "part", "builtin"), ERRORS)
def test_error_has_the_part_base_and_keeps_its_builtin(module, name, part, builtin):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, part)
    assert issubclass(cls, errors.BattlegroundError)
    assert issubclass(cls, builtin)
