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
from battleground.storage.events import EventStore, open_event_store

__all__ = ["IngestResult", "RejectedRow", "ingest", "registry_of"]


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
    """

    received: int
    inserted: int
    experiments: tuple[int, ...] = ()
    duplicates: int = 0
    conflicts: int = 0
    rejected: tuple[RejectedRow, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"received": self.received, "inserted": self.inserted, "duplicates": self.duplicates,
                "conflicts": self.conflicts, "experiments": list(self.experiments),
                "rejected": [r.to_dict() for r in self.rejected]}


def registry_of(store: EventStore) -> Any:
    """The registry that goes with a store."""
    from battleground.experiment.register import Registry

    return Registry(store.registry_url)


def ingest(store: EventStore | Any, data: Any, *, experiment: Any = None, partial: bool = False) -> IngestResult:
    """Validate a batch of events and store it in one transaction, skipping known event_ids.

    A batch is all or nothing by default: when an experiment's rules refuse some well-formed rows (a
    batch straddling the experiment's stop has rows at or after it), nothing is stored and the error
    names every refused row and why (``EventValidationError.rejected``). With ``partial=True`` the
    other rows are stored and the refused ones come back in :attr:`IngestResult.rejected`. A row that
    breaks the input contract refuses the whole batch either way.

    Args:
        store: an :class:`EventStore`, or anything :func:`open_event_store` accepts (a Settings, a
            folder, a database URL).
        data: a pandas DataFrame, an Arrow table, a Parquet/CSV/JSON-lines file path, a list of dicts
            or a dict of columns (columns as in this module's docstring).
        experiment: the experiment (name or id) of every row, instead of an ``experiment`` column.
        partial: store the rows the experiments accept and return the refused ones (see above).

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
    written = store.write_batch(table)
    import pyarrow.compute as pc

    exps = tuple(sorted(int(x) for x in pc.unique(table.column("experiment_id")).to_pylist()))
    return IngestResult(received=table.num_rows + len(rejected), inserted=written.inserted, experiments=exps,
                        duplicates=written.duplicates, conflicts=written.conflicts, rejected=rejected)
