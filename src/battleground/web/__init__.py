"""The battleground dashboard (``battleground ui``): server-rendered pages and a JSON API.

Pages (Jinja2 + Plotly, plotly.js served from the installed package, so they work offline): the
experiment list with status and badges, one page per experiment (design, plan vs actual sample size,
per-metric results with CIs, cumulative lift charts, decision, audit log, the HTML report), the model
leaderboard from the MLflow store, and the bandit battles and OPE tables found under
``<home>/bandit``. The JSON API lives under ``/api``; its one write, ``POST /api/events``, needs
``Authorization: Bearer <BATTLEGROUND_API_TOKEN>``. See ``docs/dashboard.md``.

Example:
    >>> from battleground.settings import Settings
    >>> from battleground.web import create_app
    >>> app = create_app(Settings.from_env({"BATTLEGROUND_HOME": "/tmp/bg-doc"}))  # doctest: +SKIP
"""

from __future__ import annotations

from battleground.web._app import create_app

__all__ = ["create_app"]
