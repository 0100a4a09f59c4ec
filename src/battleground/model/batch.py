"""Batch scoring with the champion: chunked (bounded memory), in parallel processes, Parquet in and out.

A Parquet input is read ``chunk_rows`` rows at a time (``ParquetFile.iter_batches``, only the model's
feature columns and the id columns); each chunk is scored in one of ``workers`` processes that got the
fitted model once, at start-up; the results are written in input order through one ``ParquetWriter``
(or CSV writer). At most ``2 × workers`` chunks are in flight, so memory stays near the model plus a
few chunks whatever the file's size. CSV and JSON inputs are read whole (then scored the same way).

The output is written to a hidden temporary file beside ``output`` and renamed into place only when
every row is scored: a bad input (missing file, missing column) or a failed chunk leaves no output.

Example:
    >>> from battleground.model.batch import batch_predict  # doctest: +SKIP
    >>> batch_predict(load_champion(settings), "features.parquet", "scores.parquet", workers=2)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground._suggest import suggest
from battleground.model.data import ModelInputError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from battleground.model.tracking import Champion

__all__ = ["BatchResult", "batch_predict", "check_paths"]

INPUTS = (".parquet", ".csv", ".json")
OUTPUTS = (".parquet", ".csv")
DEFAULT_ID_COLUMNS = ("char_id",)


@dataclass(frozen=True)
class BatchResult:
    """What one batch run wrote: ``rows`` scored in ``chunks`` by ``workers`` processes."""

    output: Path
    rows: int
    chunks: int
    workers: int
    chunk_rows: int
    model: str
    version: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "output": str(self.output)}


# -- the worker side: the model arrives once, through the pool's initializer -------------------------
_WORKER_MODEL: Any = None


def _init_worker(model: Any) -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = model


def _score_in_worker(batch: pa.RecordBatch, features: Sequence[str]) -> np.ndarray:
    return _score_batch(_WORKER_MODEL, batch, features)


def _score_batch(model: Any, batch: pa.RecordBatch, features: Sequence[str]) -> np.ndarray:
    from battleground.model.serve import score_frame

    return score_frame(model, batch.select(list(features)).to_pandas())


# -- reading ---------------------------------------------------------------------------------------
def check_paths(input: Path, output: Path) -> None:
    """Suffixes known, the input a file, the output another file (else ModelInputError naming the path)."""
    if input.suffix.lower() not in INPUTS:
        raise ModelInputError(f"input={str(input)!r} has suffix {input.suffix!r}; use one of {list(INPUTS)}")
    if output.suffix.lower() not in OUTPUTS:
        raise ModelInputError(f"output={str(output)!r} has suffix {output.suffix!r}; use one of {list(OUTPUTS)}")
    if not input.is_file():
        raise ModelInputError(f"input={str(input)!r} does not exist (or is not a file); check the path")
    if output.resolve() == input.resolve():
        raise ModelInputError(f"output={str(output)!r} is the input file; write the predictions elsewhere")


def _check_columns(input: Path, columns: Sequence[str], features: Sequence[str]) -> None:
    missing = [c for c in features if c not in columns]
    if missing:
        raise ModelInputError(f"input {str(input)!r} lacks the model's feature column(s) {missing}"
                              f"{suggest(missing[0], list(columns))}; it has {list(columns)}")


def _batches(input: Path, features: Sequence[str], id_columns: Sequence[str],
             chunk_rows: int) -> tuple[Iterator[pa.RecordBatch], list[str]]:
    """(the input's chunks, the id columns it has); the columns are checked before anything is read."""
    import pyarrow as pa

    if input.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(input)
        except pa.ArrowException as exc:
            raise ModelInputError(f"input={str(input)!r} is not a readable Parquet file: {exc}") from exc
        names = list(pf.schema_arrow.names)
        _check_columns(input, names, features)
        ids = [c for c in id_columns if c in names and c not in features]
        wanted = [*ids, *features]
        return pf.iter_batches(batch_size=chunk_rows, columns=wanted, use_threads=False), ids
    import pandas as pd

    try:
        frame = pd.read_csv(input) if input.suffix.lower() == ".csv" else pd.read_json(input)
    except ValueError as exc:
        raise ModelInputError(f"input={str(input)!r} could not be read: {exc}") from exc
    _check_columns(input, [str(c) for c in frame.columns], features)
    ids = [c for c in id_columns if c in frame.columns and c not in features]
    table = pa.Table.from_pandas(frame[[*ids, *features]], preserve_index=False)
    del frame
    return iter(table.to_batches(max_chunksize=chunk_rows)), ids


# -- writing ---------------------------------------------------------------------------------------
class _Writer:
    """Parquet or CSV, streamed to a temporary file that becomes ``output`` on :meth:`commit`."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.tmp = output.with_name(f".{output.name}.{uuid.uuid4().hex[:8]}.partial")
        self._writer: Any = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            if self.output.suffix.lower() == ".parquet":
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(self.tmp, table.schema)
            else:
                import pyarrow.csv as pcsv

                self._writer = pcsv.CSVWriter(self.tmp, table.schema)
        self._writer.write_table(table)

    def commit(self, empty: pa.Schema) -> None:
        if self._writer is None:  # no rows: still a valid (empty) file with the output's columns
            import pyarrow as pa

            self.write(pa.Table.from_batches([], schema=empty))
        self._writer.close()
        os.replace(self.tmp, self.output)

    def discard(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the run already failed; no partial file may stay
                self._writer.close()
        self.tmp.unlink(missing_ok=True)


def _output_table(batch: pa.RecordBatch, ids: Sequence[str], proba: np.ndarray, threshold: float | None) -> pa.Table:
    """The id columns and ``churn_probability``/``churn_label``; ``threshold=None`` (a regression
    champion): the id columns and ``prediction``, the predicted values."""
    import numpy as np
    import pyarrow as pa

    cols = {c: batch.column(c) for c in ids}
    if threshold is None:
        cols["prediction"] = pa.array(np.asarray(proba, dtype=np.float64))
        return pa.table(cols)
    cols["churn_probability"] = pa.array(np.asarray(proba, dtype=np.float64))
    cols["churn_label"] = pa.array((np.asarray(proba) >= threshold).astype(np.int64))  # the model's own threshold
    return pa.table(cols)


def batch_predict(
    champion: Champion,
    input: str | Path,
    output: str | Path,
    *,
    chunk_rows: int = 100_000,
    workers: int = 1,
    id_columns: Sequence[str] = DEFAULT_ID_COLUMNS,
) -> BatchResult:
    """Score every row of ``input`` with ``champion``; write its id columns, ``churn_probability`` and
    ``churn_label`` (at the model's threshold) to ``output`` in the input's row order. A regression
    champion (``champion.task == 'regression'``) writes the id columns and ``prediction`` instead.

    Args:
        champion: the loaded model (:func:`battleground.model.tracking.load_champion`).
        input: ``.parquet`` (read in chunks), ``.csv`` or ``.json`` (records) holding the feature columns.
        output: ``.parquet`` or ``.csv``; replaced only when every row is scored.
        chunk_rows: rows per chunk (memory grows with it, per-chunk overhead shrinks).
        workers: processes scoring chunks (1: score in this process).
        id_columns: input columns copied to the output when present (``char_id`` by default).

    Returns:
        a :class:`BatchResult`. Raises :class:`~battleground.model.data.ModelInputError` naming the
        path or column for a missing file, a bad suffix or a missing feature column (no output written).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ModelInputError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ModelInputError(f"workers must be an integer >= 1, got {workers!r}; use 1 to score in this process")
    src, dst = Path(input), Path(output)
    check_paths(src, dst)
    from battleground.model.serve import scoring_model

    started = time.perf_counter()
    features = champion.feature_names
    if not features:
        raise ModelInputError(f"model {champion.name} v{champion.version} records no input schema; "
                              "re-train it with battleground to score files in batches")
    batches, ids = _batches(src, features, id_columns, chunk_rows)
    model = scoring_model(champion)
    writer = _Writer(dst)
    rows = chunks = 0
    threshold = None if champion.task == "regression" else champion.threshold

    def emit(batch: pa.RecordBatch, proba: np.ndarray) -> None:
        nonlocal rows, chunks
        writer.write(_output_table(batch, ids, proba, threshold))
        rows += batch.num_rows
        chunks += 1

    try:
        if workers == 1:
            for batch in batches:
                emit(batch, _score_batch(model, batch, features))
        else:
            import multiprocessing as mp
            from concurrent.futures import Future, ProcessPoolExecutor

            # fork where there is one: the workers share the loaded model's pages instead of unpickling it
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
            pending: deque[tuple[pa.RecordBatch, Future[np.ndarray]]] = deque()
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(model,)) as pool:
                try:
                    for batch in batches:
                        pending.append((batch, pool.submit(_score_in_worker, batch, features)))
                        if len(pending) >= 2 * workers:  # bounded: memory holds a few chunks, not the file
                            done, fut = pending.popleft()
                            emit(done, fut.result())
                    while pending:
                        done, fut = pending.popleft()
                        emit(done, fut.result())
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        import pyarrow as pa

        outputs = [pa.field("prediction", pa.float64())] if threshold is None else [
            pa.field("churn_probability", pa.float64()), pa.field("churn_label", pa.int64())]
        empty = pa.schema([*(_id_field(src, c) for c in ids), *outputs])
        writer.commit(empty)
    except BaseException:
        writer.discard()
        raise
    return BatchResult(output=dst, rows=rows, chunks=chunks, workers=workers, chunk_rows=chunk_rows,
                       model=champion.name, version=champion.version, seconds=time.perf_counter() - started)


def _id_field(src: Path, column: str) -> pa.Field:
    """The id column's field for an empty output (Parquet knows its type; text inputs give strings)."""
    import pyarrow as pa

    if src.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(src).field(column)
    return pa.field(column, pa.string())
