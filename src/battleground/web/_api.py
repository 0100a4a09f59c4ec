"""The JSON API under ``/api``: experiments, results, daily series, audit log, leaderboard, bandit
files, and event ingestion (``POST /api/events``, the one write)."""

# no `from __future__ import annotations`: FastAPI reads the annotations of the routes at runtime
import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.security import HTTPBearer
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from battleground._contract import (
    MAX_ABS_VALUE,
    MAX_ID,
    MAX_TEXT,
    ContractError,
    check_experiment_key,
    check_text,
)
from battleground.errors import WebError
from battleground.web._auth import check_write_access
from battleground.web._bandit_views import bandit_files
from battleground.web._experiment_views import (
    audit_dicts,
    experiment_detail,
    experiment_summary,
    record_dict,
    result_records,
)
from battleground.web._model_views import leaderboard
from battleground.web._reads import snapshot_read
from battleground.web._state import DashboardState, check_key
from battleground.web._view_common import frame_records, jsonable, read_only_monitor

__all__ = ["MAX_BATCH", "BatchError", "EventBatch", "EventIn", "IngestResponse", "create_api_router"]

MAX_BATCH = 50_000


def _text(value: str) -> str:
    return check_text(value, "text")


def _plain_time(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if not 1900 <= value.year <= 9998:
        raise ContractError(f"year must be between 1900 and 9998, got {value.year}")
    return value


def _no_epoch(value: Any) -> Any:
    if not isinstance(value, str | dt.datetime | dt.date):
        raise ContractError(f"a time is an ISO 8601 string like '2022-03-05T10:00:00Z', got {value!r}")
    return value


def _int_as_text(value: Any) -> Any:
    """An integer id (not a bool) is its decimal text, as the Python API and the files take it."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
        return str(value)
    return value


def _key(value: int | str) -> int | str:
    return check_experiment_key(value)


# The input contract (battleground._contract), in pydantic's terms: strict types (no "1.5" → 1.5, no
# true → 1.0 or id 1, no bare epoch integers), text of 1-200 characters without control characters,
# numbers within ±1e15.
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, strict=True), AfterValidator(_text)]
# An event's text fields also take a (64-bit) integer, stored as its decimal text: one rule for every
# entry point (experiment/_event_rules.py does the same for Arrow columns).
EventField = Annotated[str, BeforeValidator(_int_as_text), Field(min_length=1, max_length=MAX_TEXT, strict=True),
                      AfterValidator(_text)]
ExperimentKey = Annotated[
    Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
    | Annotated[str, Field(min_length=1, max_length=MAX_TEXT, strict=True)],
    AfterValidator(_key),
]
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE, strict=True)]
Timestamp = Annotated[dt.datetime, BeforeValidator(_no_epoch), AfterValidator(_plain_time)]


class EventIn(BaseModel):
    """One event. ``experiment`` may be left out when the batch names it."""

    model_config = ConfigDict(extra="forbid")

    event_id: EventField = Field(description="unique id of the event; a repeated id is skipped (idempotent)")
    experiment: ExperimentKey | None = Field(None, description="experiment id or name")
    variant: EventField
    user_id: EventField = Field(description="the unit of analysis; an integer is stored as its decimal text")
    event_type: EventField = Field(description="'exposure' assigns the user; others feed metrics")
    timestamp: Timestamp = Field(description="ISO 8601; aware times are converted to UTC")
    value: Finite | None = None
    covariate: Finite | None = Field(None, description="pre-period covariate (CUPED)")


class EventBatch(BaseModel):
    """A batch of events, stored all or nothing."""

    model_config = ConfigDict(extra="forbid")

    experiment: ExperimentKey | None = Field(
        None, description="experiment id or name for events that do not name one"
    )
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)
    partial: bool = Field(False, strict=True, description=(
        "store the events the experiments accept and list those they refuse (a time after the stop, …) "
        "under 'rejected'; by default such a batch is refused whole (422, naming them)"))
    producer: Text | None = Field(None, description=(
        "the sender's id; with 'sequence' a retried batch is detected as a replay and a skipped one as a gap"))
    sequence: Annotated[int, Field(ge=0, le=2**63 - 1, strict=True)] | None = Field(
        None, description="the batch's number for its producer: 0, 1, 2, …; a retry keeps its number")

    @model_validator(mode="after")
    def _every_event_has_an_experiment(self) -> "EventBatch":
        if self.experiment is None:
            for i, e in enumerate(self.events):
                if e.experiment is None:
                    raise ContractError(
                        f"events[{i}].experiment is missing: name the experiment on every event or "
                        "once for the batch ('experiment': <id or name>)"
                    )
        return self


class BatchError(WebError, ValueError):
    """A batch refused as a whole (HTTP 422); ``row`` and ``field`` say where, when known."""

    def __init__(self, message: str, *, row: int | None, field: str | None) -> None:
        super().__init__(message)
        self.row = row
        self.field = field


class RejectedOut(BaseModel):
    row: int = Field(description="0-based position in the batch")
    line: int | None = Field(None, description="the row's line in a CSV or JSON-lines body (1-based)")
    field: str
    event_id: str
    reason: str


class SequenceOut(BaseModel):
    producer: str
    sequence: int
    status: Literal["next", "gap", "late", "replay"] = Field(
        description="next: one more than the highest stored; gap: beyond it (see missing); late: a missing "
                    "batch arrives; replay: stored before (a retry)")
    previous: int | None = Field(None, description="the producer's highest sequence stored before")
    missing: list[int] | None = Field(None, description="for a gap: the first and last sequence skipped")


class IngestResponse(BaseModel):
    received: int
    inserted: int
    duplicates: int = Field(description="re-sent event ids with the same content (skipped)")
    conflicts: int = Field(0, description="re-sent event ids with different content (the stored event is kept)")
    # The fields below are sent only when asked for (null fields are left out of the reply).
    rejected: list[RejectedOut] | None = Field(
        None, description="with partial: the events the experiments refused (not stored)")
    replays: int | None = Field(
        None, description="with producer and sequence: rows of a replayed batch stored before, as they were")
    sequence: SequenceOut | None = Field(None, description="with producer and sequence: how the batch follows "
                                                           "the producer's earlier ones")


# Media types of a JSON-lines body (there is no registered one; these are the ones in use).
_JSONL_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines", "application/jsonlines"})


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """A JSON schema with its ``$ref``s to ``defs`` written out (the route reads its body itself, so
    FastAPI does not list the models among the spec's components)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _events_body() -> dict[str, Any]:
    schema = EventBatch.model_json_schema()
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": _inline(schema, schema.get("$defs", {}))},
        "text/csv": {"schema": {"type": "string", "description": "a header line, then one event a line"}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON event a line"}},
    }}}


