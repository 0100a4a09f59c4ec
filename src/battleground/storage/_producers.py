"""Per-producer sequence numbers (issue 19 §4), as Kafka's idempotent producer has them.

A producer may tag each batch with its id and a sequence number (0, 1, 2, … one per batch, a retry
keeping its number). The store records ``(producer, sequence)`` in the same transaction as the batch's
events, so a batch and its record are stored together or not at all, and classifies each tagged batch
against what the producer sent before:

* ``"next"``: the producer's first batch, or one more than its highest sequence;
* ``"gap"``: beyond that: the batches in between (:attr:`SequenceCheck.missing`) have not arrived (lost,
  or still on their way); the batch is stored;
* ``"late"``: below the highest but never seen: a batch that was missing arrives, and is stored;
* ``"replay"``: this ``(producer, sequence)`` was stored before: a retry of a batch whose reply was lost.
  Its rows go through the idempotent insert all the same (a row stored then with the same content
  counts as a *replay*, not a duplicate; changed content is still a conflict).

Writers of one producer are serialised (PostgreSQL: an advisory lock per producer; DuckDB: the store's
lock), so the check is exact under concurrent retries.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from battleground.storage.events import WriteResult

__all__ = [
    "LOOKUP_SQL",
    "PRODUCER_SCHEMA",
    "RECORD_SQL",
    "ProducerBatch",
    "SequenceCheck",
    "check_params",
    "check_sequence",
    "written",
]

PRODUCER_SCHEMA = """
CREATE TABLE IF NOT EXISTS producer_batches (
    producer VARCHAR NOT NULL,
    sequence BIGINT NOT NULL,
    received BIGINT NOT NULL,
    inserted BIGINT NOT NULL,
    stored_at TIMESTAMP NOT NULL,
    PRIMARY KEY (producer, sequence)
)
"""

# The producer's highest stored sequence, and whether this one was stored (1) or not (0 / NULL).
LOOKUP_SQL = (
    "SELECT max(sequence), max(CASE WHEN sequence = :sequence THEN 1 ELSE 0 END) "
    "FROM producer_batches WHERE producer = :producer"
)
RECORD_SQL = (
    "INSERT INTO producer_batches (producer, sequence, received, inserted, stored_at) "
    "VALUES (:producer, :sequence, :received, :inserted, :stored_at)"
)

MAX_SEQUENCE = 2**63 - 1


@dataclass(frozen=True)
class ProducerBatch:
    """The producer tag of one batch: the producer's id and the batch's sequence number."""

    producer: str
    sequence: int

    def params(self) -> dict[str, Any]:
        return {"producer": self.producer, "sequence": self.sequence}


@dataclass(frozen=True)
class SequenceCheck:
    """How a tagged batch relates to what its producer sent before (see the module docstring).

    Attributes:
        producer, sequence: the batch's tag.
        status: ``"next"``, ``"gap"``, ``"late"`` or ``"replay"``.
        previous: the producer's highest sequence stored before this batch (``None``: its first).
        missing: for a gap, the first and last sequence numbers skipped.

    Example:
        >>> check_sequence(ProducerBatch("shop-1", 7), previous=4, seen=False)
        SequenceCheck(producer='shop-1', sequence=7, status='gap', previous=4, missing=(5, 6))
    """

    producer: str
    sequence: int
    status: str
    previous: int | None = None
    missing: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"producer": self.producer, "sequence": self.sequence, "status": self.status,
                "previous": self.previous, "missing": list(self.missing) if self.missing else None}


def check_sequence(batch: ProducerBatch, *, previous: int | None, seen: bool) -> SequenceCheck:
    """Classify a tagged batch from the producer's highest stored sequence and whether its own was."""
    if seen:
        status, missing = "replay", None
    elif previous is None or batch.sequence == previous + 1:
        status, missing = "next", None
    elif batch.sequence > previous + 1:
        status, missing = "gap", (previous + 1, batch.sequence - 1)
    else:
        status, missing = "late", None
    return SequenceCheck(batch.producer, batch.sequence, status, previous, missing)


def check_params(batch: ProducerBatch | None, received: int, inserted: int) -> dict[str, Any]:
    """The parameters of :data:`RECORD_SQL`."""
    assert batch is not None
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return {**batch.params(), "received": int(received), "inserted": int(inserted), "stored_at": now}


def written(inserted: int, duplicates: int, conflicts: int, check: SequenceCheck | None) -> WriteResult:
    """The :class:`WriteResult` of a write; in a replayed batch the rows stored as they were are replays."""
    from battleground.storage.events import WriteResult

    if check is not None and check.status == "replay":
        return WriteResult(inserted, 0, conflicts, replays=duplicates, sequence=check)
    return WriteResult(inserted, duplicates, conflicts, sequence=check)
