"""Streaming updates with versioned, atomic checkpoints and a watermark, so restarts never double count."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from battleground.errors import IncrementalError
from battleground.incremental._records import IncrementalInputError

if TYPE_CHECKING:
    import pandas as pd

    from battleground.incremental._fast import SequentialBayesianLogisticRegression
    from battleground.incremental._glmix import GLMix

    Model = GLMix | SequentialBayesianLogisticRegression

_FILE = re.compile(r"^model-v(\d{6,})\.npz$")


class CheckpointNotFoundError(IncrementalError, LookupError):
    """No checkpoint (or not the version asked for) in the checkpoint folder."""


@dataclass(frozen=True)
class Checkpoint:
    """One saved model version; ``watermark`` is the key of the last batch it has learned from."""

    version: int
    watermark: str | None
    path: Path
    created_at: str
    kind: str
    n_batches: int


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path`` (atomic on POSIX)."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


class CheckpointStore:
    """Versioned model checkpoints in one folder: ``model-v000001.npz``, … plus a ``LATEST.json`` pointer.

    A version file holds the model's arrays and, in the same file, its metadata and watermark, so the
    model and the position in the stream can never disagree. The newest complete version file wins;
    ``LATEST.json`` is a convenience for people and is rewritten after each save.
    """

    def __init__(self, directory: str | os.PathLike[str], *, keep_last: int = 5) -> None:
        if keep_last < 1:
            raise IncrementalInputError(f"keep_last must be >= 1, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last

    def versions(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        out = []
        for entry in os.scandir(self.directory):
            m = _FILE.match(entry.name)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def path_of(self, version: int) -> Path:
        return self.directory / f"model-v{version:06d}.npz"

    def latest(self) -> Checkpoint | None:
        versions = self.versions()
        return self.info(versions[-1]) if versions else None

    def info(self, version: int) -> Checkpoint:
        with np.load(self.path_of(version), allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
        return self._checkpoint(version, meta)

    def _checkpoint(self, version: int, meta: dict[str, Any]) -> Checkpoint:
        return Checkpoint(version, meta.get("watermark"), self.path_of(version), meta["created_at"],
                          meta["model"]["kind"], int(meta["model"]["n_batches"]))

    def save(self, model: Model, *, watermark: str | None, extra: dict[str, Any] | None = None) -> Checkpoint:
        """Write the next version atomically (temp file + rename) and prune old versions."""
        self.directory.mkdir(parents=True, exist_ok=True)
        versions = self.versions()
        version = (versions[-1] + 1) if versions else 1
        arrays, model_meta = model.get_state()
        meta = {"version": version, "watermark": watermark, "model": model_meta,
                "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"), "extra": extra or {}}
        payload: dict[str, Any] = dict(arrays, __meta__=np.array(json.dumps(meta)))
        _atomic_write(self.path_of(version), lambda fh: np.savez(fh, **payload))
        pointer = json.dumps({"version": version, "watermark": watermark, "file": self.path_of(version).name})
        _atomic_write(self.directory / "LATEST.json", lambda fh: fh.write(pointer.encode()))
        for old in versions[: max(0, len(versions) + 1 - self.keep_last)]:
            self.path_of(old).unlink(missing_ok=True)
        return self._checkpoint(version, meta)

    def load(self, version: int | None = None) -> tuple[Model, Checkpoint]:
        """The model of ``version`` (default: the newest) and its checkpoint record."""
        if version is None:
            versions = self.versions()
            if not versions:
                raise CheckpointNotFoundError(f"no checkpoint in {self.directory}; run `battleground incremental run` first")
            version = versions[-1]
        path = self.path_of(version)
        if not path.exists():
            raise CheckpointNotFoundError(f"checkpoint version {version} not found in {self.directory}")
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
        return _model_from_state(arrays, meta["model"]), self._checkpoint(version, meta)


def _model_from_state(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Model:
    from battleground.incremental._fast import SequentialBayesianLogisticRegression
    from battleground.incremental._glmix import GLMix

    kinds: dict[str, Any] = {"glmix": GLMix, "single": SequentialBayesianLogisticRegression}
    if meta["kind"] not in kinds:
        raise IncrementalInputError(f"unknown model kind {meta['kind']!r} in checkpoint; expected one of {sorted(kinds)}")
    return kinds[meta["kind"]].from_state(arrays, meta)  # type: ignore[no-any-return]


def load_model(checkpoint_dir: str | os.PathLike[str], version: int | None = None) -> Model:
    """The newest (or the given) model version in a checkpoint folder, ready to score from Python."""
    return CheckpointStore(checkpoint_dir).load(version)[0]


def iter_batches(source: str | os.PathLike[str] | Iterable[Any]) -> Iterator[tuple[str, pd.DataFrame]]:
    """(key, frame) pairs: a folder's ``*.parquet`` files in name order (key = file name), or an
    iterable of frames (key = zero-padded position) or of ``(key, frame)`` pairs. Keys must increase."""
    import pandas as pd

    if isinstance(source, str | os.PathLike):
        folder = Path(source)
        if not folder.is_dir():
            raise IncrementalInputError(f"source {folder} is not a folder of Parquet files")
        for path in sorted(folder.glob("*.parquet")):
            yield path.name, pd.read_parquet(path)
        return
    for i, item in enumerate(source):
        if isinstance(item, tuple):
            key, frame = item
            yield str(key), frame
        else:
            yield f"{i:09d}", item


@dataclass(frozen=True)
class StreamResult:
    model: Any
    checkpoint: Checkpoint | None
    processed: int
    skipped: int
    records: int


def run_stream(
    source: str | os.PathLike[str] | Iterable[Any],
    checkpoint_dir: str | os.PathLike[str],
    *,
    model: Model | None = None,
    checkpoint_every: int = 1,
    keep_last: int = 5,
    max_batches: int | None = None,
    throttle_s: float = 0.0,
    on_batch: Callable[[str, Model, dict[str, Any]], None] | None = None,
) -> StreamResult:
    """Update a model from a stream of mini-batches, checkpointing as it goes.

    Resumes from the newest checkpoint in ``checkpoint_dir`` when there is one (``model`` is then only
    used when the folder is empty): batches whose key is at or below the checkpoint's watermark are
    skipped, so a restart after a crash (even SIGKILL) never learns from a batch twice.
    """
    if checkpoint_every < 1:
        raise IncrementalInputError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    store = CheckpointStore(checkpoint_dir, keep_last=keep_last)
    ckpt: Checkpoint | None = None
    if store.versions():
        current, ckpt = store.load()
    elif model is not None:
        current = model
    else:
        raise IncrementalInputError(f"{checkpoint_dir} holds no checkpoint: pass a model to start from")
    watermark = ckpt.watermark if ckpt else None
    processed = skipped = records = 0
    pending = 0
    last_key = watermark
    for key, frame in iter_batches(source):
        if last_key is not None and key <= last_key:
            if watermark is not None and key <= watermark:
                skipped += 1
                continue
            raise IncrementalInputError(f"batch keys must increase: {key!r} after {last_key!r}; name files in stream order")
        if max_batches is not None and processed >= max_batches:
            break
        current.partial_fit(frame)
        processed += 1
        pending += 1
        records += len(frame)
        last_key = key
        if pending >= checkpoint_every:
            ckpt = store.save(current, watermark=key)
            pending = 0
        if on_batch is not None:
            on_batch(key, current, dict(getattr(current, "last_metadata_", {})))
        if throttle_s:
            time.sleep(throttle_s)
    if pending:
        ckpt = store.save(current, watermark=last_key)
    return StreamResult(current, ckpt, processed, skipped, records)
