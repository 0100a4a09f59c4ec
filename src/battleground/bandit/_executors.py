"""Where sweep jobs run: local processes by default, a Ray cluster (or a local Ray) on request.

Both executors have one method, ``map(fn, items) -> list`` (results in the order of ``items``); ``fn``
must be a module-level function so that it pickles into another process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from battleground.errors import BanditError


class ExecutorError(BanditError, ValueError):
    """An unknown executor name or a bad worker count."""


class ExecutorUnavailableError(BanditError, RuntimeError):
    """The executor needs an optional extra that is not installed."""

__all__ = ["EXECUTORS", "Executor", "ExecutorError", "ExecutorUnavailableError", "LocalExecutor", "RayExecutor", "make_executor"]

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs independent jobs and returns their results in order."""

    name: str

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]: ...


def _check_workers(max_workers: int) -> int:
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ExecutorError(f"max_workers must be an integer >= 1, got {max_workers!r}")
    return max_workers


class LocalExecutor:
    """Parallel local processes (``concurrent.futures``, *spawn* start method: no forked state).

    With ``max_workers=1`` the jobs run one after the other in this process (no start-up cost).
    """

    name = "local"

    def __init__(self, max_workers: int = 2) -> None:
        self.max_workers = _check_workers(max_workers)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        items = list(items)
        if self.max_workers == 1 or len(items) <= 1:
            return [fn(item) for item in items]
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.max_workers, len(items)), mp_context=context) as pool:
            return list(pool.map(fn, items))


class RayExecutor:
    """Ray tasks, one per job. Connects to ``address`` (e.g. ``ray://head:10001`` or ``auto``) or, with
    none given, starts a local Ray with ``num_cpus`` CPUs and no dashboard (and stops it afterwards).

    Ray is an optional extra: ``pip install 'battleground[ray]'``.
    """

    name = "ray"

    def __init__(self, num_cpus: int = 2, address: str | None = None) -> None:
        self.num_cpus = _check_workers(num_cpus)
        self.address = address

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ExecutorUnavailableError(
                "--executor ray needs Ray, an optional extra: pip install 'battleground[ray]'"
            ) from exc
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.num_cpus, **kwargs)
            started = True
        try:
            remote = ray.remote(num_cpus=1)(fn)
            return list(ray.get([remote.remote(item) for item in items]))
        finally:
            if started:
                ray.shutdown()


EXECUTORS = ("local", "ray")


def make_executor(name: str, *, max_workers: int = 2, address: str | None = None) -> Executor:
    """``local`` (processes) or ``ray`` by name."""
    if name == "local":
        return LocalExecutor(max_workers)
    if name == "ray":
        return RayExecutor(num_cpus=max_workers, address=address)
    raise ExecutorError(f"executor must be one of {list(EXECUTORS)}, got {name!r}")
