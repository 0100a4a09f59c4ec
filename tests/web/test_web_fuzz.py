"""Fuzzing the JSON API from its own OpenAPI spec (schemathesis + hypothesis): no input gives a 5xx.

Positive (schema-valid) and negative (schema-violating) requests for every operation, with and
without the write token, against a small home of its own (writes may succeed here). Bounded by count:
a fixed, derandomized number of examples per operation (about 10 s on 2 idle cores), never by time, so
a loaded machine sends the same requests, only slower.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from battleground.settings import Settings

TOKEN = "fuzz-token"
EXAMPLES = {"positive": 15, "negative": 12, "keyed": 8}


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.register import Registry
    from battleground.web import create_app

    home = tmp_path_factory.mktemp("fuzz") / ".battleground"
    # schemathesis calls the ASGI app as "testserver": trusted here, as a deployment would configure it
    s = Settings.from_env({"BATTLEGROUND_HOME": str(home), "BATTLEGROUND_API_TOKEN": TOKEN,
                           "BATTLEGROUND_ALLOWED_HOSTS": "testserver"})
    registry = Registry(s.registry_url)
    exp = registry.create_experiment(
        "fuzzed", metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True}],
        start_at="2022-03-01", end_conditions={"target_sample_size": 5},
    )
    registry.start(exp.id)
    registry.create_experiment("draft", metrics=[{"name": "m", "kind": "mean", "numerator": "x"}])
    start = dt.datetime(2022, 3, 1)
    rows = [
        {"event_id": f"e{i}", "experiment": "fuzzed", "variant": ("control", "treatment")[i % 2],
         "user_id": f"u{i}", "event_type": "exposure" if i < 20 else "purchase",
         "timestamp": start + dt.timedelta(hours=i)}
        for i in range(30)
    ]
    for r in rows[20:]:
        r["user_id"] = f"u{int(r['event_id'][1:]) - 20}"
    ingest(open_event_store(s), rows)
    (Path(s.home) / "bandit").mkdir(parents=True)
    (Path(s.home) / "bandit" / "ope.csv").write_text("estimator,estimate\nipw,1.0\n", encoding="utf-8")
    return create_app(s)


def test_no_input_gives_a_server_error(fuzz_app: Any) -> None:
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_asgi("/api/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 10  # the nine A/B and model reads and writes, and the ledger
    seen: dict[str, set[int]] = {}
    failures: list[str] = []
    no_negative: list[str] = []

    def fuzz(op: Any, mode: Any, label: str, header_sets: list[dict[str, str]], **fixed: Any) -> None:
        examples = EXAMPLES["keyed" if fixed else mode.value]

        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=mode, **fixed))
        def check(case: Any) -> None:
            for extra in header_sets:
                response = case.call(headers={**(case.headers or {}), **extra})
                seen.setdefault(label, set()).add(response.status_code)
                if response.status_code >= 500:
                    failures.append(
                        f"{label} → {response.status_code}: {case.as_curl_command()} {response.text[:300]}"
                    )
                assert response.status_code < 500

        try:
            check()
        except Unsatisfiable:
            # an operation without parameters or body has nothing to violate
            assert mode == GenerationMode.NEGATIVE, label
            no_negative.append(label)

    for op in operations:
        writes = op.method.upper() == "POST"
        header_sets = [{"Authorization": f"Bearer {TOKEN}"}, {}] if writes else [{}]
        label = f"{op.method.upper()} {op.path}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(op, mode, label, header_sets)
        if "{key}" in op.path:  # the query of a real experiment, by id and by name
            for key in ("1", "fuzzed"):
                fuzz(op, GenerationMode.POSITIVE, label, header_sets, path_parameters={"key": key})
    assert not failures, failures
    assert len(seen) == len(operations), sorted(seen)
    # the fuzzer reached the interesting answers, not only 422s
    assert 200 in seen["GET /api/experiments/{key}/results"] and 404 in seen["GET /api/experiments/{key}"]
    assert {401, 422} <= seen["POST /api/events"]
    # negative cases were generated wherever the schema constrains something
    assert {"POST /api/events", "GET /api/experiments", "GET /api/experiments/{key}/results"}.isdisjoint(no_negative)


def test_pages_never_give_a_server_error(fuzz_app: Any) -> None:
    """The HTML routes are not in the spec: fuzz their path and query text directly."""
    from urllib.parse import quote

    from fastapi.testclient import TestClient
    from hypothesis import strategies as st

    client = TestClient(fuzz_app, base_url="http://127.0.0.1")
    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(key=text, tail=st.sampled_from(["", "/report"]), path=text, status=text)
    def check(key: str, tail: str, path: str, status: str) -> None:
        for url, params in (
            (f"/experiments/{quote(key, safe='')}{tail}", None),
            (f"/bandit/files/{quote(path, safe='/')}", None),
            ("/", {"status": status}),
        ):
            r = client.get(url, params=params, headers={"accept": "text/html"})
            assert r.status_code < 500, (url, params, r.status_code, r.text[:300])

    check()
