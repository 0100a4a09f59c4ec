"""Where mini-batches come from: the :class:`StreamSource` interface, folders and in-memory iterables.

A source hands out mini-batches, each with a **key** that orders it in the stream, and takes an
**acknowledgement** once the batch's checkpoint is durable. Folders and iterables name their batches
(file names, the keys of ``(key, frame)`` pairs); broker sources (:mod:`._nats`, :mod:`._redis`) key a
batch by the broker's position of its last record, so ``positional`` is true and a batch at or below
the watermark can only be a redelivery.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from battleground.errors import IncrementalError

if TYPE_CHECKING:
    from types import TracebackType

    import pandas as pd

_DIGITS = re.compile(r"(\d+)")


class StreamSourceError(IncrementalError, ValueError):
    """A source cannot deliver batches in a usable order, or cannot be resumed."""


def natural_key(key: str) -> tuple[tuple[Any, ...], str]:
    """Sort key that compares digit runs as numbers: ``batch-9`` < ``batch-10``, ``"9"`` < ``"10"``,
    and Redis ids ``1700-2`` < ``1700-10``. Ties (``007`` vs ``7``) fall back to the text."""
    parts = _DIGITS.split(key)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), key


def key_of(value: Any) -> str:
    """A batch key as text; integers (Python or numpy) must be >= 0 so that they sort as numbers."""
    if isinstance(value, bool):
        raise StreamSourceError(f"batch keys must be integers >= 0 or strings, got {value!r}")
    if isinstance(value, int) or type(value).__name__.startswith(("int", "uint")):
        if int(value) < 0:
            raise StreamSourceError(f"integer batch keys must be >= 0 to sort as numbers, got {value!r}")
        return str(int(value))
    if isinstance(value, str):
        if not value:
            raise StreamSourceError("batch keys must not be empty")
        return value
    raise StreamSourceError(f"batch keys must be integers >= 0 or strings, got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class SourceBatch:
    """One mini-batch: its key (order in the stream), the frame, where it came from, and what ``ack`` needs."""

    key: str
    frame: pd.DataFrame
    origin: str
    token: Any = None


class StreamSource(ABC):
    """A stream of mini-batches with durable positions.

    ``open(after)`` starts reading after the checkpoint's watermark (``None``: from the source's own
    start), ``poll()`` returns the next batch or ``None`` when there is nothing more (a finite source is
    exhausted, or a live one has been idle past its limit), ``ack(batch)`` is called only once the
    checkpoint holding the batch is durable, and ``close()`` releases connections. A source is a
    context manager that closes itself.
    """

    #: keys are broker positions: a batch at or below the watermark is a redelivery, skipped and acked
    positional: ClassVar[bool] = False

    def open(self, after: str | None) -> None:  # noqa: B027 - optional hook
        """Prepare to deliver the batches after ``after``."""

    @abstractmethod
    def poll(self) -> SourceBatch | None:
        """The next batch, or None when the source has nothing more to give."""

    def ack(self, batches: list[SourceBatch]) -> None:  # noqa: B027 - optional hook
        """Acknowledge batches whose checkpoint is durable (the broker may forget them)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def describe(self) -> str:
        return type(self).__name__

    def __enter__(self) -> StreamSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class FolderSource(StreamSource):
    """The ``*.parquet`` files of a folder in natural name order (``batch-9`` before ``batch-10``); key =
    file name. Files are listed when the source is opened."""

    def __init__(self, folder: str | os.PathLike[str], *, pattern: str = "*.parquet") -> None:
        self.folder = Path(folder)
        self.pattern = pattern
        self._files: Iterator[Path] | None = None

    def open(self, after: str | None) -> None:
        if not self.folder.is_dir():
            raise StreamSourceError(f"source {self.folder} is not a folder of Parquet files")
        self._files = iter(sorted(self.folder.glob(self.pattern), key=lambda p: natural_key(p.name)))

    def poll(self) -> SourceBatch | None:
        import pandas as pd

        if self._files is None:
            self.open(None)
        assert self._files is not None
        path = next(self._files, None)
        if path is None:
            return None
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # a truncated or foreign file: name it, never a bare pyarrow trace
            raise StreamSourceError(f"cannot read batch {path.name!r} ({path}): {exc}") from exc
        return SourceBatch(path.name, frame, str(path))

    def describe(self) -> str:
        return f"folder {self.folder}"


class IterableSource(StreamSource):
    """In-memory batches: ``(key, frame)`` pairs, or bare frames keyed by position (``000000000``, …).

    Bare frames cannot be resumed (position 0 of a new list need not be the batch learned as position
    0), so :attr:`keyed` tells the runner which kind it got.
    """

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = iter(items)
        self._position = 0
        self.keyed: bool | None = None

    def poll(self) -> SourceBatch | None:
        item = next(self._items, None)
        if item is None:
            return None
        keyed = isinstance(item, tuple)
        if self.keyed is None:
            self.keyed = keyed
        elif keyed != self.keyed:
            raise StreamSourceError(
                f"item {self._position} is {'a (key, frame) pair' if keyed else 'a bare frame'} but the "
                "earlier ones are not: pass only (key, frame) pairs or only frames")
        if keyed:
            if len(item) != 2:
                raise StreamSourceError(f"item {self._position} must be a (key, frame) pair, got {len(item)} values")
            key, frame = key_of(item[0]), item[1]
        else:
            key, frame = f"{self._position:09d}", item
        self._position += 1
        return SourceBatch(key, frame, f"item {self._position - 1}")

    def describe(self) -> str:
        return "iterable"


def as_source(source: str | os.PathLike[str] | StreamSource | Iterable[Any]) -> StreamSource:
    """A :class:`StreamSource` for a folder path, a source, or an iterable of frames / (key, frame) pairs."""
    if isinstance(source, StreamSource):
        return source
    if isinstance(source, str | os.PathLike):
        return FolderSource(source)
    return IterableSource(source)
