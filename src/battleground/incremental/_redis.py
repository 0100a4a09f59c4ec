"""Redis Streams as a stream source: a consumer group, XACK after each checkpoint.

A batch's key is the entry id of its last record (``<ms>-<seq>``, compared as numbers). On open the
group's delivery pointer is set just after the checkpoint's watermark (``XGROUP SETID``), so ``>``
delivers exactly the entries after it, in order — the batches an uninterrupted run would have formed —
and entries pending from a killed run are delivered again rather than waiting in the pending list.
Pending entries at or below the watermark are acknowledged (they are learned). After a connection
problem (a Redis restart) the pointer is set again after the last entry received; an entry at or below
the highest id seen is a redelivery and is dropped. One learner per group.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from battleground.incremental._codec import Codec, get_codec
from battleground.incremental._records import IncrementalInputError
from battleground.incremental._sources import SourceBatch, StreamSource, StreamSourceError

log = logging.getLogger(__name__)


def _redis() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise StreamSourceError("the Redis source needs the redis package: pip install 'battleground[streams]'") from exc
    return redis


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RedisStreamSource(StreamSource):
    """Mini-batches of ``batch_size`` records from a Redis stream, read through a consumer group.

    Args:
        url: e.g. ``redis://127.0.0.1:6379/0``. stream: the stream key. group: the consumer group
            (created at the stream's start when missing). consumer: this learner's name in the group.
        batch_size: records per mini-batch. field: the entry field holding the record.
        codec: ``"json"`` or ``"f64"``; feature_names: the features' column names.
        max_wait_s: emit a partial batch when no record came for this long. idle_exit_s: ``poll``
            returns None after this long without any record (None: wait forever).
        reconnect_timeout_s: give up when Redis stays unreachable this long.
    """

    positional = True

    def __init__(self, *, url: str = "redis://127.0.0.1:6379/0", stream: str, group: str,
                 consumer: str = "learner", batch_size: int = 1000, field: str = "r",
                 codec: str | Codec = "json", feature_names: list[str] | None = None, max_wait_s: float = 1.0,
                 idle_exit_s: float | None = None, reconnect_timeout_s: float = 60.0) -> None:
        if batch_size < 1:
            raise IncrementalInputError(f"batch_size must be >= 1, got {batch_size}")
        self.url, self.stream, self.group, self.consumer = url, stream, group, consumer
        self.batch_size, self.field = batch_size, field
        self.codec = get_codec(codec, feature_names)
        self.max_wait_s, self.idle_exit_s = max_wait_s, idle_exit_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self._client: Any = None
        self._highest: tuple[int, int] = (0, 0)
        self._highest_id = "0-0"
        self._per_message: int | None = None  # records in the last entry
        self.redelivered = 0
        self.broker_s = 0.0  # time spent waiting on Redis (read + ack), for the benchmark
        self.decode_s = 0.0

    def describe(self) -> str:
        return f"redis {self.url} stream {self.stream} group {self.group}"

    def _position(self, after: str | None) -> None:
        redis = _redis()
        r = self._client
        try:
            r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        if after is None:  # a fresh checkpoint: go on from the group's oldest unacknowledged entry
            pending = r.xpending(self.stream, self.group)
            if pending and pending.get("pending"):
                ms, seq = _parse_id(_text(pending["min"]))
                after = f"{ms}-{seq - 1}" if seq else f"{ms - 1}-18446744073709551615"
            else:
                info = [g for g in r.xinfo_groups(self.stream) if _text(g["name"]) == self.group]
                after = _text(info[0]["last-delivered-id"]) if info else "0-0"
        r.xgroup_setid(self.stream, self.group, after)
        self._ack_learned(after)
        self._highest, self._highest_id = _parse_id(after), after

    def _ack_learned(self, upto: str) -> None:
        """XACK the pending entries at or below ``upto`` (learned before a crash, never acknowledged)."""
        while True:
            rows = self._client.xpending_range(self.stream, self.group, min="-", max=upto, count=10_000)
            if not rows:
                return
            self._client.xack(self.stream, self.group, *[row["message_id"] for row in rows])

    def _recover(self, error: BaseException) -> None:
        redis = _redis()
        deadline = time.monotonic() + self.reconnect_timeout_s
        while True:
            try:
                self._position(self._highest_id)
                log.warning("Redis: group %s re-positioned after %s (%s)", self.group, self._highest_id, error)
                return
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
                if time.monotonic() > deadline:
                    raise StreamSourceError(
                        f"Redis at {self.url} unreachable for {self.reconnect_timeout_s:.0f} s: {exc}") from exc
                time.sleep(0.2)

    def open(self, after: str | None) -> None:
        redis = _redis()
        self._client = redis.Redis.from_url(self.url, socket_timeout=max(5.0, self.max_wait_s + 2),
                                            socket_connect_timeout=2)
        try:
            self._position(after)
        except redis.RedisError as exc:
            raise StreamSourceError(f"cannot open Redis stream {self.stream!r} at {self.url}: {exc}") from exc

    def poll(self) -> SourceBatch | None:
        redis = _redis()
        if self._client is None:
            raise StreamSourceError("open the source before polling it")
        payloads: list[Any] = []  # per message, what the codec's parse made of it
        ids: list[str] = []
        n = 0
        per_message = self._per_message  # None until an entry was seen: then ask for one only
        started = idle_since = time.monotonic()
        field = self.field.encode()
        while n < self.batch_size:
            t0 = time.perf_counter()
            try:
                block = max(1, int(1000 * min(self.max_wait_s, 1.0)))
                reply = self._client.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                                count=1 if per_message is None else max(1, (self.batch_size - n) // per_message),
                                                block=block)
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
                self.broker_s += time.perf_counter() - t0
                self._recover(exc)
                continue
            self.broker_s += time.perf_counter() - t0
            entries = reply[0][1] if reply else []
            now = time.monotonic()
            for entry_id, fields in entries:
                eid = _text(entry_id)
                pos = _parse_id(eid)
                if pos <= self._highest:
                    self.redelivered += 1
                    continue
                self._highest, self._highest_id = pos, eid
                data = fields.get(field, b"")
                ids.append(eid)
                t1 = time.perf_counter()
                count, piece = self.codec.parse(data)  # once per message: counts the records
                self.decode_s += time.perf_counter() - t1
                payloads.append(piece)
                if count:  # an empty message (a JSON []) says nothing about the next ones' size
                    per_message = self._per_message = count
                n += count
            if entries:
                idle_since = now
            elif payloads and now - idle_since >= self.max_wait_s:
                break
            elif not payloads and self.idle_exit_s is not None and now - started >= self.idle_exit_s:
                return None
        t0 = time.perf_counter()
        frame = self.codec.decode_parsed(payloads)
        self.decode_s += time.perf_counter() - t0
        return SourceBatch(ids[-1], frame, f"redis {self.stream} ids {ids[0]}..{ids[-1]}", ids)

    def ack(self, batches: list[SourceBatch]) -> None:
        if not batches or self._client is None:
            return
        redis = _redis()
        ids = [i for b in batches for i in b.token]
        t0 = time.perf_counter()
        try:
            self._client.xack(self.stream, self.group, *ids)
        except redis.RedisError as exc:  # the checkpoint is durable; a redelivery is recognised
            log.warning("Redis: XACK of %d entries failed (%s); they will be recognised if redelivered", len(ids), exc)
        self.broker_s += time.perf_counter() - t0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
