"""A source from what a person types: a folder path, or a ``nats://`` / ``redis://`` stream URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from battleground.incremental._sources import FolderSource, StreamSource, StreamSourceError


def open_source(spec: str, *, batch_size: int = 1000, idle_exit_s: float | None = None,
                max_wait_s: float = 1.0) -> StreamSource:
    """``nats://HOST:PORT/STREAM/SUBJECT?durable=NAME[&codec=f64&features=a,b]``,
    ``redis://HOST:PORT/DB?stream=KEY&group=NAME[&consumer=…&field=r&codec=…&features=…]``, or a folder."""
    parts = urlsplit(spec)
    if parts.scheme not in ("nats", "redis"):
        return FolderSource(spec)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    features = query.get("features")
    common: dict[str, Any] = {"batch_size": batch_size, "idle_exit_s": idle_exit_s, "max_wait_s": max_wait_s, "codec": query.get("codec", "json"),
              "feature_names": features.split(",") if features else None}
    server = f"{parts.scheme}://{parts.netloc}"
    if parts.scheme == "nats":
        from battleground.incremental._nats import NatsJetStreamSource

        path = [p for p in parts.path.split("/") if p]
        if len(path) != 2 or "durable" not in query:
            raise StreamSourceError(f"a NATS source is nats://HOST:PORT/STREAM/SUBJECT?durable=NAME, got {spec!r}")
        return NatsJetStreamSource(url=server, stream=path[0], subject=path[1], durable=query["durable"], **common)
    from battleground.incremental._redis import RedisStreamSource

    if "stream" not in query or "group" not in query:
        raise StreamSourceError(f"a Redis source is redis://HOST:PORT/DB?stream=KEY&group=NAME, got {spec!r}")
    db = parts.path.strip("/") or "0"
    return RedisStreamSource(url=f"{server}/{db}", stream=query["stream"], group=query["group"],
                             consumer=query.get("consumer", "learner"), field=query.get("field", "r"), **common)
