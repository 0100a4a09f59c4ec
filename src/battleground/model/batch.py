"""Batch scoring with the champion: chunked (bounded memory), in parallel processes, Parquet in and out.

A Parquet input is read ``chunk_rows`` rows at a time (``ParquetFile.iter_batches``, only the model's
feature columns and the id columns); each chunk is scored in one of ``workers`` processes (by default one
per CPU core, each model call limited to its share of the cores) that got the fitted model once, at
start-up; the results are written in input order through one ``ParquetWriter`` (or CSV writer) while the
workers score the next chunks. At most ``2 × workers`` chunks are in flight, so memory stays near the
model plus a few chunks whatever the file's size. CSV and JSON inputs are read whole (then scored the
same way). A LightGBM champion's trees are walked compiled (:mod:`battleground.model._trees`): the
booster's own numbers in about half its time.

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

__all__ = ["BatchResult", "batch_predict", "check_paths", "cores"]

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
    peak_in_flight: int = 1  # the most chunks submitted and not yet written (at most 2 x workers)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "output": str(self.output)}


# -- the worker side: the model arrives once, through the pool's initializer -------------------------
IN_FLIGHT_PER_WORKER = 2  # chunks submitted per worker before the oldest is awaited: memory is bounded by it
# inputs of fewer rows keep LightGBM's own walk: importing numba and loading the compiled walk costs about
# a second, what the compiled walk saves on some 100k rows
COMPILED_MIN_ROWS = 100_000


class _Scorer:
    """Scores chunks with the champion's model. For our LightGBM :class:`~battleground.model.train.Trainer`
    (plain or calibrated) each chunk becomes LightGBM's float matrix once and each booster walks it compiled
    (:mod:`battleground.model._trees`, the same numbers as the booster); any other model, or no numba:
    :func:`~battleground.model.serve.score_frame`, as the server scores. ``compiled=False``: never the
    compiled walk."""

    def __init__(self, model: Any, compiled: bool = True) -> None:
        from battleground.model._trees import compile_booster

        self.model = model
        self.compiled: list[tuple[Any, Any]] = []
        boosters = _lightgbm_boosters(model) if compiled else []
        for booster in boosters:
            walk = compile_booster(booster)
            if walk is None:  # not covered (or no numba): the boosters predict themselves
                self.compiled = []
                break
            self.compiled.append((booster, walk))
        if self.compiled:  # compile (or load numba's cache) here, before workers fork: once per run
            import numpy as np

            first = self.compiled[0][1]
            first.predict(np.zeros((1, first.n_features)), True)
            if first.sigmoid is not None:
                first.predict(np.zeros((1, first.n_features)), False)

    def _walk(self, booster: Any, mat: np.ndarray, raw_score: bool) -> np.ndarray | None:
        for known, walk in self.compiled:
            if known is booster:
                return walk.predict(mat, raw_score)  # type: ignore[no-any-return]
        return None

    def score(self, frame: Any) -> np.ndarray:
        """P(class 1) per row (a regressor: the predicted values)."""
        if self.compiled:
            proba = self.model._fast_proba(frame, booster_predict=self._walk)
            if proba is not None:
                return proba[:, 1].astype(float, copy=False)  # type: ignore[no-any-return]
        from battleground.model.serve import score_frame

        return score_frame(self.model, frame)  # type: ignore[no-any-return]

    def limit_threads(self, threads: int) -> None:
        """At most ``threads`` threads per model call (a worker's share of the cores): LightGBM and
        XGBoost estimators trained with more, or with all cores (``n_jobs=-1``), are capped."""
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)  # OpenMP and BLAS of everything else in this process
        for est in _members(self.model):
            n_jobs = getattr(est, "n_jobs", None)
            if type(est).__name__ in ("LGBMClassifier", "LGBMRegressor", "XGBClassifier", "XGBRegressor") and (
                    n_jobs is None or not 1 <= int(n_jobs) <= threads):
                est.n_jobs = threads
                if type(est).__name__.startswith("XGB") and getattr(est, "_Booster", None) is not None:
                    est.get_booster().set_param({"nthread": threads})


def _members(model: Any) -> list[Any]:
    """The fitted estimators inside ``model``: a Trainer's, a calibrated model's folds, a pipeline's steps,
    a voting model's members."""
    out, todo = [], [model]
    while todo:
        est = todo.pop()
        out.append(est)
        inner = getattr(est, "estimator_", None)
        todo += [inner] if inner is not None and inner is not est else []
        todo += [cc.estimator for cc in getattr(est, "calibrated_classifiers_", None) or []]
        todo += [step for _, step in getattr(est, "steps", None) or [] if hasattr(step, "get_params")]
        todo += list(getattr(est, "estimators_", None) or []) if type(est).__name__.startswith("Voting") else []
    return out


def _lightgbm_boosters(model: Any) -> list[Any]:
    """The boosters a LightGBM Trainer's ``_fast_proba`` calls, in order; [] for any other model."""
    if getattr(model, "kind_", None) != "lightgbm" or not hasattr(model, "_fast_proba"):
        return []
    est = model.estimator_
    calibrated = getattr(est, "calibrated_classifiers_", None)
    members = [cc.estimator for cc in calibrated] if calibrated is not None else [est]
    boosters = [getattr(m, "booster_", None) for m in members]
    return boosters if all(b is not None for b in boosters) else []


_WORKER_SCORER: _Scorer | None = None


def _init_worker(scorer: _Scorer, threads: int) -> None:
    global _WORKER_SCORER
    scorer.limit_threads(threads)  # this worker's copy: workers x threads stays within the cores
    _WORKER_SCORER = scorer


def _score_in_worker(batch: pa.RecordBatch, features: Sequence[str]) -> np.ndarray:
    assert _WORKER_SCORER is not None, "the pool's initializer sets the scorer"
    return _score_batch(_WORKER_SCORER, batch, features)


def _score_batch(scorer: _Scorer, batch: pa.RecordBatch, features: Sequence[str]) -> np.ndarray:
    return scorer.score(batch.select(list(features)).to_pandas())


def cores() -> int:
    """CPU cores this process may run on (its affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
             chunk_rows: int) -> tuple[Iterator[pa.RecordBatch], list[str], int]:
    """(the input's chunks, the id columns it has, its rows); the columns are checked before anything is
    read."""
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
        return pf.iter_batches(batch_size=chunk_rows, columns=wanted, use_threads=False), ids, pf.metadata.num_rows
    import pandas as pd

    try:
        frame = pd.read_csv(input) if input.suffix.lower() == ".csv" else pd.read_json(input)
    except ValueError as exc:
        raise ModelInputError(f"input={str(input)!r} could not be read: {exc}") from exc
    _check_columns(input, [str(c) for c in frame.columns], features)
    ids = [c for c in id_columns if c in frame.columns and c not in features]
    table = pa.Table.from_pandas(frame[[*ids, *features]], preserve_index=False)
    del frame
    return iter(table.to_batches(max_chunksize=chunk_rows)), ids, table.num_rows


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
    workers: int | None = None,
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
        workers: processes scoring chunks (1: score in this process); None: one per CPU core (at most
            one per chunk), each model call then limited to its share of the cores.
        id_columns: input columns copied to the output when present (``char_id`` by default).

    Returns:
        a :class:`BatchResult`. Raises :class:`~battleground.model.data.ModelInputError` naming the
        path or column for a missing file, a bad suffix or a missing feature column (no output written).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ModelInputError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ModelInputError(f"workers must be an integer >= 1, got {workers!r}; use 1 to score in this process")
    src, dst = Path(input), Path(output)
    check_paths(src, dst)
    from battleground.model.serve import scoring_model

    started = time.perf_counter()
    features = champion.feature_names
    if not features:
        raise ModelInputError(f"model {champion.name} v{champion.version} records no input schema; "
                              "re-train it with battleground to score files in batches")
    batches, ids, total = _batches(src, features, id_columns, chunk_rows)
    if workers is None:
        workers = max(1, min(cores(), -(-total // chunk_rows)))
    scorer = _Scorer(scoring_model(champion), compiled=total >= COMPILED_MIN_ROWS)
    writer = _Writer(dst)
    rows = chunks = peak = 0
    threshold = None if champion.task == "regression" else champion.threshold

    def emit(batch: pa.RecordBatch, proba: np.ndarray) -> None:
        nonlocal rows, chunks
        writer.write(_output_table(batch, ids, proba, threshold))
        rows += batch.num_rows
        chunks += 1

    try:
        if workers == 1:
            for batch in batches:
                peak = 1
                emit(batch, _score_batch(scorer, batch, features))
        else:
            import multiprocessing as mp
            from concurrent.futures import Future, ProcessPoolExecutor

            # fork where there is one: the workers share the loaded model's pages instead of unpickling it
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
            pending: deque[tuple[pa.RecordBatch, Future[np.ndarray]]] = deque()
            threads = max(1, cores() // workers)
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(scorer, threads)) as pool:
                try:
                    # this process reads the next chunks and writes finished ones while the workers score
                    for batch in batches:
                        pending.append((batch, pool.submit(_score_in_worker, batch, features)))
                        peak = max(peak, len(pending))
                        if len(pending) >= IN_FLIGHT_PER_WORKER * workers:  # bounded: a few chunks, not the file
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
                       model=champion.name, version=champion.version, seconds=time.perf_counter() - started,
                       peak_in_flight=peak)


def _id_field(src: Path, column: str) -> pa.Field:
    """The id column's field for an empty output (Parquet knows its type; text inputs give strings)."""
    import pyarrow as pa

    if src.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(src).field(column)
    return pa.field(column, pa.string())
