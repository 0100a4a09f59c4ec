"""Real stream sources against real servers: NATS JetStream and Redis Streams.

The shared servers (127.0.0.1:4222, 127.0.0.1:6379; ``.ci/run`` starts them) get unique stream and key
names per run. Fault tests kill the learner (SIGKILL) or restart a *throwaway* broker on a spare port,
never the shared one, and require the final model to be identical to an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from battleground.incremental import (
    CheckpointStore,
    GLMix,
    NatsJetStreamSource,
    RedisStreamSource,
    load_model,
    make_stream,
    run_stream,
)
from battleground.incremental._codec import JsonRecords, PackedRecords

NATS_URL = os.environ.get("BATTLEGROUND_TEST_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("BATTLEGROUND_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
N_BATCHES, BATCH = 6, 150


@pytest.fixture(scope="module")
def stream():
    return make_stream(n_batches=N_BATCHES, batch_size=BATCH, holdout_size=10, n_entities=15, n_features=4, seed=5)


def _records(frames: list[pd.DataFrame]) -> list[dict[str, Any]]:
    out = []
    for frame in frames:
        feats = [c for c in frame.columns if c.startswith("x")]
        for row in frame.to_dict("records"):
            out.append({"entity": int(row["entity"]), "label": row["label"], "weight": row["weight"],
                        "offset": row["offset"], "features": [row[c] for c in feats]})
    return out


def _uninterrupted(stream) -> GLMix:
    model = GLMix().fit_fixed_effect(stream.warmup)
    for frame in stream.train:
        model.partial_fit(frame)
    return model


def _assert_same_model(got: GLMix, stream) -> None:
    full = _uninterrupted(stream)
    assert got.n_batches_ == N_BATCHES and got.n_records_ == N_BATCHES * BATCH
    assert got.entities_ == full.entities_
    np.testing.assert_array_equal(got.re_coef_, full.re_coef_)
    np.testing.assert_array_equal(got.re_precision_, full.re_precision_)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


# max_wait_s=60 everywhere: only whole batches, so the boundaries never depend on a loaded machine's timing

# -- NATS -----------------------------------------------------------------------------------------

async def _nats_publish(url: str, stream_name: str, subject: str, payloads: list[bytes]) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=stream_name, subjects=[subject])
    for p in payloads:
        await js.publish_async(subject, p)
    await js.publish_async_completed()
    await nc.close()


async def _nats_delete(url: str, stream_name: str) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(stream_name)
    finally:
        await nc.close()


@pytest.fixture
def nats_stream(stream) -> Iterator[tuple[str, str]]:
    name = f"bgtest_{uuid.uuid4().hex[:10]}"
    subject = f"{name}.records"
    codec = JsonRecords()
    asyncio.run(_nats_publish(NATS_URL, name, subject, [codec.encode(r) for r in _records(stream.train)]))
    yield name, subject
    asyncio.run(_nats_delete(NATS_URL, name))


def _nats_source(name: str, subject: str, durable: str, url: str = NATS_URL, **kw: Any) -> NatsJetStreamSource:
    return NatsJetStreamSource(url=url, stream=name, subject=subject, durable=durable, batch_size=BATCH,
                               idle_exit_s=kw.pop("idle_exit_s", 0.5), max_wait_s=60.0, **kw)


def test_nats_learns_exactly_the_stream_then_resumes_with_nothing_new(tmp_path: Path, stream, nats_stream) -> None:
    name, subject = nats_stream
    ck = tmp_path / "ck"
    res = run_stream(_nats_source(name, subject, "a"), ck, model=GLMix().fit_fixed_effect(stream.warmup),
                     max_batches=4)
    assert res.processed == 4 and res.checkpoint.watermark == str(4 * BATCH)
    rest = run_stream(_nats_source(name, subject, "a"), ck)
    assert (rest.processed, rest.skipped) == (2, 0) and rest.checkpoint.watermark == str(N_BATCHES * BATCH)
    _assert_same_model(load_model(ck), stream)
    again = run_stream(_nats_source(name, subject, "a"), ck)
    assert again.processed == 0 and CheckpointStore(ck).latest().n_batches == N_BATCHES


def test_nats_crash_after_checkpoint_before_ack_and_redeliveries(tmp_path: Path, stream, nats_stream) -> None:
    name, subject = nats_stream
    ck = tmp_path / "ck"

    class Crash(Exception):
        pass

    class DiesBeforeAck(NatsJetStreamSource):
        def ack(self, batches: list[Any]) -> None:
            if batches and int(batches[-1].key) >= 3 * BATCH:
                raise Crash  # the checkpoint of batch 3 is on disk; its ack never reaches the broker
            super().ack(batches)

    with pytest.raises(Crash):
        run_stream(DiesBeforeAck(url=NATS_URL, stream=name, subject=subject, durable="b", batch_size=BATCH,
                                 idle_exit_s=0.5, max_wait_s=60.0), ck, model=GLMix().fit_fixed_effect(stream.warmup))
    assert CheckpointStore(ck).latest().watermark == str(3 * BATCH)
    # the restarted learner gets batches 4.. (never batch 3 again); a short ack wait and a slow learner
    # make JetStream redeliver unacknowledged messages meanwhile: they are recognised and dropped
    src = _nats_source(name, subject, "b", ack_wait_s=0.5)
    res = run_stream(src, ck, checkpoint_every=3, throttle_s=0.3)
    assert res.processed == N_BATCHES - 3 and src.redelivered > 0
    _assert_same_model(res.model, stream)


def _learner_cmd(source: str, ck: Path, warmup: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from battleground.cli import main; main()", "incremental", "run", source,
            "--checkpoint-dir", str(ck), "--warmup", str(warmup), "--batch-size", str(BATCH), "--idle-exit", "1",
            "--max-wait", "60",
            *extra]


def _kill_after(cmd: list[str], ck: Path, version: int) -> int:
    proc = subprocess.Popen([*cmd, "--throttle", "0.5"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = CheckpointStore(ck)
    deadline = time.monotonic() + 120
    try:
        while (not store.versions() or store.versions()[-1] < version) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    latest = store.latest()
    assert latest is not None and version <= latest.n_batches < N_BATCHES
    return latest.n_batches


def test_nats_learner_sigkilled_mid_stream_then_restarted(tmp_path: Path, stream, nats_stream) -> None:
    name, subject = nats_stream
    ck = tmp_path / "ck"
    stream.warmup.to_parquet(tmp_path / "w.parquet")
    cmd = _learner_cmd(f"{NATS_URL}/{name}/{subject}?durable=k", ck, tmp_path / "w.parquet")
    learned = _kill_after(cmd, ck, 2)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"processed {N_BATCHES - learned} batches" in " ".join(done.stdout.split())
    _assert_same_model(load_model(ck), stream)


@pytest.fixture
def throwaway_nats(tmp_path: Path) -> Iterator[dict[str, Any]]:
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port = _free_port()
    store_dir = tmp_path / "jetstream"
    state: dict[str, Any] = {"url": f"nats://127.0.0.1:{port}"}

    def start() -> None:
        state["proc"] = subprocess.Popen([exe, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(port)

    def restart() -> None:
        state["proc"].send_signal(signal.SIGKILL)
        state["proc"].wait(timeout=10)
        time.sleep(0.3)
        start()

    start()
    state["restart"] = restart
    yield state
    state["proc"].send_signal(signal.SIGKILL)
    state["proc"].wait(timeout=10)


def test_nats_broker_restarted_mid_stream(tmp_path: Path, stream, throwaway_nats) -> None:
    url = throwaway_nats["url"]
    name, subject = "bgthrow", "bgthrow.records"
    asyncio.run(_nats_publish(url, name, subject, [JsonRecords().encode(r) for r in _records(stream.train)]))
    restarted: list[str] = []

    def after(key: str, _model: Any, _meta: dict[str, Any]) -> None:
        if int(key) == 2 * BATCH:
            throwaway_nats["restart"]()  # SIGKILL the broker and start it again on the same port and store
            restarted.append(key)

    src = _nats_source(name, subject, "r", url=url, idle_exit_s=3.0)
    res = run_stream(src, tmp_path / "ck", model=GLMix().fit_fixed_effect(stream.warmup), on_batch=after)
    assert restarted and res.processed == N_BATCHES
    _assert_same_model(res.model, stream)


# -- Redis ----------------------------------------------------------------------------------------

def _redis_fill(url: str, key: str, payloads: list[bytes]) -> None:
    import redis

    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for p in payloads:
        pipe.xadd(key, {"r": p})
    pipe.execute()
    client.close()


@pytest.fixture
def redis_stream(stream) -> Iterator[str]:
    import redis

    key = f"bgtest:{uuid.uuid4().hex[:10]}"
    _redis_fill(REDIS_URL, key, [JsonRecords().encode(r) for r in _records(stream.train)])
    yield key
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(key)
    client.close()


def _redis_source(key: str, group: str, url: str = REDIS_URL, **kw: Any) -> RedisStreamSource:
    return RedisStreamSource(url=url, stream=key, group=group, batch_size=BATCH, idle_exit_s=kw.pop("idle_exit_s", 0.5),
                             max_wait_s=60.0, **kw)


def test_redis_learns_exactly_the_stream_and_acks_after_checkpoints(tmp_path: Path, stream, redis_stream) -> None:
    import redis

    ck = tmp_path / "ck"

    class Crash(Exception):
        pass

    class DiesBeforeAck(RedisStreamSource):
        def ack(self, batches: list[Any]) -> None:
            if len(self.acked) == 2:
                raise Crash
            self.acked.append(batches[-1].key)
            super().ack(batches)

    dying = DiesBeforeAck(url=REDIS_URL, stream=redis_stream, group="g", batch_size=BATCH, idle_exit_s=0.5,
                          max_wait_s=60.0)
    dying.acked = []  # type: ignore[attr-defined]
    with pytest.raises(Crash):
        run_stream(dying, ck, model=GLMix().fit_fixed_effect(stream.warmup))
    client = redis.Redis.from_url(REDIS_URL)
    assert client.xpending(redis_stream, "g")["pending"] == BATCH  # batch 3: checkpointed, not acked
    res = run_stream(_redis_source(redis_stream, "g"), ck)
    assert res.processed == N_BATCHES - 3
    _assert_same_model(res.model, stream)
    assert client.xpending(redis_stream, "g")["pending"] == 0  # everything learned is acknowledged
    client.close()


def test_redis_learner_sigkilled_mid_stream_then_restarted(tmp_path: Path, stream, redis_stream) -> None:
    ck = tmp_path / "ck"
    stream.warmup.to_parquet(tmp_path / "w.parquet")
    host = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
    cmd = _learner_cmd(f"redis://{host}/0?stream={redis_stream}&group=k", ck, tmp_path / "w.parquet")
    learned = _kill_after(cmd, ck, 2)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"processed {N_BATCHES - learned} batches" in " ".join(done.stdout.split())
    _assert_same_model(load_model(ck), stream)


def test_redis_broker_restarted_mid_stream(tmp_path: Path, stream) -> None:
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    data = tmp_path / "redis"
    data.mkdir()
    args = [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(data)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [proc]
    try:
        _wait_port(port)
        url = f"redis://127.0.0.1:{port}/0"
        _redis_fill(url, "s", [JsonRecords().encode(r) for r in _records(stream.train)])

        def after(key: str, _model: Any, _meta: dict[str, Any]) -> None:
            if len(procs) == 1 and key == restart_at[0]:
                procs[-1].send_signal(signal.SIGKILL)
                procs[-1].wait(timeout=10)
                procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                _wait_port(port)

        import redis

        client = redis.Redis.from_url(url)
        restart_at = [client.xrange("s")[2 * BATCH - 1][0].decode()]
        client.close()
        res = run_stream(_redis_source("s", "g", url=url, idle_exit_s=3.0), tmp_path / "ck",
                         model=GLMix().fit_fixed_effect(stream.warmup), on_batch=after)
        assert len(procs) == 2 and res.processed == N_BATCHES
        _assert_same_model(res.model, stream)
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)


# -- codecs ---------------------------------------------------------------------------------------

def test_codecs_round_trip_and_mark_broken_messages() -> None:
    rec = {"entity": 3, "label": 1.0, "weight": 1.0, "offset": 0.0, "features": [0.5, -1.25]}
    frame = JsonRecords().decode([JsonRecords().encode(rec), b"{not json", json.dumps([rec, rec]).encode()])
    assert len(frame) == 4 and frame["_error"].notna().sum() == 1
    packed = PackedRecords(["a", "b"])
    rows = np.array([[3, 1, 1, 0, 0.5, -1.25], [4, 0, 2, 0.1, 1.0, 2.0]])
    out = packed.decode([packed.encode(rows), b"xx"])
    assert list(out.columns[:6]) == ["entity", "label", "weight", "offset", "a", "b"]
    np.testing.assert_array_equal(out[["a", "b"]].to_numpy()[:2], rows[:, 4:])
    assert out["_error"].notna().sum() == 1


def test_redis_json_arrays_per_message_with_an_empty_one(tmp_path: Path, stream) -> None:
    """Many records per message (JSON arrays of 50), one of them an empty array: whole batches, the same
    model as the frames (before: the empty array sized the next read by 0 records per message)."""
    import redis

    recs = _records(stream.train)
    messages = [json.dumps(recs[i : i + 50]).encode() for i in range(0, len(recs), 50)]
    messages.insert(5, b"[]")  # the last message of a read
    key = f"bgtest:{uuid.uuid4().hex[:10]}"
    _redis_fill(REDIS_URL, key, messages)
    try:
        res = run_stream(_redis_source(key, "arr"), tmp_path / "ck", model=GLMix().fit_fixed_effect(stream.warmup))
        assert res.processed == N_BATCHES and res.records == N_BATCHES * BATCH
        _assert_same_model(res.model, stream)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        client.delete(key)
        client.close()


def test_json_codec_parses_an_array_once() -> None:
    codec = JsonRecords(["a", "b"])
    rec = {"label": 1.0, "features": [0.5, -1.0]}
    n, piece = codec.parse(json.dumps([rec, rec, rec]).encode())
    assert n == 3 and isinstance(piece, list)  # parsed here, not again in decode_parsed
    assert codec.parse(codec.encode(rec)) == (1, codec.encode(rec))  # single records wait for the batch parse
    frame = codec.decode_parsed([piece, codec.encode(rec), codec.parse(b"[broken")[1]])
    assert len(frame) == 5 and frame["_error"].notna().sum() == 1
    assert frame["_error"].dropna().iloc[0].startswith("message 2:")
