"""The stream runner: learn mini-batch after mini-batch, checkpoint, then acknowledge.

Exactly-once effect on the model: a batch is acknowledged to its source only after the checkpoint that
holds it is durable, and on (re)start every batch at or below the checkpoint's watermark is recognised
and skipped — by position for broker sources, by the checkpoint's list of learned keys for folders and
keyed iterables (a *new* key at or below the watermark is an error, never skipped silently).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground.errors import IncrementalError
from battleground.incremental._badrows import check_policy, quarantine, raise_bad, screen
from battleground.incremental._checkpoint import (
    Checkpoint,
    CheckpointStore,
    load_model,
    remove_temporary,
)
from battleground.incremental._records import IncrementalInputError
from battleground.incremental._sources import (
    IterableSource,
    SourceBatch,
    StreamSource,
    StreamSourceError,
    as_source,
    natural_key,
)

if TYPE_CHECKING:
    from battleground.incremental._fast import SequentialBayesianLogisticRegression
    from battleground.incremental._glmix import GLMix

    Model = GLMix | SequentialBayesianLogisticRegression

__all__ = ["Checkpoint", "CheckpointStore", "StreamResult", "load_model", "run_stream"]

log = logging.getLogger(__name__)


class NoStartingModelError(IncrementalError, ValueError):
    """An empty checkpoint folder and no model to start from."""


@dataclass(frozen=True)
class StreamResult:
    """What a run did: batches learned and skipped (already learned / redelivered), records learned and
    rejected, and the last checkpoint."""

    model: Any
    checkpoint: Checkpoint | None
    processed: int
    skipped: int
    records: int
    rejected: int = 0
    quarantined: tuple[str, ...] = ()


def run_stream(
    source: str | os.PathLike[str] | StreamSource | Iterable[Any],
    checkpoint_dir: str | os.PathLike[str],
    *,
    model: Model | None = None,
    checkpoint_every: int = 1,
    keep_last: int = 5,
    max_batches: int | None = None,
    throttle_s: float = 0.0,
    on_bad_record: str = "raise",
    dead_letter_dir: str | os.PathLike[str] | None = None,
    on_batch: Callable[[str, Model, dict[str, Any]], None] | None = None,
) -> StreamResult:
    """Update a model from a stream of mini-batches, checkpointing as it goes.

    Args:
        source: a folder of ``*.parquet`` files (natural name order), a :class:`StreamSource` (NATS
            JetStream, Redis Streams, …), or an iterable of ``(key, frame)`` pairs (keys: integers >= 0
            or strings, compared naturally) or of bare frames (only for a fresh checkpoint folder).
        checkpoint_dir: the checkpoint folder. When it holds a checkpoint, the run resumes from it and
            ``model`` is ignored; otherwise ``model`` is the starting point.
        checkpoint_every: batches per checkpoint (acknowledgements wait for the checkpoint).
        max_batches: stop after learning this many batches. throttle_s: pause after each batch.
        on_bad_record: ``"raise"`` (name batch, source and row), ``"skip"`` the bad rows, or
            ``"quarantine"`` them with their reason into ``dead_letter_dir``.
        on_batch: called after each learned batch with (key, model, the update's metadata).
    """
    if checkpoint_every < 1:
        raise IncrementalInputError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if max_batches is not None and max_batches < 0:
        raise IncrementalInputError(f"max_batches must be >= 0, got {max_batches}")
    check_policy(on_bad_record, dead_letter_dir)
    dead = None if dead_letter_dir is None else Path(dead_letter_dir)
    store = CheckpointStore(checkpoint_dir, keep_last=keep_last)
    for name in store.clean() + ([] if dead is None else remove_temporary(dead)):
        log.info("removed %s, left by a writer that was killed", name)
    ckpt: Checkpoint | None = None
    if store.versions():
        current, ckpt = store.load()
    elif model is not None:
        current = model
    else:
        raise NoStartingModelError(f"{checkpoint_dir} holds no checkpoint: pass a model to start from")
    src = as_source(source)
    resumed = ckpt is not None
    watermark = ckpt.watermark if ckpt else None
    mark = None if watermark is None else natural_key(watermark)
    learned: list[str] | None = None if src.positional else list(ckpt.learned or ()) if ckpt else []
    known = set(learned or ())
    legacy = ckpt is not None and ckpt.learned is None and not src.positional  # saved before the ledger
    processed = skipped = records = rejected = pending = 0
    unacked: list[SourceBatch] = []
    quarantined: list[str] = []
    last = mark
    extra = {"source": src.describe()}
    src.open(watermark)
    try:
        while max_batches is None or processed < max_batches:
            batch = src.poll()
            if batch is None:
                break
            if isinstance(src, IterableSource) and not src.keyed and resumed:
                raise StreamSourceError(
                    f"{checkpoint_dir} already holds a checkpoint (watermark {watermark!r}), and bare frames "
                    "cannot resume: frame 0 of this list need not be the batch learned as frame 0. Pass "
                    "(key, frame) pairs with keys that increase along the stream")
            k = natural_key(batch.key)
            if mark is not None and k <= mark:
                if src.positional or batch.key in known or legacy:
                    skipped += 1  # learned before (a redelivery or a rerun): recognised, not learned again
                    if src.positional:
                        src.ack([batch])  # its checkpoint is durable already
                    continue
                raise StreamSourceError(
                    f"batch {batch.key!r} ({batch.origin}) sorts at or below the watermark {watermark!r} but was "
                    "never learned; it would be skipped silently. Give it a key that sorts after the "
                    "watermark (file names are compared naturally: batch-9 < batch-10), or learn it into "
                    "a new checkpoint folder")
            if last is not None and k <= last:
                raise StreamSourceError(
                    f"batch keys must increase: {batch.key!r} after {last[1]!r}; name files in stream order")
            screened = screen(batch.frame, feature_names=getattr(current, "feature_names_in_", None),
                              needs_entity=type(current).__name__ == "GLMix")
            if screened.n_rejected:
                if on_bad_record == "raise":
                    raise_bad(screened.rejected, key=batch.key, origin=batch.origin)
                if on_bad_record == "quarantine":
                    assert dead is not None
                    quarantined.append(str(quarantine(screened.rejected, key=batch.key, origin=batch.origin,
                                                      directory=dead)))
                rejected += screened.n_rejected
            current.partial_fit(screened.learnable)
            processed += 1
            pending += 1
            records += len(screened.good)
            last = k
            if learned is not None:
                learned.append(batch.key)
            unacked.append(batch)
            if pending >= checkpoint_every:
                ckpt = store.save(current, watermark=batch.key, learned=learned, extra=extra)
                pending = 0
                src.ack(unacked)  # only now: the checkpoint holding these batches is durable
                unacked = []
            if on_batch is not None:
                on_batch(batch.key, current, dict(getattr(current, "last_metadata_", {})))
            if throttle_s:
                time.sleep(throttle_s)
        if pending:
            ckpt = store.save(current, watermark=_key_text(last), learned=learned, extra=extra)
            pending = 0
        if unacked:
            src.ack(unacked)
    finally:
        src.close()
    return StreamResult(current, ckpt, processed, skipped, records, rejected, tuple(quarantined))


def _key_text(key: tuple[tuple[Any, ...], str] | None) -> str | None:
    return None if key is None else key[1]
