"""Where sweep jobs run: local processes by default, a Ray cluster (or a local Ray) on request.

Both executors have one method, ``map(fn, items) -> list`` (results in the order of ``items``); ``fn``
must be a module-level function so that it pickles into another process.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from battleground.errors import BanditError

__all__ = [
    "EXECUTORS", "Executor", "ExecutorConnectionError", "ExecutorError", "ExecutorUnavailableError",
    "LocalExecutor", "RayExecutor", "make_executor",
]

CONNECT_TIMEOUT_S = 20.0  # the bound is 30 s


class ExecutorConnectionError(BanditError, RuntimeError):
    """The Ray cluster at the given address does not answer."""


def _check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail at once when nothing listens at ``host:port`` (a refused connection)."""
    if address == "auto" or address.startswith("local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ExecutorConnectionError(
            f"--ray-address {address!r} must look like host:port or ray://host:port (or 'auto')"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ExecutorConnectionError(
            f"no Ray cluster answers at {hostport} ({exc.strerror or exc}); start one (ray start --head) "
            "or drop --ray-address to run a local Ray"
        ) from None


def _connect(ray: Any, address: str, kwargs: dict[str, Any], timeout: float = CONNECT_TIMEOUT_S) -> None:
    """``ray.init(address=...)`` with a deadline.

    A TCP check is not enough (a proxy may accept connections for an address nobody serves, and then
    ``ray.init`` retries for minutes), so the connection runs in a helper thread and is abandoned after
    ``timeout`` seconds.
    """
    _check_reachable(address, timeout)
    box: dict[str, BaseException] = {}

    def target() -> None:
        try:
            ray.init(address=address, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ExecutorConnectionError(
            f"no Ray cluster answered at {address} within {timeout:g} s; check the address "
            "(ray status on the head node) or drop --ray-address to run a local Ray"
        )
    if "error" in box:
        raise ExecutorConnectionError(f"cannot connect to Ray at {address}: {box['error']}") from box["error"]


class ExecutorError(BanditError, ValueError):
    """An unknown executor name or a bad worker count."""


class ExecutorUnavailableError(BanditError, RuntimeError):
    """The executor needs an optional extra that is not installed."""



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
    An address that does not answer within ``connect_timeout`` seconds raises ``ExecutorConnectionError``.

    Ray is an optional extra: ``pip install 'battleground[ray]'``.
    """

    name = "ray"

    def __init__(self, num_cpus: int = 2, address: str | None = None, connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.num_cpus = _check_workers(num_cpus)
        self.address = address
        if not (isinstance(connect_timeout, int | float) and 0 < connect_timeout <= 30):
            raise ValueError(f"connect_timeout must be a number of seconds in (0, 30], got {connect_timeout!r}")
        self.connect_timeout = float(connect_timeout)

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
                _connect(ray, self.address, kwargs, self.connect_timeout)
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