def _body_format(content_type: str | None) -> str:
    """``"csv"``, ``"jsonl"`` or ``"json"`` (the default, as FastAPI reads a body without a type)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        return "csv"
    return "jsonl" if kind in _JSONL_TYPES else "json"


def _parse_batch(body: bytes) -> EventBatch:
    """The JSON body as an :class:`EventBatch`; its problems are reported as FastAPI reports a body's."""
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    try:
        return EventBatch.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_url=False)]
        ) from None


_bearer = HTTPBearer(auto_error=False, description="BATTLEGROUND_API_TOKEN; without one the server is read-only")


def create_api_router(state: DashboardState) -> APIRouter:
    """The ``/api`` routes over one :class:`DashboardState`."""
    router = APIRouter(prefix="/api", tags=["api"])
    settings = state.settings

    def require_writer(
        _: Any = Depends(_bearer), authorization: str | None = Header(default=None, include_in_schema=False)
    ) -> None:
        check_write_access(settings.api_token, authorization)

    @router.get("/health")
    def health() -> dict[str, Any]:
        """Liveness, and whether writes are accepted."""
        import battleground

        return {"status": "ok", "version": battleground.__version__, "read_only": state.read_only}

    @router.get("/experiments")
    async def list_experiments(
        request: Request,
        status: Literal["draft", "running", "stopped", "archived"] | None = None,
    ) -> dict[str, Any]:
        """Every experiment with users per variant and the SRM / end-condition badges."""

        def read() -> dict[str, Any]:
            monitor = read_only_monitor(settings, state.sums_cache)
            records = state.registry.list(status=status)
            return {"experiments": [experiment_summary(monitor, r).to_dict() for r in records]}

        return await snapshot_read(request, read)

    @router.get("/experiments/{key}")
    async def get_experiment(request: Request, key: str) -> dict[str, Any]:
        """The registered design: variants, metrics, end conditions, dates."""

        def read() -> dict[str, Any]:
            record = state.registry.get(check_key(key))
            summary = experiment_summary(read_only_monitor(settings, state.sums_cache), record)
            return {"experiment": record_dict(record), "summary": summary.to_dict()}

        return await snapshot_read(request, read)

    @router.get("/experiments/{key}/results")
    async def get_results(
        request: Request,
        key: str,
        start: Annotated[str | None, Query(max_length=40, description="ISO date or datetime")] = None,
        end: Annotated[str | None, Query(max_length=40, description="ISO date (inclusive) or datetime")] = None,
    ) -> dict[str, Any]:
        """One row per metric × variant with lifts, CIs and p-values; the SRM and other data-quality
        checks; the decision of the one decision rule (``verdict``: ship, dont_ship, inconclusive,
        collecting or data_quality; ``clause``: which clause decided; ``variants``: one verdict each);
        ``breakdowns``: per attribute the experiment declares in ``breakdown_by``, every metric's effect
        per slice with corrected p-values and the heterogeneous-effect flags (as ``experiment breakdown
        --json``).
        Rows, daily series and end conditions are computed from one snapshot of the event store."""
        d = await snapshot_read(
            request, lambda: experiment_detail(settings, state.registry, check_key(key), start=start, end=end,
                                               charts=False, cache=state.sums_cache))
        return {
            "experiment_id": d.record.id, "name": d.record.name, "status": d.record.status,
            "rows": result_records(d.result), "srm": jsonable(d.srm.to_dict()) if d.srm else None,
            "data_quality": [jsonable(c.to_dict()) for c in d.result.data_quality] if d.result else [],
            "decision": jsonable(d.decision.to_dict()) if d.decision else None,
            "needed": d.needed or None, "no_data": d.no_data,
            "end_conditions": jsonable(d.end.to_dict()) if d.end else None,
            "breakdowns": [jsonable(b.record()) for b in d.breakdowns],
        }

    @router.get("/experiments/{key}/daily")
    async def get_daily(
        request: Request,
        key: str,
        start: Annotated[str | None, Query(max_length=40, description="ISO date or datetime")] = None,
        end: Annotated[str | None, Query(max_length=40, description="ISO date (inclusive) or datetime")] = None,
    ) -> dict[str, Any]:
        """The results on each day's cumulative data (one block of rows per date), for charts."""
        d = await snapshot_read(
            request, lambda: experiment_detail(settings, state.registry, check_key(key), start=start, end=end,
                                               charts=False, cache=state.sums_cache))
        return {"experiment_id": d.record.id, "rows": frame_records(d.daily), "no_data": d.no_data}

    @router.get("/experiments/{key}/audit")
    def get_audit(key: str) -> dict[str, Any]:
        """Every status change, edit and note, oldest first."""
        record = state.registry.get(check_key(key))
        return {"experiment_id": record.id, "entries": audit_dicts(state.registry.audit_log(record.id))}

    @router.get("/leaderboard")
    def get_leaderboard() -> dict[str, Any]:
        """Model runs of the MLflow store, best validation score first, the champion marked."""
        return leaderboard(settings).to_dict()

    @router.get("/bandit")
    def get_bandit() -> dict[str, Any]:
        """Summaries (CSV, JSON, report.html) found under ``<home>/bandit``."""
        return {"files": [f.to_dict() for f in bandit_files(settings)]}

    @router.post(
        "/events", response_model=IngestResponse, response_model_exclude_none=True,
        dependencies=[Depends(require_writer)],
        openapi_extra=_events_body(),
        responses={
            401: {"description": "missing or wrong token"},
            403: {"description": "read-only server (no token configured)"},
            422: {"description": "bad batch (names the row, the field and, for CSV and JSON lines, the "
                                 "line); nothing was stored"},
        },
    )
    async def post_events(
        request: Request,
        experiment: Annotated[str | None, Query(
            max_length=MAX_TEXT, description="CSV and JSON-lines bodies: the experiment of rows without one")] = None,
        partial: Annotated[bool, Query(description="CSV and JSON-lines bodies: as the JSON batch's 'partial'")] = False,
        producer: Annotated[str | None, Query(max_length=MAX_TEXT, description="CSV and JSON-lines bodies: "
                                                                               "as the JSON batch's")] = None,
        sequence: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="CSV and JSON-lines bodies: "
                                                                              "as the JSON batch's")] = None,
    ) -> IngestResponse:
        """Store a batch of events, all or nothing; event ids already stored for the experiment are skipped
        and counted as duplicates (same content) or conflicts (different content).

        The body is JSON (an ``EventBatch``), CSV (``Content-Type: text/csv``, the first line names the
        columns) or JSON lines (``application/x-ndjson``, one event a line); a bad row of a CSV or
        JSON-lines body is named by its line (1-based; the CSV header is line 1)."""
        from starlette.concurrency import run_in_threadpool

        from battleground.experiment.events import EventText, ingest

        body = await request.body()
        kind = _body_format(request.headers.get("content-type"))
        data: Any
        if kind == "json":
            batch = _parse_batch(body)
            rows = [e.model_dump() for e in batch.events]
            for r in rows:
                # one type for the column: ids and names as text (the registry reads digits as an id)
                r["experiment"] = str(batch.experiment if r["experiment"] is None else r["experiment"])
            data, key, partial = rows, None, batch.partial
            producer, sequence = batch.producer, batch.sequence
        else:
            data = EventText(body, kind)
            try:
                key = None if experiment is None else check_experiment_key(experiment, "experiment")
            except ContractError as exc:
                raise BatchError(str(exc), row=None, field="experiment") from None
            if isinstance(key, str) and key.strip().isdigit():  # an id, as in the CLI's --experiment
                key = int(key)
        try:
            result = await run_in_threadpool(ingest, state.store, data, experiment=key, partial=partial,
                                             producer=producer, sequence=sequence)
        except LookupError as exc:  # an experiment the registry does not know
            raise BatchError(str(exc), row=None, field="experiment") from exc
        return IngestResponse(
            received=int(result.received), inserted=int(result.inserted), duplicates=int(result.duplicates),
            conflicts=int(result.conflicts),
            rejected=[RejectedOut(**r.to_dict()) for r in result.rejected] if partial else None,
            replays=None if result.sequence is None else int(result.replays),
            sequence=None if result.sequence is None else SequenceOut(**result.sequence.to_dict()),
        )

    return router
