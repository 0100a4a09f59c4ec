"""Versioned, atomic model checkpoints that carry their position in the stream (the watermark)."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from battleground.errors import IncrementalError
from battleground.incremental._records import IncrementalInputError

if TYPE_CHECKING:
    from battleground.incremental._fast import SequentialBayesianLogisticRegression
    from battleground.incremental._glmix import GLMix

    Model = GLMix | SequentialBayesianLogisticRegression

_FILE = re.compile(r"^model-v(\d{6,})\.npz$")
TMP_PREFIX = ".tmp-"


class CheckpointError(IncrementalError, LookupError):
    """No checkpoint where one is needed, or a checkpoint that cannot be used."""


@dataclass(frozen=True)
class Checkpoint:
    """One saved model version; ``watermark`` is the key of the last batch it has learned from.

    ``learned`` lists every batch key the model has learned (folders and keyed iterables, whose keys
    are names, not positions), so a new batch sorting at or below the watermark is told apart from one
    already learned; ``None`` for broker sources, whose keys are positions.
    """

    version: int
    watermark: str | None
    path: Path
    created_at: str
    kind: str
    n_batches: int
    learned: tuple[str, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def fsync_dir(directory: Path) -> None:
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


def atomic_write(path: Path, write: Callable[[Any], None], *, durable: bool = True) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path`` (atomic on POSIX).

    ``durable=False`` skips the fsyncs: still atomic (old or new content), but a power cut may lose it.
    """
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if durable:
        fsync_dir(path.parent)


def remove_temporary(directory: Path) -> list[str]:
    """Delete the ``.tmp-*`` files a killed writer left in ``directory``; returns their names.

    Only the learner (the one writer of a folder) may call this, on start: a reader doing it could
    delete a checkpoint a running learner is writing.
    """
    if not directory.is_dir():
        return []
    removed = []
    for entry in os.scandir(directory):
        if entry.name.startswith(TMP_PREFIX) and entry.is_file():
            Path(entry.path).unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


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
        learned = meta.get("learned")
        return Checkpoint(version, meta.get("watermark"), self.path_of(version), meta["created_at"],
                          meta["model"]["kind"], int(meta["model"]["n_batches"]),
                          None if learned is None else tuple(learned), dict(meta["model"].get("params", {})),
                          dict(meta.get("extra", {})))

    def clear(self) -> None:
        """Delete every version and the pointer (a demo starting over); other files stay."""
        for version in self.versions():
            self.path_of(version).unlink(missing_ok=True)
        (self.directory / "LATEST.json").unlink(missing_ok=True)

    def clean(self) -> list[str]:
        """Remove temporary files left by a killed writer (call on the learner's start only)."""
        return remove_temporary(self.directory)

    def save(self, model: Model, *, watermark: str | None, learned: list[str] | tuple[str, ...] | None = None,
             extra: dict[str, Any] | None = None) -> Checkpoint:
        """Write the next version atomically (temp file + rename) and prune old versions."""
        self.directory.mkdir(parents=True, exist_ok=True)
        versions = self.versions()
        version = (versions[-1] + 1) if versions else 1
        arrays, model_meta = model.get_state()
        meta = {"version": version, "watermark": watermark, "model": model_meta,
                "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"), "extra": extra or {},
                "learned": None if learned is None else list(learned)}
        payload: dict[str, Any] = dict(arrays, __meta__=np.array(json.dumps(meta)))
        atomic_write(self.path_of(version), lambda fh: np.savez(fh, **payload))
        pointer = json.dumps({"version": version, "watermark": watermark, "file": self.path_of(version).name})
        # the pointer is for people (the newest version file wins on load): atomic, not worth two fsyncs
        atomic_write(self.directory / "LATEST.json", lambda fh: fh.write(pointer.encode()), durable=False)
        for old in versions[: max(0, len(versions) + 1 - self.keep_last)]:
            self.path_of(old).unlink(missing_ok=True)
        return self._checkpoint(version, meta)

    def load(self, version: int | None = None) -> tuple[Model, Checkpoint]:
        """The model of ``version`` (default: the newest) and its checkpoint record."""
        if version is None:
            versions = self.versions()
            if not versions:
                raise CheckpointError(
                    f"no checkpoint in {self.directory}; run `battleground incremental run` first")
            version = versions[-1]
        path = self.path_of(version)
        if not path.exists():
            raise CheckpointError(f"checkpoint version {version} not found in {self.directory}")
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
