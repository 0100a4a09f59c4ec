"""One settings object, read once at the edge (CLI, server) and passed down.

With nothing configured everything lives under ``./.battleground/``:

========================  ==========================================  ===============================
what                      default                                     override
========================  ==========================================  ===============================
home folder               ``./.battleground``                         ``BATTLEGROUND_HOME``
experiment registry       ``sqlite:///<home>/registry.db``            ``BATTLEGROUND_DATABASE_URL``
event store               ``duckdb:///<home>/events.duckdb``          ``BATTLEGROUND_DATABASE_URL``
MLflow tracking/registry  ``sqlite:///<home>/mlflow.db``              ``BATTLEGROUND_MLFLOW_URI``
Optuna studies            ``<home>/optuna.journal`` (JournalStorage)  ``BATTLEGROUND_OPTUNA_STORAGE``
API write token           none (the API is read-only)                 ``BATTLEGROUND_API_TOKEN``
trusted host names        127.0.0.1, localhost, ::1                   ``BATTLEGROUND_ALLOWED_HOSTS``
largest request body      16 MiB                                      ``BATTLEGROUND_MAX_BODY_BYTES``
========================  ==========================================  ===============================

``BATTLEGROUND_DATABASE_URL=postgresql://…`` puts both the registry and the events on PostgreSQL.

Example:
    >>> s = Settings.from_env({"BATTLEGROUND_HOME": "/tmp/bg"})
    >>> s.registry_url
    'sqlite:////tmp/bg/registry.db'
    >>> s.events_url
    'duckdb:////tmp/bg/events.duckdb'
    >>> Settings.from_env({"BATTLEGROUND_DATABASE_URL": "postgresql://u@127.0.0.1/db"}).events_url
    'postgresql://u@127.0.0.1/db'
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from battleground._redact import redact_url
from battleground.errors import SettingsError

__all__ = ["Settings", "quiet_third_party_telemetry", "resolve_client"]

_TELEMETRY_OFF = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "KEDRO_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def quiet_third_party_telemetry() -> None:
    """Turn off the telemetry of MLflow, Kedro, Ray and friends (unless the user set it)."""
    for key, value in _TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class Settings:
    """Where battleground keeps its state. Build it with :meth:`from_env` at the edge."""

    home: Path
    registry_url: str
    events_url: str
    mlflow_uri: str
    optuna_storage: str
    api_token: str | None = field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] = ()  # beyond 127.0.0.1, localhost and ::1
    max_body_bytes: int = 16 * 1024 * 1024
    statement_timeout: float | None = None  # seconds a PostgreSQL read may run (0: no limit; None: 60)

    def __repr__(self) -> str:  # no password, token or full path in a log line or a traceback
        return (
            f"Settings(home=<home>, registry_url={redact_url(self.registry_url)!r}, "
            f"events_url={redact_url(self.events_url)!r}, mlflow_uri={redact_url(self.mlflow_uri)!r}, "
            f"api_token={'***' if self.api_token else None!r})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("BATTLEGROUND_HOME", ".battleground")).expanduser().absolute()
        database_url = env.get("BATTLEGROUND_DATABASE_URL", "").strip()
        if database_url and not database_url.startswith(("postgresql", "sqlite")):
            raise SettingsError(
                "BATTLEGROUND_DATABASE_URL must start with 'postgresql://' (or 'sqlite:///' for the "
                f"registry alone), got {redact_url(database_url)!r}; unset it to use the embedded defaults"
            )
        max_body = env.get("BATTLEGROUND_MAX_BODY_BYTES", "").strip()
        if max_body and not (max_body.isdigit() and int(max_body) > 0):
            raise SettingsError(f"BATTLEGROUND_MAX_BODY_BYTES must be a positive number of bytes, got {max_body!r}")
        timeout_text = env.get("BATTLEGROUND_STATEMENT_TIMEOUT", "").strip()
        try:
            timeout = float(timeout_text) if timeout_text else 60.0
        except ValueError:
            timeout = -1.0
        limit = timeout if timeout_text else None
        if not 0 <= timeout < 1e7:
            raise SettingsError(
                f"BATTLEGROUND_STATEMENT_TIMEOUT must be a number of seconds >= 0 (0: no limit), got {timeout_text!r}"
            )
        postgres = database_url.startswith("postgresql")
        return cls(
            home=home,
            registry_url=database_url or f"sqlite:///{home / 'registry.db'}",
            events_url=database_url if postgres else f"duckdb:///{home / 'events.duckdb'}",
            mlflow_uri=env.get("BATTLEGROUND_MLFLOW_URI", f"sqlite:///{home / 'mlflow.db'}"),
            optuna_storage=env.get("BATTLEGROUND_OPTUNA_STORAGE", str(home / "optuna.journal")),
            api_token=env.get("BATTLEGROUND_API_TOKEN") or None,
            allowed_hosts=tuple(h.strip() for h in env.get("BATTLEGROUND_ALLOWED_HOSTS", "").split(",") if h.strip()),
            max_body_bytes=int(max_body) if max_body else 16 * 1024 * 1024,
            statement_timeout=limit,
        )

    def ensure_home(self) -> Path:
        """Create the home folder if it does not exist and return it."""
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home


# ---------------------------------------------------------------------------------------------------
# What a ``client=`` argument points at (used by every layer, so it lives here, below them all)
# ---------------------------------------------------------------------------------------------------

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?$")
_FILE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".duckdb")


def _is_bare_host(text: str) -> bool:
    if "/" in text or "\\" in text or text.lower().endswith(_FILE_SUFFIXES) or Path(text).exists():
        return False
    host = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    # A dotted name like db.example.com, or localhost; a plain word is taken as a folder name.
    return bool(_HOSTNAME.match(text)) and ("." in host or host == "localhost")


def resolve_client(client: Any = None) -> Settings:
    """The :class:`~battleground.settings.Settings` that a ``client=`` argument points at.

    Accepted forms:

    * ``None``: :meth:`Settings.from_env` (``./.battleground`` unless configured);
    * a :class:`Settings`: itself;
    * a database URL: ``postgresql://…`` (registry and events there), ``sqlite:///path/registry.db``
      (events in ``events.duckdb`` beside it) or ``duckdb:///path/events.duckdb`` (registry beside it);
    * a bare host, IP or ``host:port`` (as in the seed, e.g. ``'127.0.0.1'``): PostgreSQL at that host, database
      ``battleground``, user ``$PGUSER`` or ``postgres`` (password from ``$PGPASSWORD``/``.pgpass``);
    * anything else is a folder (created on first use) holding ``registry.db`` and ``events.duckdb``;
      a path ending in ``.db``/``.sqlite`` names the registry file itself.

    >>> resolve_client("127.0.0.1").registry_url
    'postgresql://postgres@127.0.0.1:5432/battleground'
    >>> resolve_client("/tmp/bg").events_url
    'duckdb:////tmp/bg/events.duckdb'
    """
    if client is None:
        return Settings.from_env()
    if isinstance(client, Settings):
        return client
    if not isinstance(client, str | os.PathLike):
        raise TypeError(
            f"client must be None, a Settings, a path, a database URL or a host, got {type(client).__name__}"
        )
    env = Settings.from_env()
    text = os.fspath(client).strip()
    if not text:
        raise ValueError("client must not be empty: pass a folder, a database URL or a host")
    if text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        url = "postgresql://" + text.split("://", 1)[1]
        return Settings(env.home, url, url, env.mlflow_uri, env.optuna_storage, env.api_token)
    if text.startswith("sqlite:///"):
        folder = Path(text[len("sqlite:///") :]).expanduser().absolute().parent
        return Settings(
            folder, text, f"duckdb:///{folder / 'events.duckdb'}",
            f"sqlite:///{folder / 'mlflow.db'}", str(folder / "optuna.journal"), env.api_token,
        )
    if text.startswith("duckdb:///"):
        folder = Path(text[len("duckdb:///") :]).expanduser().absolute().parent
        return Settings(
            folder, f"sqlite:///{folder / 'registry.db'}", text,
            f"sqlite:///{folder / 'mlflow.db'}", str(folder / "optuna.journal"), env.api_token,
        )
    if "://" in text:
        raise ValueError(
            f"client URL {text!r} is not supported: use postgresql://, sqlite:/// or duckdb:///, "
            "a folder path, or a PostgreSQL host"
        )
    if _is_bare_host(text):
        host, _, port = text.partition(":") if text.count(":") == 1 else (text, "", "")
        user = os.environ.get("PGUSER", "postgres")
        url = f"postgresql://{user}@{host}:{port or 5432}/battleground"
        return Settings(env.home, url, url, env.mlflow_uri, env.optuna_storage, env.api_token)
    path = Path(text).expanduser().absolute()
    if path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        folder = path.parent
        registry = f"sqlite:///{path}"
    else:
        folder = path
        registry = f"sqlite:///{folder / 'registry.db'}"
    return Settings(
        folder, registry, f"duckdb:///{folder / 'events.duckdb'}",
        f"sqlite:///{folder / 'mlflow.db'}", str(folder / "optuna.journal"), env.api_token,
    )
