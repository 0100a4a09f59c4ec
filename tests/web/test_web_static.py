"""plotly.js travels once: gzipped and cached by the dashboard, shared beside saved reports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def test_plotly_is_gzipped_and_revalidated_by_etag(client: Any) -> None:
    import plotly
    from plotly.offline import get_plotlyjs

    raw = client.get("/static/plotly.min.js", headers={"accept-encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip" and raw.headers["cache-control"] == "public, max-age=86400"
    assert raw.content == get_plotlyjs().encode()  # the client inflates it
    assert int(raw.headers["content-length"]) < len(raw.content) / 3
    etag = raw.headers["etag"]
    assert etag == f'"plotly-{plotly.__version__}"'
    again = client.get("/static/plotly.min.js", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""


def test_pages_are_gzipped_too(client: Any, seeded: Any) -> None:
    r = client.get(f"/experiments/{seeded.ids['checkout-button']}", headers={"accept": "text/html", "accept-encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert "content-security-policy" in r.headers


def test_the_served_report_links_the_dashboard_copy(client: Any, seeded: Any) -> None:
    html = client.get(f"/experiments/{seeded.ids['checkout-button']}/report").text
    assert '<script src="/static/plotly.min.js"></script>' in html and len(html) < 500_000
    assert "script-src &#39;self&#39;" in html or "script-src 'self'" in html


def test_saved_reports_share_one_plotly_beside_them(seeded: Any, tmp_path: Path) -> None:
    from battleground._html import report_scripts
    from battleground.experiment.report import MakeReport

    maker = MakeReport(client=seeded.settings)
    first = maker.create_report(seeded.ids["checkout-button"], out=tmp_path / "a.html")
    shared = tmp_path / "plotly.min.js"
    stamp = shared.stat().st_mtime_ns
    maker.create_report(seeded.ids["srm-broken"], out=tmp_path / "b.html")
    assert shared.stat().st_mtime_ns == stamp  # written once, left alone after
    assert shared.read_text(encoding="utf-8") == report_scripts()[0]
    assert (tmp_path / "charts.js").read_text(encoding="utf-8") == report_scripts()[1]
    for name in ("a.html", "b.html"):
        html = (tmp_path / name).read_text(encoding="utf-8")
        assert '<script src="plotly.min.js"></script>' in html and len(html) < 500_000
        assert "<script>" not in html  # no inline script at all
    assert Path(first.html_path).name == "a.html"
    # one file to mail around: inlined on request
    single = maker.create_report(seeded.ids["checkout-button"], out=tmp_path / "one" / "c.html", shared_scripts=False)
    text = Path(single.html_path).read_text(encoding="utf-8")
    assert len(text) > 3_000_000 and not (tmp_path / "one" / "plotly.min.js").exists()


def test_a_served_bandit_report_gets_the_dashboard_copy(client: Any) -> None:
    """A saved bandit report links ``plotly.min.js`` beside it (or one folder up); the dashboard answers
    those names with its one gzipped, cached copy instead of a file under <home>/bandit."""
    for url in ("/bandit/files/battle-2022-03/plotly.min.js", "/bandit/files/battle-2022-03/charts.js",
                "/bandit/files/plotly.min.js"):
        r = client.get(url, follow_redirects=False)
        assert r.status_code == 308 and r.headers["location"] == "/static/" + url.rsplit("/", 1)[-1], url
    followed = client.get("/bandit/files/battle-2022-03/plotly.min.js", headers={"accept-encoding": "gzip"})
    assert followed.status_code == 200 and followed.headers["content-encoding"] == "gzip"
    assert followed.headers["cache-control"] == "public, max-age=86400"


def test_report_head_links_scripts_one_folder_up_and_refuses_other_paths() -> None:
    import pytest

    from battleground._html import _report_head

    head = str(_report_head(True, "beside", "../"))
    assert '<script src="../plotly.min.js"></script>' in head and '<script src="../charts.js"></script>' in head
    with pytest.raises(ValueError, match=re.escape("report_scripts_base must be '' or '../' repeated, got 'https://x/'")):
        _report_head(True, "beside", "https://x/")
