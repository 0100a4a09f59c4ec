"""The model server: validation, endpoints and a champion swap under load without failed requests."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from battleground.pipelines.registry import run_pipeline
from battleground.settings import Settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[dict]]:
    import pandas as pd

    home = tmp_path_factory.mktemp("serve_home")
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home)})
    result = run_pipeline("sub_churn_train_from_raw", settings, params={"n_characters": 400})
    frame = pd.read_parquet(Path(result.outputs["features_test"])).drop(columns=["churned"]).head(8)
    return settings, json.loads(frame.to_json(orient="records"))


def _promote_copy(settings: Settings) -> str:
    """A new version of the champion's run, promoted through the gate (an audited override: a tie)."""
    import pandas as pd

    from battleground.model.gate import champion_gate, register_candidate
    from battleground.model.tracking import _mlflow

    client = _mlflow(settings).MlflowClient()
    mv = client.get_model_version_by_alias("churn", "champion")
    holdout = pd.read_parquet(settings.home / "pipelines" / "base" / "04_feature" / "features_test.parquet")
    version = register_candidate(settings, f"runs:/{mv.run_id}/model", "churn", source="test")
    champion_gate(settings, "churn", version, holdout.drop(columns=["churned", "char_id", "cutoff"],
                                                            errors="ignore"),
                  holdout["churned"], metric="roc_auc", threshold=0.5, source="test", override="swap test", n_boot=10)
    return version


def test_serve_endpoints_and_validation(trained: tuple[Settings, list[dict]]) -> None:
    from fastapi.testclient import TestClient

    from battleground.model.serve import create_app

    settings, records = trained
    with TestClient(create_app(settings, poll_seconds=0), base_url="http://127.0.0.1") as client:
        one = client.post("/predict", json=records[0]).json()
        many = client.post("/predict", json=records).json()
        batch = client.post("/predict/batch", json={"records": records}).json()
        assert len(many["predictions"]) == 8 and batch["predictions"] == many["predictions"]
        assert one["predictions"][0] == pytest.approx(many["predictions"][0])
        assert all(0.0 <= p <= 1.0 for p in many["predictions"])
        info = client.get("/model").json()
        assert info["name"] == "churn" and info["alias"] == "champion" and info["version"] == "1"
        assert "train_roc_auc" in info["metrics"]
        assert client.get("/health").json()["status"] == "ok"
        bad = dict(records[0], total_kills="many")
        del bad["race"]
        resp = client.post("/predict", json=bad)
        assert resp.status_code == 422
        text = resp.text
        assert "race" in text and "total_kills" in text
        assert client.post("/admin/reload").status_code == 403  # no token configured
        # no record at all is the client's mistake, not a server error
        for empty in ([], {"records": []}):
            path = "/predict" if isinstance(empty, list) else "/predict/batch"
            resp = client.post(path, json=empty)
            assert resp.status_code == 422 and "no record" in resp.text
        assert one["unseen_categories"] == []
        # class labels use the threshold stored with the model, not 0.5
        assert 0 < many["threshold"] < 1 and many["threshold"] != 0.5
        assert many["labels"] == [int(p >= many["threshold"]) for p in many["predictions"]]
        assert client.get("/model").json()["threshold"] == many["threshold"]
        odd = client.post("/predict", json=[records[0], dict(records[1], race="Pandaren")]).json()
        assert odd["unseen_categories"] == [{"row": 1, "column": "race", "value": "Pandaren"}]
        assert len(odd["predictions"]) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_load_with_champion_swap(trained: tuple[Settings, list[dict]]) -> None:
    import httpx
    import uvicorn

    from battleground.model.serve import create_app

    settings, records = trained
    port = _free_port()
    app = create_app(settings, poll_seconds=0.25)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:  # one kept-alive connection
        assert c.post("/predict", json=[]).status_code == 422
        assert c.post("/predict", json=records[0]).status_code == 200  # the connection survived
    stop = [time.monotonic() + 120.0]  # moved to 1 s after the swap (bounded by the swap, not the clock)
    versions: set[str] = set()

    def client_loop(i: int) -> tuple[int, int]:
        ok = failed = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            while time.monotonic() < stop[0]:
                r = c.post("/predict", json=records[i % len(records)])
                if r.status_code == 200:
                    ok += 1
                    versions.add(r.json()["version"])
                else:
                    failed += 1
        return ok, failed

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client_loop, i) for i in range(8)]
            time.sleep(1.5)
            _promote_copy(settings)
            while app.state.holder.swaps == 0 and time.monotonic() < stop[0]:
                time.sleep(0.05)
            stop[0] = min(stop[0], time.monotonic() + 1.0)
            results = [f.result() for f in futures]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert sum(f for _, f in results) == 0
    assert sum(o for o, _ in results) > 50
    assert versions == {"1", "2"}


def test_serve_cli_model_predict(trained: tuple[Settings, list[dict]], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd
    from typer.testing import CliRunner

    from battleground.cli import app

    settings, records = trained
    monkeypatch.setenv("BATTLEGROUND_HOME", str(settings.home))
    src = tmp_path / "rows.json"
    src.write_text(json.dumps(records))
    out = tmp_path / "preds.csv"
    res = CliRunner().invoke(app, ["model", "predict", "--input", str(src), "--output", str(out)])
    assert res.exit_code == 0, res.output
    preds = pd.read_csv(out)
    assert list(preds.columns) == ["char_id", "churn_probability", "churn_label"]
    assert len(preds) == len(records) and preds["churn_probability"].between(0, 1).all()


def test_serve_security(trained: tuple[Settings, list[dict]], monkeypatch: pytest.MonkeyPatch) -> None:
    """--require-token puts scoring behind the token (compared in constant time), --no-docs removes the
    docs, and every reply carries the security headers; a body over the cap is refused unread."""
    import dataclasses
    import hmac

    from fastapi.testclient import TestClient

    from battleground.errors import ModelError
    from battleground.model.serve import create_app

    settings, records = trained
    with pytest.raises(ModelError, match="BATTLEGROUND_API_TOKEN"):
        create_app(settings, poll_seconds=0, require_token=True)
    secured = dataclasses.replace(settings, api_token="serve-token", max_body_bytes=4096)
    compared: list[bytes] = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append(a) or real(a, b))
    app = create_app(secured, poll_seconds=0, require_token=True, docs=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        auth = {"Authorization": "Bearer serve-token"}
        assert client.post("/predict", json=records[0]).status_code == 401
        assert client.post("/predict", json=records[0], headers={"Authorization": "Bearer serve-tokeX"}).status_code == 401
        assert client.post("/incremental/score", json={"rows": [{}]}).status_code == 401
        assert client.get("/model").status_code == 401
        ok = client.post("/predict", json=records[0], headers=auth)
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1
        assert client.get("/health").status_code == 200  # liveness stays open
        assert client.post("/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.post("/admin/reload", headers=auth).json()["swapped"] is False
        assert compared  # every comparison went through hmac.compare_digest
        big = client.post("/predict/batch", json={"records": records * 40}, headers=auth)
        assert big.status_code == 413
        for url in ("/docs", "/openapi.json", "/redoc"):
            assert client.get(url, headers=auth).status_code == 404
        r = client.get("/health")
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert client.get("/health", headers={"host": "attacker.example"}).status_code == 400
