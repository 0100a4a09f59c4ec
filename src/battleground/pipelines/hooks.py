"""Kedro hooks for ``kedro run`` in a project made by ``battleground pipeline kedro-project``.

:class:`EnvironmentGuard` applies the rule ``battleground pipeline run`` applies (``*_game2`` twins
run only in ``game2_env``) before Kedro runs a single node, so both entry points refuse the same runs.
"""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl

from battleground.pipelines.registry import env_for

__all__ = ["EnvironmentGuard"]


class EnvironmentGuard:
    """Refuse ``kedro run -p <name>_game2`` outside ``game2_env`` (Kedro's default env is ``base``)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        env = run_params.get("env") or "base"
        for name in run_params.get("pipeline_names") or ["__default__"]:
            if name == "__default__":
                continue
            try:
                env_for(name, env)
            except ValueError as exc:
                from battleground.model.tracking import ConfigError

                raise ConfigError(f"kedro run -p {name} --env {env}: {exc}") from None
