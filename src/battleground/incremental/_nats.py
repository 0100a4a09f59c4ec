"""NATS JetStream as a stream source: a durable pull consumer, acknowledged after each checkpoint.

A batch's key is the stream sequence of its last message. On open the durable consumer is positioned
just after the checkpoint's watermark (it is re-created when it points elsewhere or holds unacknowledged
deliveries, whose redelivery would otherwise come late and out of order), so the batches after a
restart are exactly those an uninterrupted run would have formed. Any delivery at or below the highest
sequence seen is a redelivery and is dropped. After a connection problem (a broker restart) the consumer
is re-positioned after the last message received. Acknowledgements use ``AckPolicy.ALL``: acking a
batch's last message acknowledges the batch. Use a stream with limits retention (the default): a
work-queue or interest stream would drop messages when the consumer is re-created.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from battleground.incremental._codec import Codec, get_codec
from battleground.incremental._records import IncrementalInputError
from battleground.incremental._sources import SourceBatch, StreamSource, StreamSourceError

log = logging.getLogger(__name__)

_INSTALL = "pip install 'battleground[streams]'"


def _nats() -> Any:
    try:
        import nats
        import nats.js.api
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise StreamSourceError(f"the NATS source needs the nats-py package: {_INSTALL}") from exc
    return nats


def _stream_seq(msg: Any) -> int:
    """The stream sequence from a JetStream reply subject, without building nats-py's metadata objects:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.…`` (9 tokens) or, with a domain and account hash,
    ``$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.…`` (12 or more)."""
    tokens = msg.reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5])
    if len(tokens) >= 11:
        return int(tokens[7])
    return int(msg.metadata.sequence.stream)


class NatsJetStreamSource(StreamSource):
    """Mini-batches of ``batch_size`` records from a JetStream subject, through a durable pull consumer.

    Args:
        url: server, e.g. ``nats://127.0.0.1:4222``. stream, subject: the JetStream stream and the
            subject to learn from. durable: the consumer's name (one learner per name).
        batch_size: records per mini-batch (a batch ends at a message boundary).
        codec: ``"json"`` or ``"f64"`` (see :mod:`._codec`); feature_names: the features' column names.
        max_wait_s: emit a partial batch when no record came for this long. idle_exit_s: ``poll``
            returns None (the run ends) after this long without any record; None waits forever.
        ack_wait_s: the consumer's ack wait; create_stream: create the stream if it does not exist.
        reconnect_timeout_s: give up when the server stays unreachable this long.
    """

    positional = True

    def __init__(self, *, url: str = "nats://127.0.0.1:4222", stream: str, subject: str, durable: str,
                 batch_size: int = 1000, codec: str | Codec = "json", feature_names: list[str] | None = None,
                 max_wait_s: float = 1.0, idle_exit_s: float | None = None, ack_wait_s: float = 30.0,
                 create_stream: bool = False, reconnect_timeout_s: float = 60.0) -> None:
        if batch_size < 1:
            raise IncrementalInputError(f"batch_size must be >= 1, got {batch_size}")
        self.url, self.stream, self.subject, self.durable = url, stream, subject, durable
        self.batch_size = batch_size
        self.codec = get_codec(codec, feature_names)
        self.max_wait_s, self.idle_exit_s = max_wait_s, idle_exit_s
        self.ack_wait_s, self.create_stream = ack_wait_s, create_stream
        self.reconnect_timeout_s = reconnect_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self._highest = 0  # stream sequence of the last message taken (learned or in the batch being built)
        self._reset = False
        self._per_message: int | None = None  # records in the last message
        self.redelivered = 0
        self.broker_s = 0.0  # time spent waiting on the broker (fetch + ack), for the benchmark
        self.decode_s = 0.0  # time spent turning messages into frames

    def describe(self) -> str:
        return f"nats {self.url} stream {self.stream} subject {self.subject} durable {self.durable}"

    # -- plumbing -------------------------------------------------------------------------------
    def _run(self, coro: Any) -> Any:
        assert self._loop is not None
        return self._loop.run_until_complete(coro)

    async def _connect(self) -> None:
        nats = _nats()

        async def flagged(*_: Any) -> None:
            self._reset = True  # anything in flight may be lost: re-position before the next fetch

        async def quiet(error: Exception) -> None:
            log.debug("NATS: %s", error)

        self._nc = await nats.connect(self.url, allow_reconnect=True, max_reconnect_attempts=-1,
                                      reconnect_time_wait=0.2, connect_timeout=2,
                                      disconnected_cb=flagged, reconnected_cb=flagged,
                                      error_cb=quiet)
        self._js = self._nc.jetstream()
        if self.create_stream:
            from nats.js.errors import BadRequestError

            with contextlib.suppress(BadRequestError):  # it exists (with these or more subjects)
                await self._js.add_stream(name=self.stream, subjects=[self.subject])

    async def _position(self, start: int | None) -> None:
        """Bind the durable consumer so that its next delivery is stream sequence ``start``."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        try:
            info = await self._js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            info = None
        if start is None:
            start = info.ack_floor.stream_seq + 1 if info is not None and info.ack_floor else 1
        clean = (info is not None and info.num_ack_pending == 0 and info.delivered is not None
                 and info.delivered.stream_seq == start - 1 and info.config.filter_subject == self.subject)
        if not clean:
            if info is not None:
                await self._js.delete_consumer(self.stream, self.durable)
            await self._js.add_consumer(self.stream, ConsumerConfig(
                durable_name=self.durable, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
                ack_policy=AckPolicy.ALL, filter_subject=self.subject, ack_wait=self.ack_wait_s,
                max_ack_pending=-1))
        if self._sub is not None:
            with contextlib.suppress(Exception):  # a dead subscription after a reconnect
                await self._sub.unsubscribe()
        self._sub = await self._js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        self._highest = start - 1

    def _recover(self, error: BaseException) -> None:
        """Wait for the server, then re-position the consumer after the last message taken."""
        deadline = time.monotonic() + self.reconnect_timeout_s
        while True:
            try:
                if self._nc is None or self._nc.is_closed:
                    self._run(self._connect())
                self._run(self._position(self._highest + 1))
                self._reset = False
                log.warning("NATS: re-positioned %s after seq %d (%s)", self.durable, self._highest, error)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise StreamSourceError(
                        f"NATS at {self.url} unreachable for {self.reconnect_timeout_s:.0f} s: {exc}") from exc
                time.sleep(0.2)

    # -- StreamSource ---------------------------------------------------------------------------
    def open(self, after: str | None) -> None:
        _nats()
        self._loop = asyncio.new_event_loop()
        try:
            self._run(self._connect())
            self._run(self._position(None if after is None else int(after) + 1))
        except StreamSourceError:
            raise
        except Exception as exc:
            self.close()
            raise StreamSourceError(f"cannot open NATS stream {self.stream!r} at {self.url}: {exc}") from exc

    def poll(self) -> SourceBatch | None:
        import nats.errors

        if self._sub is None:
            raise StreamSourceError("open the source before polling it")
        payloads: list[Any] = []  # per message, what the codec's parse made of it
        n = 0
        first = last = None
        last_msg = None
        per_message = self._per_message  # None until a message was seen: then ask for one only
        started = idle_since = time.monotonic()
        while n < self.batch_size:
            if self._reset:
                self._recover(RuntimeError("connection interrupted"))
            t0 = time.perf_counter()
            try:
                wait = max(0.05, min(self.max_wait_s, 1.0))
                # ask for messages, not records: a message may carry several records
                want = 1 if per_message is None else max(1, (self.batch_size - n) // per_message)
                msgs = self._run(self._sub.fetch(batch=want, timeout=wait))
            except (TimeoutError, nats.errors.TimeoutError):
                msgs = []
            except Exception as exc:
                self.broker_s += time.perf_counter() - t0
                self._recover(exc)
                continue
            self.broker_s += time.perf_counter() - t0
            now = time.monotonic()
            for msg in msgs:
                seq = _stream_seq(msg)
                if seq <= self._highest:
                    self.redelivered += 1
                    continue
                self._highest = seq
                first = seq if first is None else first
                last, last_msg = seq, msg
                t1 = time.perf_counter()
                count, piece = self.codec.parse(msg.data)  # once per message: counts the records
                self.decode_s += time.perf_counter() - t1
                payloads.append(piece)
                if count:  # an empty message (a JSON []) says nothing about the next ones' size
                    per_message = self._per_message = count
                n += count
            if msgs:
                idle_since = now
            elif payloads and now - idle_since >= self.max_wait_s:
                break  # a quiet stream: learn what came
            elif not payloads and self.idle_exit_s is not None and now - started >= self.idle_exit_s:
                return None
        t0 = time.perf_counter()
        frame = self.codec.decode_parsed(payloads)
        self.decode_s += time.perf_counter() - t0
        return SourceBatch(str(last), frame, f"nats {self.stream}/{self.subject} seq {first}-{last}", last_msg)

    def ack(self, batches: list[SourceBatch]) -> None:
        if not batches or self._nc is None:
            return
        t0 = time.perf_counter()
        try:  # AckPolicy.ALL: the last message acknowledges all before it
            self._run(batches[-1].token.ack())
        except Exception as exc:
            log.warning("NATS: ack of seq %s failed (%s); the batch will be recognised if redelivered",
                        batches[-1].key, exc)
        self.broker_s += time.perf_counter() - t0

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            if self._nc is not None and not self._nc.is_closed:
                self._run(self._nc.flush(timeout=2))  # the last acknowledgements go out
                self._run(self._nc.close())
        except Exception:
            pass
        finally:
            self._loop.close()
            self._loop = None
            self._nc = self._js = self._sub = None
