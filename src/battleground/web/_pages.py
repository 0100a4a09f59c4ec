"""Server-rendered pages (Jinja2 + Plotly, plotly.js served from the installed package)."""

# no `from __future__ import annotations`: FastAPI reads the annotations of the routes at runtime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from battleground._html import CHARTS_JS, chart, environment
from battleground.web._state import DashboardState, check_key
from battleground.web._views import (
    ExperimentDetail,
    bandit_file_path,
    bandit_files,
    experiment_detail,
    experiment_summary,
    leaderboard,
    leaderboard_chart,
    read_only_monitor,
)

__all__ = ["TEMPLATES", "create_page_router", "templates"]

TEMPLATES = Path(__file__).parent / "templates"
_PALETTE = ["#5f6368", "#1a73e8", "#e37400", "#9334e6", "#188038", "#d01884"]


def templates() -> Jinja2Templates:
    """The page templates, rendered by the one shared, autoescaping environment."""
    return Jinja2Templates(env=environment())


def sample_size_chart(detail: ExperimentDetail) -> str:
    """Users per variant over time against the planned sample size (an HTML div)."""
    daily = detail.daily
    if daily is None or daily.empty:
        return ""
    import plotly.graph_objects as go

    primary = [m.name for m in detail.info.metrics if m.primary] or [detail.info.metrics[0].name]
    sub = daily[daily["metric"] == primary[0]]
    if sub.empty:
        return ""
    fig = go.Figure()
    for i, v in enumerate(detail.info.variants):
        g = sub[sub["variant"] == v.name]
        fig.add_trace(go.Scatter(
            x=[d.strftime("%Y-%m-%d") for d in g["date"]], y=[int(u) for u in g["users"]],
            mode="lines+markers", name=v.name,
            line={"color": _PALETTE[i % len(_PALETTE)], "dash": "dash" if v.is_control else "solid"},
        ))
    if detail.info.target_sample_size:
        fig.add_hline(
            y=detail.info.target_sample_size, line_dash="dot", line_color="#c5221f",
            annotation_text=f"planned {detail.info.target_sample_size:,} per variant",
        )
    fig.update_layout(
        title="users per variant: actual vs plan", height=300, template="plotly_white",
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
    )
    return chart(fig)


def create_page_router(state: DashboardState) -> APIRouter:
    """The HTML pages over one :class:`DashboardState`."""
    router = APIRouter(include_in_schema=False)
    settings = state.settings
    tpl = templates()

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        context.setdefault("plotly", False)
        session = state.sessions.of(request)
        return tpl.TemplateResponse(request, f"web/{name}", {
            "read_only": state.read_only, "user": session.actor if session else None,
            "csrf": session.csrf if session else "", **context,
        })

    @router.get("/static/plotly.min.js")
    def plotly_js() -> Response:
        return Response(
            state.plotly_js, media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @router.get("/static/charts.js")
    def charts_js() -> Response:
        return Response(
            CHARTS_JS.read_bytes(), media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    @router.get("/", response_class=HTMLResponse)
    def experiments_page(
        request: Request, status: Literal["draft", "running", "stopped", "archived"] | None = None
    ) -> HTMLResponse:
        monitor = read_only_monitor(settings)
        records = state.registry.list(status=status)
        summaries = [experiment_summary(monitor, r) for r in reversed(records)]
        return page(request, "experiments.html.j2", title="Experiments", nav="experiments",
                    summaries=summaries, status=status)

    @router.get("/experiments/{key}", response_class=HTMLResponse)
    async def experiment_page(request: Request, key: str) -> HTMLResponse:
        from battleground.web._reads import snapshot_read

        d = await snapshot_read(request, lambda: experiment_detail(settings, state.registry, check_key(key)))
        return page(request, "experiment.html.j2", title=d.record.name, nav="experiments", d=d,
                    exp=d.record, sample_chart=sample_size_chart(d), plotly=True)

    @router.get("/experiments/{key}/report", response_class=HTMLResponse)
    def experiment_report(key: str) -> HTMLResponse:
        """The HTML report, rendered now and written nowhere (a GET never writes)."""
        from battleground.experiment.report import MakeReport

        record = state.registry.get(check_key(key))
        monitor = read_only_monitor(settings)
        html = MakeReport(source=monitor.backend).render(record.id).html
        return HTMLResponse(html)

    @router.get("/leaderboard", response_class=HTMLResponse)
    def leaderboard_page(request: Request) -> HTMLResponse:
        board = leaderboard(settings)
        return page(request, "leaderboard.html.j2", title="Model leaderboard", nav="leaderboard",
                    board=board, chart=leaderboard_chart(board), plotly=bool(board.rows))

    @router.get("/bandit", response_class=HTMLResponse)
    def bandit_page(request: Request) -> HTMLResponse:
        files = bandit_files(settings)
        return page(request, "bandit.html.j2", title="Bandit battles and OPE", nav="bandit", files=files)

    @router.get("/bandit/files/{relative:path}")
    def bandit_file(relative: str) -> FileResponse:
        path = bandit_file_path(settings, relative)
        if path is None:
            raise HTTPException(404, f"no summary {relative!r} under <home>/bandit (the bandit page lists them)")
        media = {".csv": "text/csv", ".json": "application/json"}.get(path.suffix.lower(), "text/html")
        return FileResponse(path, media_type=media)

    return router
