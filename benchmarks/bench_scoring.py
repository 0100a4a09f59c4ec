"""Serving, batch predict and trainer overhead against MLflow, in the same run (issue 14).

1. 1-row HTTP latency p50: ``battleground serve`` vs ``mlflow models serve --env-manager local`` on the
   same registered champion, for a calibrated LightGBM with categorical columns and for logistic; the
   two servers are measured in alternating blocks so machine load hits both alike (target >= 3x).
2. Batch predict of 1M rows (100k with quick): ``battleground model predict`` (chunked, 2 worker
   processes, Parquet to Parquet) vs ``mlflow.pyfunc.load_model(...).predict(frame)`` on the same rows
   already in memory (target >= 1.5x), and peak memory (``ru_maxrss`` of each process) against a process
   that holds the model and scores one chunk (target <= 2x).
3. Trainer overhead over raw LightGBM (``bench_model.bench_overhead``, target <= 5 %).

``python -m benchmarks scoring``; ``BATTLEGROUND_BENCH_QUICK=1`` (or ``--quick``) shrinks everything;
``BENCH_SCORING_PARTS=serving,batch,overhead`` (the default: all three) runs only the parts named.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import free_port, percentile, wait_ready

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _register(settings: Any, name: str, model: Any, X: Any, y: Any) -> None:
    """Log ``model`` as our pyfunc, register it as ``name`` and promote it through the gate."""
    import warnings

    from mlflow.models import infer_signature

    from battleground.model._pyfunc import ProbabilityModel
    from battleground.model.gate import champion_gate, register_candidate
    from battleground.model.tracking import _mlflow, use_experiment

    mlflow = _mlflow(settings)
    use_experiment(mlflow, "bench-scoring", settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            mlflow.set_tag("input_schema", json.dumps([[c, str(X[c].dtype)] for c in X.columns]))
            sample = X.head(20)
            info = mlflow.pyfunc.log_model(name="model", python_model=ProbabilityModel(model),
                                           signature=infer_signature(sample, model.predict_proba(sample)[:, 1]))
    version = register_candidate(settings, str(info.model_uri), name, source="bench_scoring")
    champion_gate(settings, name, version, X, y, metric="roc_auc", threshold=0.0, source="bench_scoring", n_boot=10)


def _alternating(urls: dict[str, tuple[str, Any]], n: int, block: int = 50) -> dict[str, list[float]]:
    """Latencies (ms) of ``n`` 1-row requests per server, in alternating blocks of ``block``."""
    import httpx

    out: dict[str, list[float]] = {k: [] for k in urls}
    clients = {k: httpx.Client(timeout=10) for k in urls}
    try:
        for k, (url, payload) in urls.items():  # warm-up
            for _ in range(30):
                clients[k].post(url, json=payload).raise_for_status()
        while min(len(v) for v in out.values()) < n:
            for k, (url, payload) in urls.items():
                c = clients[k]
                for _ in range(block):
                    t = time.perf_counter()
                    c.post(url, json=payload).raise_for_status()
                    out[k].append((time.perf_counter() - t) * 1000)
    finally:
        for c in clients.values():
            c.close()
    return out


def bench_serving(settings: Any, env: dict[str, str], names: dict[str, str], record: dict[str, Any], n: int) -> None:
    bin_dir = Path(sys.executable).parent
    for label, name in names.items():
        ours_port, ml_port = free_port(), free_port()
        logs = Path(env["BATTLEGROUND_HOME"]).parent
        ours_log, ml_log = open(logs / f"serve_{name}.log", "wb"), open(logs / f"mlflow_{name}.log", "wb")  # noqa: SIM115
        ours = subprocess.Popen([sys.executable, "-m", "battleground", "serve", "--model-name", name, "--port",
                                 str(ours_port)], env=env, stdout=ours_log, stderr=subprocess.STDOUT)
        ml = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{name}@champion",
                               "--env-manager", "local", "-p", str(ml_port), "-h", "127.0.0.1"],
                              env={**env, "MLFLOW_TRACKING_URI": settings.mlflow_uri,
                                   "PATH": f"{bin_dir}:{os.environ['PATH']}"},
                              stdout=ml_log, stderr=subprocess.STDOUT)
        try:  # start-up imports MLflow and checks the model's digest: minutes on a loaded 2-core machine
            wait_ready(f"http://127.0.0.1:{ours_port}/health", timeout=600, proc=ours)
            wait_ready(f"http://127.0.0.1:{ml_port}/health", timeout=600, proc=ml)
            lat = _alternating({"ours": (f"http://127.0.0.1:{ours_port}/predict", record),
                                "mlflow": (f"http://127.0.0.1:{ml_port}/invocations",
                                           {"dataframe_records": [record]})}, n)
        finally:
            for proc in (ours, ml):
                proc.terminate()
                proc.wait(timeout=30)
            ours_log.close()
            ml_log.close()
        a, b = lat["ours"], lat["mlflow"]
        print(f"1-row latency, {label}: p50/p99 ms ours {percentile(a, 50):.2f}/{percentile(a, 99):.2f}, "
              f"mlflow models serve {percentile(b, 50):.2f}/{percentile(b, 99):.2f}; "
              f"mlflow/ours p50 = {percentile(b, 50) / percentile(a, 50):.2f}x (target >= 3x; {n} requests each, "
              f"alternating blocks of 50)", flush=True)


_OURS = """
import json, resource, sys, time
from battleground.model.batch import batch_predict
from battleground.model.tracking import load_champion
from battleground.settings import Settings
settings = Settings.from_env()
champ = load_champion(settings, sys.argv[1])
t = time.perf_counter()
res = batch_predict(champ, sys.argv[2], sys.argv[3], chunk_rows=int(sys.argv[4]), workers=int(sys.argv[5]))
secs = time.perf_counter() - t
print(json.dumps({"seconds": secs, "rows": res.rows, "chunks": res.chunks,
                  "self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "child_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""

_MLFLOW = """
import json, resource, sys, time, warnings
import mlflow, pandas as pd
from battleground.settings import Settings
mlflow.set_tracking_uri(Settings.from_env().mlflow_uri)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = mlflow.pyfunc.load_model(f"models:/{sys.argv[1]}@champion")
t0 = time.perf_counter()
frame = pd.read_parquet(sys.argv[2])
read = time.perf_counter() - t0
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
proba = model.predict(frame.drop(columns=["char_id"]))
secs = time.perf_counter() - t
t = time.perf_counter()
out = pd.DataFrame({"char_id": frame["char_id"], "churn_probability": proba})
out.to_parquet(sys.argv[3], index=False)
write = time.perf_counter() - t
print(json.dumps({"seconds": secs, "read": read, "write": write, "rows": len(proba), "before_mib": before,
                  "self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_ONE_CHUNK = """
import json, resource, sys
import pyarrow.parquet as pq
from battleground.model.serve import score_frame, scoring_model
from battleground.model.tracking import load_champion
from battleground.settings import Settings
champ = load_champion(Settings.from_env(), sys.argv[1])
batch = next(pq.ParquetFile(sys.argv[2]).iter_batches(batch_size=int(sys.argv[3])))
p = score_frame(scoring_model(champ), batch.to_pandas()[champ.feature_names])
print(json.dumps({"rows": len(p), "self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _py(code: str, env: dict[str, str], *args: object) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def bench_batch(env: dict[str, str], name: str, path: Path, out_dir: Path, rows: int, chunk_rows: int,
                workers: int) -> None:
    load = os.getloadavg()[0]
    base = _py(_ONE_CHUNK, env, name, path, chunk_rows)
    ml = _py(_MLFLOW, env, name, path, out_dir / "mlflow.parquet")
    ours = _py(_OURS, env, name, path, out_dir / "ours.parquet", chunk_rows, workers)
    one = _py(_OURS, env, name, path, out_dir / "ours1.parquet", chunk_rows, 1)
    import numpy as np
    import pandas as pd

    a = pd.read_parquet(out_dir / "ours.parquet")["churn_probability"].to_numpy()
    b = pd.read_parquet(out_dir / "mlflow.parquet")["churn_probability"].to_numpy()
    same = bool(np.array_equal(a, b))
    ml_file = ml["read"] + ml["seconds"] + ml["write"]
    print(f"batch predict {rows:,} rows ({name}): ours {ours['seconds']:.2f} s Parquet to Parquet "
          f"({ours['chunks']} chunks of {chunk_rows:,}, {workers} workers; 1 worker {one['seconds']:.2f} s), "
          f"mlflow.pyfunc predict on the frame in memory {ml['seconds']:.2f} s (read + predict + write "
          f"{ml_file:.2f} s): {ml['seconds'] / ours['seconds']:.2f}x predict-only, {ml_file / ours['seconds']:.2f}x "
          f"file to file (target >= 1.5x); same probabilities: {same}", flush=True)
    peak = max(ours["self_mib"], ours["child_mib"])
    print(f"peak RSS: model + one chunk of {chunk_rows:,} in one process {base['self_mib']:.0f} MiB; ours parent "
          f"{ours['self_mib']:.0f} MiB, largest worker {ours['child_mib']:.0f} MiB (max {peak / base['self_mib']:.2f}x, "
          f"target <= 2x; 1 worker {one['self_mib']:.0f} MiB); mlflow.pyfunc {ml['self_mib']:.0f} MiB "
          f"({ml['before_mib']:.0f} MiB with the frame loaded, before predict); load average {load:.2f} before",
          flush=True)


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    parts = set(os.environ.get("BENCH_SCORING_PARTS", "serving,batch,overhead").split(","))
    n_rows = 100_000 if quick else 1_000_000
    n_lat = 200 if quick else 1000

    from battleground.model.data import CreateDataSet
    from battleground.model.train import Trainer
    from battleground.settings import Settings

    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs", flush=True)
    home = Path(tempfile.mkdtemp(prefix="bench_scoring_"))
    env = {**os.environ, "BATTLEGROUND_HOME": str(home / ".battleground"),
           "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    settings = Settings.from_env(env)
    ds = CreateDataSet(n_characters=4000 if quick else 20_000, seed=0)
    X, y = ds.load_train_set()
    X_test, y_test = ds.load_test_set()
    # the default champion of `model train`: balanced classes, sigmoid-calibrated; and the pipeline's logistic
    lgbm = Trainer("lightgbm", params={"n_estimators": 200}, calibration="sigmoid").fit(X, y)
    logistic = Trainer("logistic").fit(X, y)
    names = {"LightGBM (calibrated, 4 categorical columns)": "churn_lgbm", "logistic": "churn_logistic"}
    _register(settings, "churn_lgbm", lgbm, X_test, y_test)
    _register(settings, "churn_logistic", logistic, X_test, y_test)
    record = json.loads(X_test.head(1).to_json(orient="records"))[0]
    if "serving" in parts:
        bench_serving(settings, env, names, record, n_lat)
    if "batch" in parts:
        bench_scoring_batch(X_test, home, env, n_rows, quick)
    if "overhead" in parts:
        from benchmarks.bench_model import bench_overhead

        bench_overhead(20_000 if quick else 200_000, 30, 3)


def bench_scoring_batch(X_test: Any, home: Path, env: dict[str, str], n_rows: int, quick: bool) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    frame = X_test.iloc[rng.integers(0, len(X_test), n_rows)].reset_index(drop=True)
    frame.insert(0, "char_id", np.arange(n_rows))
    path = home / "rows.parquet"
    frame.to_parquet(path, index=False)
    del frame
    bench_batch(env, "churn_lgbm", path, home, n_rows, 100_000 if not quick else 20_000, 2)


if __name__ == "__main__":
    main(sys.argv[1:])
