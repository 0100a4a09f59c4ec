"""The agreement-ledger page: each OPE estimator's track record across experiments, and the entries."""

# no `from __future__ import annotations`: FastAPI reads the annotations of the routes at runtime
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from battleground.web._state import DashboardState

__all__ = ["create_ledger_router"]


def create_ledger_router(state: DashboardState) -> APIRouter:
    """``GET /ledger`` (the page) and ``GET /api/ledger`` (the same as JSON)."""
    from battleground.web._pages import templates

    router = APIRouter()
    tpl = templates()

    def _read() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        from battleground.decisions._ledger import Ledger, track_record

        entries = Ledger(state.settings).entries()
        return [t.to_dict() for t in track_record(entries)], [e.to_dict() for e in entries]

    @router.get("/ledger", response_class=HTMLResponse, include_in_schema=False)
    def ledger_page(request: Request) -> HTMLResponse:
        records, entries = _read()
        session = state.sessions.of(request)
        return tpl.TemplateResponse(request, "web/ledger.html.j2", {
            "title": "OPE agreement ledger", "nav": "ledger", "plotly": False, "read_only": state.read_only,
            "user": session.actor if session else None, "csrf": session.csrf if session else "",
            "records": records, "entries": entries,
        })

    @router.get("/api/ledger")
    def ledger_api() -> dict[str, object]:
        records, entries = _read()
        return {"track_record": records, "entries": entries}

    return router
