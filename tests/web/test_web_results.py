"""The results table, its downloads, the results window and the chart views of the experiment page."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from typing import Any

import pandas as pd

HTML = {"accept": "text/html"}


def _truth(seeded: Any, name: str = "checkout-button") -> tuple[float, float]:
    c, t = seeded.truth[name]["control"], seeded.truth[name]["treatment"]
    return c[1] / c[0], t[1] / t[0]


def test_csv_download_has_one_line_per_metric_and_variant_in_plain_units(client: Any, seeded: Any) -> None:
    exp_id = seeded.ids["checkout-button"]
    r = client.get(f"/experiments/{exp_id}/results.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f"experiment-{exp_id}-results.csv" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["metric"], x["variant"]) for x in rows] == [
        ("conversion", "control"), ("conversion", "treatment"), ("revenue", "control"), ("revenue", "treatment"),
    ]
    ctrl, treat = _truth(seeded)
    conv = rows[1]
    assert math.isclose(float(conv["value"]), treat, rel_tol=1e-9)
    # a proportion's absolute lift is in percentage points; the relative lift stays a fraction
    assert conv["abs_unit"] == "pp"
    assert math.isclose(float(conv["abs_lift"]), (treat - ctrl) * 100, rel_tol=1e-9)
    assert math.isclose(float(conv["rel_lift"]), (treat - ctrl) / ctrl, rel_tol=1e-9)
    assert float(conv["abs_ci_lower"]) < float(conv["abs_lift"]) < float(conv["abs_ci_upper"])
    assert 0 < float(conv["p_value"]) <= float(conv["p_value_adjusted"]) < 0.05
    assert conv["result"] == "improved" and rows[0]["p_value"] == ""  # control rows carry no test


def test_json_download_matches_the_csv(client: Any, seeded: Any) -> None:
    exp_id = seeded.ids["checkout-button"]
    data = client.get(f"/experiments/{exp_id}/results.json").json()
    assert data["p_adjusted_label"] == "p (Holm)" and data["interval"] == "95 %"
    rows = list(csv.DictReader(io.StringIO(client.get(f"/experiments/{exp_id}/results.csv").text)))
    assert len(data["rows"]) == len(rows) == 4
    assert math.isclose(data["rows"][1]["abs_lift"], float(rows[1]["abs_lift"]), rel_tol=1e-12)
    assert data["rows"][0]["p_value"] is None  # NaN → null, valid JSON
    json.dumps(data, allow_nan=False)


def test_the_window_picker_is_honoured_by_page_and_downloads(client: Any, seeded: Any) -> None:
    exp_id = seeded.ids["checkout-button"]
    # users arrive evenly over 6 days: the first day holds 100 of each variant's 600
    day_one = client.get(f"/experiments/{exp_id}/results.json?end=2022-03-01").json()["rows"]
    assert {r["variant"]: r["users"] for r in day_one if r["metric"] == "conversion"} == {
        "control": 100, "treatment": 100,
    }
    html = client.get(f"/experiments/{exp_id}?end=2022-03-01", headers=HTML).text
    assert 'name="end" value="2022-03-01"' in html and "results.csv?start=&amp;end=2022-03-01" in html
    table = html[html.index('id="results-table"'):html.index("</table>", html.index('id="results-table"'))]
    assert ">100<" in table and ">600<" not in table
    bad = client.get(f"/experiments/{exp_id}?end=March", headers=HTML)
    assert bad.status_code == 422 and "end" in bad.text


def test_daily_view_and_bad_view(client: Any, seeded: Any) -> None:
    exp_id = seeded.ids["checkout-button"]
    html = client.get(f"/experiments/{exp_id}?view=daily", headers=HTML).text
    assert "conversion: daily value by variant" in html and "cumulative relative lift" not in html
    assert 'aria-current="page">daily values' in html
    assert client.get(f"/experiments/{exp_id}?view=weekly", headers=HTML).status_code == 422


def test_ci_bars_share_one_axis() -> None:
    from battleground.web._results_table import _axis_limit, _place

    class R:
        def __init__(self, lo: float, mid: float, hi: float) -> None:
            self.rel_ci_lower, self.rel_lift, self.rel_ci_upper = lo, mid, hi

    rows: Any = [R(-0.01, 0.02, 0.05), R(0.1, 0.18, 0.26), R(math.nan, math.nan, math.nan)]
    lim = _axis_limit(rows)
    assert lim == 0.3  # the widest bound (26 %) rounded up
    assert _place(0.0, lim) == 50.0 and _place(0.3, lim) == 100.0 and _place(-0.9, lim) == 0.0


def test_number_formats() -> None:
    from battleground.web._results_table import abs_text, p_text, rel_text, value_text

    assert value_text(0.123456, "proportion") == "12.35 %"
    assert abs_text(0.0123, "proportion") == "+1.23 pp" and abs_text(-0.0123, "proportion") == "-1.23 pp"
    assert value_text(12345.678, "mean") == "12,346" and value_text(0.0012345, "mean") == "0.001234"
    assert abs_text(1.5, "mean") == "+1.500" and rel_text(0.0512) == "+5.1 %"
    assert p_text(0.00001) == "< 0.0001" and p_text(0.04321) == "0.0432" and p_text(math.nan) == "—"


def test_csv_cells_are_never_spreadsheet_formulas() -> None:
    from battleground.web._results_table import ResultsTable, TableRow, results_csv

    nan = math.nan
    row = TableRow(
        metric="=HYPERLINK(\"x\")", kind="mean", unit="per user", variant="+cmd", is_control=True, primary=True,
        guardrail=False, adjustment="", users=3, value=1.0, abs_lift=nan, abs_ci_lower=nan, abs_ci_upper=nan,
        abs_unit="per user", rel_lift=nan, rel_ci_lower=nan, rel_ci_upper=nan, p_value=nan,
        p_value_adjusted=nan, outcome="", value_text="1", abs_text="", abs_ci_text="", rel_text="",
        rel_ci_text="", p_text="", padj_text="", css="", flag="", margin_text="", bound_text="",
    )
    text = results_csv(ResultsTable([row], 0.1, "p (Holm)", "95 %"))
    line = next(iter(csv.DictReader(io.StringIO(text))))
    assert line["metric"].startswith("'=") and line["variant"] == "'+cmd"


def test_one_day_of_data_gives_whole_day_ticks_and_a_visible_interval() -> None:
    from battleground._html import day_axis
    from battleground.experiment.report import lift_charts

    axis = day_axis([pd.Timestamp("2022-03-01")])
    assert axis["dtick"] == 86_400_000 and axis["range"] == ["2022-02-28T12:00:00", "2022-03-01T12:00:00"]
    assert day_axis(pd.date_range("2022-03-01", periods=30))["dtick"] == 3 * 86_400_000

    class M:
        name, kind, primary = "conversion", "proportion", True

    class Info:
        metrics = (M(),)

    daily = pd.DataFrame([{
        "date": pd.Timestamp("2022-03-01"), "metric": "conversion", "variant": "treatment", "is_control": False,
        "rel_lift": 0.05, "rel_ci_lower": -0.02, "rel_ci_upper": 0.12,
    }])
    html = str(lift_charts(Info(), daily)[0])  # type: ignore[arg-type]
    figure = json.loads(html.split('data-figure="')[1].split('"')[0].replace("&#34;", '"').replace("&quot;", '"'))
    (trace,) = figure["data"]  # one day: error bars instead of a band without area
    assert trace["error_y"]["array"][0] == pytest_approx(7.0) and trace["error_y"]["arrayminus"][0] == pytest_approx(7.0)
    assert figure["layout"]["xaxis"]["dtick"] == 86_400_000
    assert '<figcaption class="bg-alt"' in html and ">conversion: cumulative relative lift" in html and "treatment +5.0 % [-2.0, +12.0]" in html
    two = pd.concat([daily, daily.assign(date=pd.Timestamp("2022-03-02"))])
    figure = json.loads(str(lift_charts(Info(), two)[0]).split('data-figure="')[1].split('"')[0].replace("&#34;", '"'))  # type: ignore[arg-type]
    band = figure["data"][0]
    assert band["fill"] == "toself" and band["fillcolor"] == "rgba(26, 115, 232, 0.2)"


def pytest_approx(x: float) -> Any:
    import pytest

    return pytest.approx(x, rel=1e-9)


def test_daily_rows_are_the_days_cohorts() -> None:
    from battleground.web._experiment_charts import daily_rows

    d1, d2 = pd.Timestamp("2022-03-01"), pd.Timestamp("2022-03-02")
    frame = pd.DataFrame([
        {"date": d1, "metric": "m", "kind": "proportion", "variant": "control", "users": 100, "value": 0.10},
        {"date": d2, "metric": "m", "kind": "proportion", "variant": "control", "users": 300, "value": 0.20},
    ])
    rows = daily_rows(frame, "m")
    assert [r["new_users"] for r in rows] == [100, 200]
    # 10 converters on day one, 60 by day two: 50 added over the 200 users added on day two
    assert rows[0]["value"] == pytest_approx(0.10) and rows[1]["value"] == pytest_approx(0.25)
    assert rows[0]["date"] == d1 and isinstance(rows[1]["date"], dt.date)
