"""The ingest call: read, validate against the registry, store in one transaction, say what happened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from battleground.experiment._event_input import (
    EventValidationError,
    RejectedRow,
    read_events_located,
)
from battleground.experiment._event_rules import validate_batch
from battleground.storage._producers import MAX_SEQUENCE, ProducerBatch, SequenceCheck
from battleground.storage.events import EventStore, open_event_store

__all__ = ["IngestResult", "RejectedRow", "SequenceCheck", "ingest", "registry_of"]


@dataclass(frozen=True)
class IngestResult:
    """What one call to :func:`ingest` did: each received row was inserted, a duplicate or a conflict.

    Attributes:
        received, inserted: rows in the batch and rows stored.
        experiments: ids of the experiments the batch named.
        duplicates: rows whose (experiment, event_id) was already stored, or came earlier in the batch,
            with the same content: a harmless re-send.
        conflicts: rows whose (experiment, event_id) was already stored (or came earlier in the batch)
            with *different* content; the first version is kept. A sender that reuses ids sees it here.
        rejected: with ``partial=True``, the well-formed rows the experiments' rules refused (a time at
            or after the stop, …), each with its row, line, field, event id and reason; not stored.
        replays: rows of a *replayed* batch (its ``producer`` and ``sequence`` were stored before: a
            retry) found stored with the same content; counted here, not under ``duplicates``. A replayed
            row with other content is still a conflict.
        sequence: for a batch sent with ``producer`` and ``sequence``, how it follows the producer's
            earlier batches: ``status`` ``"next"``, ``"gap"`` (with the ``missing`` range), ``"late"``
            (a missing batch arrives) or ``"replay"``.

    Every received row is counted once: ``received == inserted + duplicates + conflicts + replays +
    len(rejected)``.
    """

    received: int
    inserted: int
    experiments: tuple[int, ...] = ()
    duplicates: int = 0
    conflicts: int = 0
    rejected: tuple[RejectedRow, ...] = ()
    replays: int = 0
    sequence: SequenceCheck | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"received": self.received, "inserted": self.inserted, "duplicates": self.duplicates,
                "conflicts": self.conflicts, "replays": self.replays, "experiments": list(self.experiments),
                "rejected": [r.to_dict() for r in self.rejected],
                "sequence": None if self.sequence is None else self.sequence.to_dict()}


def registry_of(store: EventStore) -> Any:
    """The registry that goes with a store."""
    from battleground.experiment.register import Registry

    return Registry(store.registry_url)


def _producer_batch(producer: Any, sequence: Any) -> ProducerBatch | None:
    """The batch's producer tag, checked: both or neither, contract text and a whole number."""
    import numbers

    from battleground._contract import ContractError, check_text

    if producer is None and sequence is None:
        return None
    if producer is None or sequence is None:
        missing = "producer" if producer is None else "sequence"
        raise EventValidationError(f"is missing: a batch tagged with a {'sequence' if producer is None else 'producer'} "
                                   "needs both producer and sequence", field=missing)
    try:
        name = check_text(producer, "producer")
    except ContractError as exc:
        raise EventValidationError(str(exc), field="producer") from None
    if isinstance(sequence, bool) or not isinstance(sequence, numbers.Integral) or not 0 <= int(sequence) <= MAX_SEQUENCE:
        raise EventValidationError(f"must be a whole number from 0 to 2**63-1 (one per batch, a retry keeping "
                                   f"its number), got {sequence!r}", field="sequence")
    return ProducerBatch(name, int(sequence))


def ingest(store: EventStore | Any, data: Any, *, experiment: Any = None, partial: bool = False,
           producer: str | None = None, sequence: int | None = None) -> IngestResult:
    """Validate a batch of events and store it in one transaction, skipping known event_ids.

    A batch is all or nothing by default: when an experiment's rules refuse some well-formed rows (a
    batch straddling the experiment's stop has rows at or after it), nothing is stored and the error
    names every refused row and why (``EventValidationError.rejected``). With ``partial=True`` the
    other rows are stored and the refused ones come back in :attr:`IngestResult.rejected`. A row that
    breaks the input contract refuses the whole batch either way.

    A producer may tag each batch with its id and a sequence number (0, 1, 2, …; a retry keeps its
    number): the tag is stored with the batch, in the same transaction, and the result says whether the
    batch is the producer's next, follows a gap, arrives late or is a replay (see
    :attr:`IngestResult.sequence`); a replay's rows count as ``replays``, not duplicates.

    Args:
        store: an :class:`EventStore`, or anything :func:`open_event_store` accepts (a Settings, a
            folder, a database URL).
        data: a pandas DataFrame, an Arrow table, a Parquet/CSV/JSON-lines file path, a list of dicts
            or a dict of columns (columns as in this module's docstring).
        experiment: the experiment (name or id) of every row, instead of an ``experiment`` column.
        partial: store the rows the experiments accept and return the refused ones (see above).
        producer, sequence: the batch's producer tag (both or neither; see above).

    Raises:
        EventValidationError: on the first bad row; nothing is written.
        StoreUnavailableError: the database server cannot be reached; re-send the batch later.
        StoreRefusedError: the database refused the batch for good (a constraint, a permission, a
            missing table); re-sending will not help.
        StoreLockedError: another process held the embedded store for longer than the wait allows.
    """
    if not isinstance(store, EventStore):
        store = open_event_store(store)
    if not isinstance(partial, bool):
        raise EventValidationError(f"partial must be True or False, got {partial!r}", field="partial")
    tag = _producer_batch(producer, sequence)
    raw, lines = read_events_located(data)
    try:
        table, rejected = validate_batch(raw, registry_of(store), experiment=experiment, partial=partial)
    except EventValidationError as exc:
        if lines is None:
            raise
        raise lines.locate(exc) from None
    except Exception as exc:  # the registry's database failed while checking the batch
        if type(exc).__module__.startswith(("sqlalchemy", "psycopg")):
            from battleground._redact import redact_url
            from battleground.storage._pg import classify_error

            raise classify_error(exc, where=f"the registry at {redact_url(store.registry_url)}",
                                 writing=True) from exc
        raise
    if rejected and lines is not None:
        rejected = lines.placed(rejected)
    written = store.write_batch(table, tag) if tag is not None else store.write_batch(table)
    import pyarrow.compute as pc

    exps = tuple(sorted(int(x) for x in pc.unique(table.column("experiment_id")).to_pylist()))
    return IngestResult(received=table.num_rows + len(rejected), inserted=written.inserted, experiments=exps,
                        duplicates=written.duplicates, conflicts=written.conflicts, rejected=rejected,
                        replays=written.replays, sequence=written.sequence)
