"""Server-rendered pages (Jinja2 + Plotly, plotly.js served from the installed package)."""

# no `from __future__ import annotations`: FastAPI reads the annotations of the routes at runtime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from battleground._html import CHARTS_JS, SHARED_SCRIPTS, environment
from battleground.web._bandit_views import bandit_file_path, bandit_files
from battleground.web._experiment_list import (
    SORTS,
    SummaryCache,
    decision_label,
    filter_records,
    owners,
    sort_summaries,
)
from battleground.web._experiment_views import experiment_detail
from battleground.web._model_views import leaderboard, leaderboard_chart
from battleground.web._results_table import results_csv
from battleground.web._state import DashboardState, check_key
from battleground.web._view_common import jsonable, read_only_monitor

__all__ = ["TEMPLATES", "create_page_router", "templates"]

TEMPLATES = Path(__file__).parent / "templates"


def templates() -> Jinja2Templates:
    """The page templates, rendered by the one shared, autoescaping environment."""
    return Jinja2Templates(env=environment())


def create_page_router(state: DashboardState) -> APIRouter:
    """The HTML pages over one :class:`DashboardState`."""
    router = APIRouter(include_in_schema=False)
    settings = state.settings
    tpl = templates()
    list_cache = SummaryCache()

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        context.setdefault("plotly", False)
        session = state.sessions.of(request)
        return tpl.TemplateResponse(request, f"web/{name}", {
            "read_only": state.read_only, "user": session.actor if session else None,
            "csrf": session.csrf if session else "", **context,
        })

    @router.get("/static/plotly.min.js")
    def plotly_js(request: Request) -> Response:
        """plotly.js of the installed package: gzipped by the app's middleware, cached for a day and
        revalidated by its ETag (the plotly version)."""
        import plotly

        etag = f'"plotly-{plotly.__version__}"'
        headers = {"Cache-Control": "public, max-age=86400", "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(state.plotly_js, media_type="application/javascript", headers=headers)

    @router.get("/static/charts.js")
    def charts_js() -> Response:
        return Response(
            CHARTS_JS.read_bytes(), media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    @router.get("/", response_class=HTMLResponse)
    def experiments_page(
        request: Request, status: Literal["draft", "running", "stopped", "archived"] | None = None,
        q: str | None = Query(None, max_length=200), owner: str | None = Query(None, max_length=200),
        sort: Literal["newest", "name", "status", "users", "progress", "started", "decision", "lift"] = "newest",
    ) -> HTMLResponse:
        monitor = read_only_monitor(settings, state.sums_cache)
        records = state.registry.list(status=status)
        shown = filter_records(records, q=q, owner=owner)
        summaries = sort_summaries(list_cache.summaries(monitor, shown), sort)
        return page(request, "experiments.html.j2", title="Experiments", nav="experiments",
                    summaries=summaries, status=status, q=q or "", owner=owner or "", sort=sort,
                    owners=owners(records), sorts=SORTS, total=len(records), decision_label=decision_label)

    @router.get("/experiments/{key}", response_class=HTMLResponse)
    async def experiment_page(
        request: Request, key: str, start: str | None = None, end: str | None = None,
        view: Literal["cumulative", "daily"] = "cumulative",
    ) -> HTMLResponse:
        from battleground.web._reads import snapshot_read

        d = await snapshot_read(request, lambda: experiment_detail(
            settings, state.registry, check_key(key), start=start, end=end, view=view, cache=state.sums_cache
        ))
        return page(request, "experiment.html.j2", title=d.record.name, nav="experiments", d=d,
                    exp=d.record, sample_chart=d.sample_chart, plotly=True)

    @router.get("/experiments/{key}/results.{fmt}")
    def results_download(
        key: str, fmt: Literal["csv", "json"], start: str | None = None, end: str | None = None
    ) -> Response:
        """The results table as a file (numbers in plain units; proportions' absolute lifts in pp)."""
        d = experiment_detail(settings, state.registry, check_key(key), start=start, end=end, charts=False,
                              cache=state.sums_cache)
        name = f"experiment-{d.record.id}-results.{fmt}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if fmt == "csv":
            body = results_csv(d.table) if d.table is not None else ""
            return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
        records = d.table.records() if d.table is not None else []
        return JSONResponse({"experiment_id": d.record.id, "window": {"start": start, "end": end},
                             "p_adjusted_label": d.table.p_label if d.table else None,
                             "interval": d.table.interval if d.table else None, "rows": jsonable(records)},
                            headers=headers)

    @router.get("/experiments/{key}/report", response_class=HTMLResponse)
    def experiment_report(key: str) -> HTMLResponse:
        """The HTML report, rendered now and written nowhere (a GET never writes)."""
        from battleground.experiment.report import MakeReport

        record = state.registry.get(check_key(key))
        monitor = read_only_monitor(settings, state.sums_cache)
        html = MakeReport(source=monitor.backend).render(record.id, scripts="dashboard").html
        return HTMLResponse(html)

    @router.get("/leaderboard", response_class=HTMLResponse)
    def leaderboard_page(request: Request) -> HTMLResponse:
        board = leaderboard(settings)
        return page(request, "leaderboard.html.j2", title="Model leaderboard", nav="leaderboard",
                    board=board, chart=leaderboard_chart(board), plotly=bool(board.rows))

    @router.get("/models/{name}/{version}", response_class=HTMLResponse)
    def model_version_page(request: Request, name: str, version: str) -> HTMLResponse:
        from battleground.web._model_version_views import model_version

        v = model_version(settings, name, version)
        return page(request, "model_version.html.j2", title=f"{v.name} v{v.version}", nav="leaderboard", v=v)

    @router.get("/models/{name}/{version}/artifacts/{path:path}")
    def model_artifact(name: str, version: str, path: str) -> Response:
        """An image the version page shows (only listed PNG/JPEG artifacts; never a path of one's own)."""
        from battleground.web._model_version_views import artifact_bytes

        data, media = artifact_bytes(settings, name, version, path)
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=300"})

    @router.get("/bandit", response_class=HTMLResponse)
    def bandit_page(request: Request) -> HTMLResponse:
        from battleground.web._bandit_charts import bandit_charts

        files = bandit_files(settings)
        charts = bandit_charts(files)
        return page(request, "bandit.html.j2", title="Bandit battles and OPE", nav="bandit", files=files,
                    charts=charts, plotly=bool(charts))

    @router.get("/bandit/files/{relative:path}", response_model=None)
    def bandit_file(relative: str) -> FileResponse | RedirectResponse:
        if relative.rsplit("/", 1)[-1] in SHARED_SCRIPTS:
            # a saved report links the copy beside it; the dashboard answers with its gzipped, cached one
            return RedirectResponse(f"/static/{relative.rsplit('/', 1)[-1]}", status_code=308)
        path = bandit_file_path(settings, relative)
        if path is None:
            raise HTTPException(404, f"no summary {relative!r} under <home>/bandit (the bandit page lists them)")
        media = {".csv": "text/csv", ".json": "application/json"}.get(path.suffix.lower(), "text/html")
        return FileResponse(path, media_type=media)

    return router
