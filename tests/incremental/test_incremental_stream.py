"""Streaming with checkpoints (including a SIGKILL and restart), the CLI, the HTTP router, the demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from battleground.cli import app
from battleground.incremental import (
    CheckpointStore,
    GLMix,
    create_router,
    load_model,
    make_stream,
    run_incremental_demo,
    run_stream,
)

N_BATCHES, BATCH = 10, 300


@pytest.fixture(scope="module")
def stream():
    return make_stream(n_batches=N_BATCHES, batch_size=BATCH, holdout_size=200, n_entities=20, n_features=5, seed=3)


@pytest.fixture
def parquet_dir(tmp_path: Path, stream) -> Path:
    folder = tmp_path / "batches"
    folder.mkdir()
    for t, frame in enumerate(stream.train):
        frame.to_parquet(folder / f"b{t:04d}.parquet")
    stream.warmup.to_parquet(tmp_path / "warmup.parquet")
    return folder


def _uninterrupted(stream) -> GLMix:
    model = GLMix().fit_fixed_effect(stream.warmup)
    for frame in stream.train:
        model.partial_fit(frame)
    return model


def test_run_stream_resumes_without_double_counting(tmp_path: Path, stream) -> None:
    ck = tmp_path / "ck"
    first = run_stream(stream.train, ck, model=GLMix().fit_fixed_effect(stream.warmup), max_batches=4, keep_last=3)
    assert (first.processed, first.skipped, first.checkpoint.version) == (4, 0, 4)
    assert first.checkpoint.watermark == "000000003"
    assert CheckpointStore(ck).versions() == [2, 3, 4]  # pruned to keep_last
    assert json.loads((ck / "LATEST.json").read_text()) == {"version": 4, "watermark": "000000003",
                                                            "file": "model-v000004.npz"}
    # a fresh process would pass a new model: the checkpoint wins, and seen batches are skipped; resuming
    # needs keys (bare frames are keyed by position, which a new list need not share)
    keyed = [(f"{i:09d}", frame) for i, frame in enumerate(stream.train)]
    second = run_stream(keyed, ck, model=GLMix(), checkpoint_every=3)
    assert (second.processed, second.skipped) == (6, 4)
    assert second.checkpoint.version == 6 and second.checkpoint.watermark == "000000009"
    again = run_stream(keyed, ck)
    assert (again.processed, again.skipped) == (0, 10)
    resumed = load_model(ck)
    full = _uninterrupted(stream)
    assert resumed.n_records_ == N_BATCHES * BATCH and resumed.n_batches_ == N_BATCHES
    np.testing.assert_allclose(resumed.re_coef_, full.re_coef_, atol=1e-12)
    np.testing.assert_allclose(resumed.re_precision_, full.re_precision_, rtol=1e-12)
    assert not [p for p in os.listdir(ck) if p.startswith(".tmp")]
    with pytest.raises(ValueError, match="no checkpoint"):
        run_stream(stream.train, tmp_path / "empty")
    with pytest.raises(ValueError, match="must increase"):
        run_stream([("b", stream.train[0]), ("a", stream.train[1])], tmp_path / "order", model=GLMix())


def test_sigkill_mid_stream_then_restart(tmp_path: Path, parquet_dir: Path, stream) -> None:
    ck = tmp_path / "ck"
    cmd = [sys.executable, "-c", "from battleground.cli import main; main()", "incremental", "run",
           str(parquet_dir), "--checkpoint-dir", str(ck), "--warmup", str(tmp_path / "warmup.parquet")]
    proc = subprocess.Popen([*cmd, "--throttle", "0.4"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = CheckpointStore(ck)
    deadline = time.monotonic() + 90
    try:
        while (not store.versions() or store.versions()[-1] < 3) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = store.latest()
    assert killed_at is not None and 3 <= killed_at.n_batches < N_BATCHES
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"skipped {killed_at.n_batches} already learned" in " ".join(done.stdout.split())
    final = load_model(ck)
    full = _uninterrupted(stream)
    assert final.n_batches_ == N_BATCHES and final.n_records_ == N_BATCHES * BATCH
    np.testing.assert_allclose(final.re_coef_, full.re_coef_, atol=1e-12)
    assert store.latest().watermark == f"b{N_BATCHES - 1:04d}.parquet"


def test_cli_generate_run_status_score(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "s"
    r = runner.invoke(app, ["incremental", "generate", str(out), "--batches", "3", "--batch-size", "200",
                            "--warmup-file", str(tmp_path / "w.parquet")])
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(out)) == ["batch-000000.parquet", "batch-000001.parquet", "batch-000002.parquet"]
    ck = tmp_path / "ck"
    r = runner.invoke(app, ["incremental", "run", str(out), "--checkpoint-dir", str(ck), "--mode", "single"])
    assert r.exit_code == 0, r.output
    assert "processed 3 batches (600 records)" in " ".join(r.output.split())
    r = runner.invoke(app, ["incremental", "status", "--checkpoint-dir", str(ck)])
    assert r.exit_code == 0 and "kind=single" in r.output and "batch-000002.parquet" in r.output
    r = runner.invoke(app, ["incremental", "score", str(out / "batch-000000.parquet"), "--checkpoint-dir",
                            str(ck), "--output", str(tmp_path / "o.parquet")])
    assert r.exit_code == 0, r.output
    scored = pd.read_parquet(tmp_path / "o.parquet")
    model = load_model(ck)
    frame = pd.read_parquet(out / "batch-000000.parquet")
    np.testing.assert_allclose(scored["score"], model.decision_function(frame.drop(columns=["label", "weight"])))
    r = runner.invoke(app, ["incremental", "run", str(out), "--checkpoint-dir", str(tmp_path / "x"), "--mode", "bad"])
    assert r.exit_code == 1 and "mode must be" in r.output
    r = runner.invoke(app, ["incremental", "status", "--checkpoint-dir", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no checkpoint" in r.output
    r = runner.invoke(app, ["incremental", "run", str(out), "--checkpoint-dir", str(tmp_path / "y"), "--mode",
                            "single", "--warmup", str(tmp_path / "w.parquet")])
    assert r.exit_code == 1 and "no use with --mode single" in " ".join(r.output.split())
    home = tmp_path / "home"
    r = runner.invoke(app, ["incremental", "run", str(out), "--max-batches", "2"], env={"BATTLEGROUND_HOME": str(home)})
    assert r.exit_code == 0, r.output
    assert CheckpointStore(home / "incremental" / "checkpoints").latest().watermark == "batch-000001.parquet"


def test_router_scores_newest_checkpoint(tmp_path: Path, stream) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    ck = tmp_path / "ck"
    app_ = FastAPI()
    app_.include_router(create_router(ck), prefix="/incremental")
    client = TestClient(app_)
    assert client.get("/incremental/model").status_code == 503
    model = GLMix().fit_fixed_effect(stream.warmup)
    run_stream(stream.train[:2], ck, model=model)
    info = client.get("/incremental/model").json()
    assert info["version"] == 2 and info["kind"] == "glmix" and info["watermark"] == "000000001"
    hold = stream.holdout[0].iloc[:5]
    feats = [c for c in hold.columns if c.startswith("x")]
    rows = [{"entity": int(r["entity"]), "offset": 0.0, "features": {c: r[c] for c in feats}}
            for r in hold.to_dict("records")]
    resp = client.post("/incremental/score", json={"rows": rows})
    assert resp.status_code == 200
    body = resp.json()
    np.testing.assert_allclose(body["scores"], load_model(ck).decision_function(hold), atol=1e-12)
    np.testing.assert_allclose(body["probabilities"], 1 / (1 + np.exp(-np.array(body["scores"]))))
    run_stream([(f"{i:09d}", f) for i, f in enumerate(stream.train[:3])], ck)  # the stream moves on: the router picks the new version up
    assert client.post("/incremental/score", json={"rows": rows}).json()["version"] == 3
    bad = client.post("/incremental/score", json={"rows": [{"entity": 1, "features": {"x0": 1.0}}]})
    assert bad.status_code == 422 and "missing features" in bad.text


def test_demo_is_small_and_shows_a_lift(tmp_path: Path) -> None:
    started = time.perf_counter()
    summary = run_incremental_demo(n_batches=5, batch_size=300, checkpoint_dir=tmp_path)
    assert time.perf_counter() - started < 20
    assert len(summary["batches"]) == 5 and summary["checkpoint_version"] == 5
    assert summary["watermark"] == "000000004" and summary["records"] == 1500
    assert summary["mean_auc_lift"] > 0
