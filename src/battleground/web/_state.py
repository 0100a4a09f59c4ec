"""What one dashboard process holds: the settings, a registry and the event store (opened lazily)."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from battleground.experiment.register import Registry
    from battleground.settings import Settings
    from battleground.storage.events import EventStore

__all__ = ["DashboardState", "check_key"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_ID = 2**31 - 1


def check_key(key: str) -> str:
    """An experiment id or name from a URL, or :class:`ExperimentNotFoundError` for one that cannot
    name an experiment (control characters, ids beyond the 32-bit range the registry stores)."""
    from battleground.experiment.register import ExperimentNotFoundError

    text = key.strip()
    if not text or _CONTROL.search(text) or len(text) > 500:
        raise ExperimentNotFoundError(f"no experiment {key!r}: give an experiment id or name")
    if text.isdigit() and int(text) > _MAX_ID:
        raise ExperimentNotFoundError(f"no experiment with id {text}")
    return text


class DashboardState:
    """Lazily opened, shared by all requests (both objects are safe to use from several threads)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._registry: Registry | None = None
        self._store: EventStore | None = None
        self._plotly_js: bytes | None = None
        from battleground.web._session import Sessions
        from battleground.web._view_common import SumsCache

        self.sessions = Sessions()
        self.sums_cache = SumsCache()  # sums kept across requests while the event store is unchanged

    @property
    def read_only(self) -> bool:
        return not self.settings.api_token

    @property
    def registry(self) -> Registry:
        """The registry; while an embedded one does not exist yet, an empty stand-in (so that looking
        at an empty home never creates ``registry.db``)."""
        with self._lock:
            if self._registry is None:
                from battleground.experiment.register import Registry

                if not _exists(self.settings.registry_url):
                    return _EMPTY  # type: ignore[return-value]
                self._registry = Registry(self.settings)
            return self._registry

    def open_registry(self) -> Registry:
        """The registry, created if it does not exist yet (for writes only)."""
        with self._lock:
            if self._registry is None:
                from battleground.experiment.register import Registry

                self.settings.ensure_home()
                self._registry = Registry(self.settings)
            return self._registry

    @property
    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                from battleground.experiment.events import open_event_store

                self.settings.ensure_home()
                self._store = open_event_store(self.settings)
            return self._store

    @property
    def plotly_js(self) -> bytes:
        """plotly.js from the installed plotly package (no CDN: the pages work offline)."""
        with self._lock:
            if self._plotly_js is None:
                from plotly.offline import get_plotlyjs

                self._plotly_js = get_plotlyjs().encode("utf-8")
            return self._plotly_js


def _exists(url: str) -> bool:
    """Whether an embedded (SQLite) registry file exists; a server-backed one always does."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :]).is_file()
    return True


class _EmptyRegistry:
    """What the pages read before any experiment is registered: nothing, and no file created."""

    def list(self, status: str | None = None) -> list[Any]:
        return []

    def get(self, key: Any) -> Any:
        from battleground.experiment.register import ExperimentNotFoundError

        raise ExperimentNotFoundError(
            f"no experiment {key!r}: no experiment is registered yet (`battleground experiment create`)"
        )

    def audit_log(self, key: Any) -> Any:
        return self.get(key)


_EMPTY = _EmptyRegistry()
