"""HTML for every surface: one autoescaping Jinja environment, charts drawn without inline script, and
the Content-Security-Policy that dashboard pages and saved reports carry.

Every template (dashboard pages, experiment, bandit and model-evaluation reports) renders through
:func:`environment`, which escapes every value (``autoescape=True``, whatever the file name ends in).
A chart is a ``<div class="bg-chart">`` holding its Plotly JSON in an attribute; ``charts.js`` draws it.
A saved report inlines plotly.js and ``charts.js`` (so it opens offline) and allows exactly those two
scripts by their SHA-256 in its own ``<meta>`` policy; the dashboard sends the same hashes in its header.

Example:
    >>> from battleground._html import environment
    >>> environment().from_string("<p>{{ name }}</p>").render(name="<script>x</script>")
    '<p>&lt;script&gt;x&lt;/script&gt;</p>'
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment
    from markupsafe import Markup

__all__ = [
    "CHARTS_JS",
    "chart",
    "ci_half_width",
    "dashboard_csp",
    "day_axis",
    "environment",
    "figure",
    "forest_chart",
    "hline",
    "ranked_chart",
    "report_head",
    "report_scripts",
    "steps_chart",
    "text_environment",
    "write_shared_scripts",
]

_ROOT = Path(__file__).parent
TEMPLATE_DIRS = {
    "web": _ROOT / "web" / "templates",
    "experiment": _ROOT / "experiment" / "templates",
    "bandit": _ROOT / "bandit" / "templates",
    "model": _ROOT / "model" / "templates",
}
CHARTS_JS = _ROOT / "web" / "static" / "charts.js"
_CHART_CONFIG = {"displaylogo": False, "responsive": True}


# ---------------------------------------------------------------------------------------------------
# display filters shared by pages and reports
# ---------------------------------------------------------------------------------------------------


def fmt_int(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError, OverflowError):
        return "—"


def fmt_p(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{x:.3g}" if math.isfinite(x) else "—"


def fmt_num(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{x:.4g}" if math.isfinite(x) else "—"


def fmt_time(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:%Y-%m-%d %H:%M}" if isinstance(value, dt.date) or hasattr(value, "strftime") else str(value)


@functools.cache
def environment() -> Environment:
    """The one HTML environment: templates as ``web/…``, ``experiment/…``, ``bandit/…``, ``model/…``;
    every value escaped."""
    from jinja2 import Environment, FileSystemLoader, PrefixLoader, pass_context

    env = Environment(
        loader=PrefixLoader({k: FileSystemLoader(str(v)) for k, v in TEMPLATE_DIRS.items()}),
        autoescape=True,  # not select_autoescape: our templates end in .j2, which it would not escape
    )
    env.filters.update(int=fmt_int, p=fmt_p, num=fmt_num, time=fmt_time)
    env.globals["report_head"] = pass_context(report_head)  # it reads the template's report_scripts
    return env


@functools.cache
def text_environment() -> Environment:
    """For plain-text templates only (the Markdown summary); never for HTML."""
    from jinja2 import Environment, FileSystemLoader, PrefixLoader

    return Environment(
        loader=PrefixLoader({k: FileSystemLoader(str(v)) for k, v in TEMPLATE_DIRS.items()}),
        autoescape=False,
    )


# ---------------------------------------------------------------------------------------------------
# charts and scripts
# ---------------------------------------------------------------------------------------------------


def chart(fig: Any, *, config: dict[str, Any] | None = None, alt: str | None = None) -> Markup:
    """A Plotly figure as an inert ``<div>`` (its JSON escaped into ``data-figure``) that ``charts.js``
    draws; no inline script. ``alt`` (default: the figure's title) is its text alternative."""
    from markupsafe import Markup

    if isinstance(fig, dict):  # a plain figure spec (cheaper than a validated go.Figure)
        title = (fig.get("layout", {}).get("title") or {}).get("text")
        layout = dict(fig.get("layout", {}))
        template = layout.pop("template", None)  # our own constant: no NaN to look for
        clean = {**_finite_only({**fig, "layout": layout}), **({"layout": {**_finite_only(layout), "template": template}} if template else {})}
        spec = json.dumps(clean, allow_nan=False, default=str)
    else:
        title = fig.layout.title.text if fig.layout.title is not None else None
        spec = fig.to_json()
    if alt is None:
        alt = str(title) if title else "chart"
    # a <figure> with its caption: the drawn chart holds focusable buttons, so it cannot be role="img"
    return Markup(
        '<figure class="bg-figure" style="margin: 0; position: relative"><div class="bg-chart" data-figure="{}" data-config="{}"></div>'
        '<figcaption class="bg-alt" style="position: absolute; width: 1px; height: 1px; overflow: hidden; '
        'clip: rect(0 0 0 0); white-space: nowrap">{}</figcaption></figure>'
    ).format(spec, json.dumps({**_CHART_CONFIG, **(config or {})}), alt)


def _finite_only(value: Any) -> Any:
    """NaN and ±inf → ``None`` (a gap in the chart; JSON has no NaN), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_only(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_only(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return _finite_only(value.item())
    return value


@functools.cache
def _white_template() -> dict[str, Any]:
    import plotly.io as pio

    return dict(pio.templates["plotly_white"].to_plotly_json())


def figure(data: list[dict[str, Any]], title: str, **layout: Any) -> dict[str, Any]:
    """A plain Plotly figure spec in the pages' look (the ``plotly_white`` template), for :func:`chart`:
    building it costs microseconds where a validated ``go.Figure`` costs tens of milliseconds."""
    return {"data": data, "layout": {"title": {"text": title}, "template": _white_template(), **layout}}


def hline(y: float, color: str, dash: str) -> dict[str, Any]:
    """A horizontal line across the plot at ``y`` (a layout shape)."""
    return {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": y, "y1": y,
            "line": {"color": color, "dash": dash, "width": 1.5}}


def day_axis(days: Any) -> dict[str, Any]:
    """An x axis of calendar days that reads well from one day on: ticks on whole days (never the
    sub-millisecond ticks Plotly picks for a single point) and half a day of room either side."""
    stamps = sorted({dt.date.fromisoformat(str(d)[:10]) for d in days})
    if not stamps:
        return {"type": "date"}
    lo = dt.datetime.combine(stamps[0], dt.time()) - dt.timedelta(hours=12)
    hi = dt.datetime.combine(stamps[-1], dt.time()) + dt.timedelta(hours=12)
    span = (stamps[-1] - stamps[0]).days + 1
    return {
        "type": "date", "range": [lo.isoformat(), hi.isoformat()], "tickformat": "%b %d",
        "dtick": 86_400_000 * max(1, math.ceil(span / 10)), "tick0": stamps[0].isoformat(),
    }


# ---------------------------------------------------------------------------------------------------
# the three interval charts (bandit reports and page: agents ranked, reward over steps, OPE forest)
# ---------------------------------------------------------------------------------------------------

_C_BLUE, _C_GREEN, _C_INK = "#1558b0", "#137333", "#1d2330"
_RANK_MARGIN = {"l": 140, "r": 30, "t": 50, "b": 45}


def ci_half_width(std: float, n: float, z: float = 1.96) -> float:
    """Half the 95 % interval of a mean over ``n`` trajectories (``z·std/√n``); NaN without both."""
    if math.isfinite(std) and math.isfinite(n) and n > 0:
        return z * std / math.sqrt(n)
    return math.nan


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def ranked_chart(names: Sequence[str], values: Sequence[float], half_widths: Sequence[float], *,
                 title: str, note: str, where: str = "") -> Markup:
    """Horizontal bars, best on top, each with its ``±half_width`` interval; ``note`` names the interval
    and ``where`` (shown last) the file the numbers came from."""
    order = sorted(range(len(names)), key=lambda i: _finite(values[i]))  # Plotly draws bottom-up
    ys, xs, hs = [names[i] for i in order], [values[i] for i in order], [half_widths[i] for i in order]
    trace = {"type": "bar", "orientation": "h", "y": ys, "x": xs, "marker": {"color": _C_BLUE},
             "error_x": {"type": "data", "array": hs, "color": _C_INK}}
    full = f"{title} ({note})" + (f" — {where}" if where else "")
    fig = figure([trace], full, height=max(220, 60 + 32 * len(ys)), margin=_RANK_MARGIN)
    alt = full + "; " + "; ".join(
        f"{n} {x:,.4g}" + (f" ± {h:,.3g}" if math.isfinite(h) else "") for n, x, h in reversed(list(zip(ys, xs, hs, strict=True))))
    return chart(fig, alt=alt)


def steps_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str,
                y_title: str = "revenue", colors: Mapping[str, str] | None = None) -> Markup:
    """One line per agent: ``series[agent] = (steps, values)``."""
    traces = [{"type": "scatter", "mode": "lines+markers", "name": a, "x": list(xs), "y": list(ys),
               **({"line": {"color": colors[a]}} if colors and a in colors else {})}
              for a, (xs, ys) in series.items()]
    n_steps = len({x for xs, _ in series.values() for x in xs})
    fig = figure(traces, title, height=340, margin={"l": 55, "r": 20, "t": 50, "b": 45},
                 xaxis={"title": {"text": "step"}}, yaxis={"title": {"text": y_title}})
    return chart(fig, alt=f"{title}: {len(series)} lines over {n_steps} steps")


def forest_chart(names: Sequence[str], values: Sequence[float], lows: Sequence[float], highs: Sequence[float], *,
                 title: str, truth: float | None = None, reference: tuple[str, float] | None = None,
                 where: str = "") -> Markup:
    """A forest plot: one row per estimator, its value and interval; ``truth`` a dashed green line and
    ``reference`` (label, value) a dotted grey one."""
    trace = {"type": "scatter", "mode": "markers", "y": list(names), "x": list(values),
             "marker": {"size": 10, "color": _C_BLUE},
             "error_x": {"type": "data", "symmetric": False, "color": _C_BLUE,
                         "array": [h - v for h, v in zip(highs, values, strict=True)],
                         "arrayminus": [v - lo for lo, v in zip(lows, values, strict=True)]}}
    shapes: list[dict[str, Any]] = []
    lines = []
    ref_label, ref_x = reference if reference is not None else ("", None)
    for label, x, color, dash, drawn in (("true value", truth, _C_GREEN, "dash", "dashed"),
                                         (ref_label, ref_x, "#5f6368", "dot", "dotted")):
        if x is not None and math.isfinite(x):
            shapes.append({"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": x, "x1": x,
                           "line": {"color": color, "dash": dash}})
            lines.append(f"{drawn}: {label}")
    full = f"{title}{' (' + ', '.join(lines) + ')' if lines else ''}" + (f" — {where}" if where else "")
    fig = figure([trace], full, height=max(220, 60 + 36 * len(names)), shapes=shapes,
                 margin=_RANK_MARGIN, yaxis={"autorange": "reversed"})
    alt = full + "; " + "; ".join(
        f"{n} {v:.4g} [{lo:.4g}, {h:.4g}]" for n, v, lo, h in list(zip(names, values, lows, highs, strict=True))[:12])
    return chart(fig, alt=alt)


@functools.cache
def report_scripts() -> tuple[str, str]:
    """The two scripts a saved report inlines: plotly.js (from the installed package) and charts.js."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs(), CHARTS_JS.read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


@functools.cache
def script_hashes() -> str:
    """The CSP source list of the report scripts."""
    return " ".join(_sha256(s) for s in report_scripts())


SCRIPT_MODES = ("inline", "beside", "dashboard")
SHARED_SCRIPTS = ("plotly.min.js", "charts.js")


def report_csp(scripts: str = "inline") -> str:
    """The policy a saved report carries in its ``<meta>``: its own two scripts, nothing else fetched.

    ``inline``: the scripts by their hashes; ``beside``/``dashboard``: scripts from the report's own
    origin only (the files beside it, or the dashboard's ``/static``); never an inline script."""
    source = script_hashes() if scripts == "inline" else "'self'"
    return (
        f"default-src 'none'; script-src {source}; style-src 'unsafe-inline'; "
        "img-src data:; font-src data:; base-uri 'none'; form-action 'none'"
    )


def _report_head(charts: bool, scripts: str, base: str = "") -> Markup:
    from markupsafe import Markup, escape

    if scripts not in SCRIPT_MODES:
        raise ValueError(f"report scripts must be one of {', '.join(SCRIPT_MODES)}, got {scripts!r}")
    if base.replace("../", ""):
        raise ValueError(f"report_scripts_base must be '' or '../' repeated, got {base!r}")
    parts = [f'<meta http-equiv="Content-Security-Policy" content="{escape(report_csp(scripts))}">']
    if charts and scripts == "inline":
        plotly_js, charts_js = report_scripts()
        # the scripts are our own files, inlined verbatim so that their hashes match the policy
        parts += [f"<script>{plotly_js}</script>", f"<script>{charts_js}</script>"]
    elif charts:
        prefix = "/static/" if scripts == "dashboard" else base
        parts += [f'<script src="{prefix}{name}"></script>' for name in SHARED_SCRIPTS]
    return Markup("\n".join(parts))


def report_head(context: Any, *, charts: bool = True) -> Markup:
    """The ``<head>`` lines of a report: its policy, then (for charts) the two scripts: inlined (the
    default: one file that opens offline), or linked when the template's context says
    ``report_scripts="beside"`` (``plotly.min.js`` and ``charts.js`` next to the report, written once
    by :func:`write_shared_scripts`; ``report_scripts_base="../"`` for a report one folder below
    them) or ``"dashboard"`` (the dashboard's gzipped, cached ``/static``)."""
    return _report_head(charts, str(context.get("report_scripts", "inline")), str(context.get("report_scripts_base", "")))


def write_shared_scripts(folder: Path) -> list[Path]:
    """Write ``plotly.min.js`` and ``charts.js`` into ``folder`` for the reports there that link them
    (once: a file already holding the same text is left alone)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in zip(SHARED_SCRIPTS, report_scripts(), strict=True):
        path = folder / name
        data = text.encode("utf-8")
        if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        written.append(path)
    return written


def dashboard_csp() -> str:
    """The dashboard's policy: scripts from its own ``/static`` (and the served reports' two scripts)."""
    return (
        f"default-src 'self'; script-src 'self' {script_hashes()}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
