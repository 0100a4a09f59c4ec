"""Incremental learning: battleground vs the lambda-learner library, in the same run.

The library is installed by this benchmark into a side environment (``/tmp/ll-venv`` by default, or
``BATTLEGROUND_LL_VENV``) with the same numpy/scipy/scikit-learn versions as ours, and timed in a
subprocess on the very same mini-batch and prior (written to a temporary .npz).

1. One update of 1,000 records with 121 coefficients (intercept, x0..x19, 100 entity one-hots):
   the library's update including its record conversion (index map, vectorisation, L-BFGS, Hessian,
   back to name-terms) vs battleground's record API (same seed-style calls) and its array fast path.
2. A GLMix mini-batch with ~100 entities: the library's per-entity loop vs battleground's batched
   Newton (and battleground's own per-entity loop).

``python -m benchmarks incremental`` (or ``--quick``, or ``BATTLEGROUND_BENCH_QUICK=1``: fewer repeats).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import pins_like_ours, side_python

N, K, E, PENALTY, DELTA = 1000, 20, 100, 10.0, 0.8

_LIBRARY_SCRIPT = textwrap.dedent(
    r'''
    import json, statistics, sys, time
    import numpy as np
    from linkedin.learner.ds.feature import Feature
    from linkedin.learner.ds.index_map import IndexMap
    from linkedin.learner.ds.record import TrainingRecord
    from linkedin.learner.ds.representation_utils import (
        index_domain_coeffs_to_nt_domain_coeffs, nt_domain_coeffs_to_index_domain_coeffs,
        nt_domain_data_to_index_domain_data)
    from linkedin.learner.prediction.trainer_sequential_bayesian_logistic_loss_with_l2 import (
        TrainerSequentialBayesianLogisticLossWithL2)

    z = np.load(sys.argv[1]); repeats = int(sys.argv[2]); lam, delta = float(z["penalty"]), float(z["delta"])
    X, y, ent, off = z["X"], z["y"], z["entity"], z["fe_offset"]
    K = X.shape[1]
    def feats(i, with_entity):
        f = [Feature("x", str(j), float(X[i, j])) for j in range(K)]
        return f + [Feature("entity", str(int(ent[i])), 1.0)] if with_entity else f
    records = [TrainingRecord(float(y[i]), 1.0, 0.0, feats(i, True)) for i in range(len(y))]
    means = [Feature(n, t, float(v)) for (n, t), v in zip(z["prior_names"].tolist(), z["prior_mean"])]
    variances = [Feature(n, t, float(v)) for (n, t), v in zip(z["prior_names"].tolist(), z["prior_var"])]

    def update(recs, means, variances, factr=1e7):
        imap, _ = IndexMap.from_records_means_and_variances(recs, means, variances)
        data = nt_domain_data_to_index_domain_data(recs, imap)
        prior = nt_domain_coeffs_to_index_domain_coeffs(means, variances, imap, lam)
        model, loss, meta = TrainerSequentialBayesianLogisticLossWithL2(
            training_data=data, initial_model=prior, penalty=lam, delta=delta).train(precision=factr)
        return index_domain_coeffs_to_nt_domain_coeffs(model, imap)

    def timed(fn, n):
        out, times = None, []
        for _ in range(n):
            t0 = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t0)
        return out, times

    (m, v), t_update = timed(lambda: update(records, means, variances), repeats)
    (mt, _), t_tight = timed(lambda: update(records, means, variances, 10.0), repeats)
    def convert_only():
        imap, _ = IndexMap.from_records_means_and_variances(records, means, variances)
        return nt_domain_data_to_index_domain_data(records, imap)
    _, t_convert = timed(convert_only, repeats)

    # GLMix: one random-effect model per entity, offsets = fixed-effect scores
    re_records = {}
    for i in range(len(y)):
        re_records.setdefault(str(int(ent[i])), []).append(TrainingRecord(float(y[i]), 1.0, float(off[i]), feats(i, False)))
    re_names = [("x", str(j)) for j in range(K)]
    re_prior = {}
    for e, mean_row, var_row in zip(z["re_entities"].tolist(), z["re_mean"], z["re_var"]):
        re_prior[e] = ([Feature("intercept", "intercept", float(mean_row[0]))] + [Feature(n, t, float(a)) for (n, t), a in zip(re_names, mean_row[1:])],
                       [Feature("intercept", "intercept", float(var_row[0]))] + [Feature(n, t, float(a)) for (n, t), a in zip(re_names, var_row[1:])])
    def glmix_loop():
        out = {}
        for e, recs in re_records.items():
            pm, pv = re_prior.get(e, ([], []))
            out[e] = update(recs, pm, pv)[0]
        return out
    re_out, t_glmix = timed(glmix_loop, max(2, repeats // 5))
    print(json.dumps({
        "update_ms": [t * 1e3 for t in t_update], "convert_ms": [t * 1e3 for t in t_convert],
        "glmix_ms": [t * 1e3 for t in t_glmix],
        "means": {f"{n}|{t}": float(x) for (n, t), x in m.items()},
        "update_tight_ms": [t * 1e3 for t in t_tight],
        "means_tight": {f"{n}|{t}": float(x) for (n, t), x in mt.items()},
        "re_means": {e: {f"{n}|{t}": float(x) for (n, t), x in d.items()} for e, d in re_out.items()},
        "n_entities": len(re_records)}))
    '''
)


_LIBRARY_STREAM_SCRIPT = textwrap.dedent(
    r'''
    import json, sys, time
    import numpy as np
    from linkedin.learner.ds.feature import Feature
    from linkedin.learner.ds.index_map import IndexMap
    from linkedin.learner.ds.record import TrainingRecord
    from linkedin.learner.ds.representation_utils import (
        index_domain_coeffs_to_nt_domain_coeffs, nt_domain_coeffs_to_index_domain_coeffs,
        nt_domain_data_to_index_domain_data)
    from linkedin.learner.prediction.trainer_sequential_bayesian_logistic_loss_with_l2 import (
        TrainerSequentialBayesianLogisticLossWithL2)

    z = np.load(sys.argv[1]); batches = int(sys.argv[2])
    X, y, ent, tb = z["train_X"], z["train_y"], z["train_entity"], z["train_batch"]
    means, variances, build, update = [], [], 0.0, 0.0
    for t in range(batches):
        t0 = time.perf_counter()
        rows = np.flatnonzero(tb == t)
        recs = [TrainingRecord(float(y[i]), 1.0, 0.0, [Feature("x", str(j), float(X[i, j])) for j in range(X.shape[1])]
                               + [Feature("entity", str(int(ent[i])), 1.0)]) for i in rows]
        t1 = time.perf_counter()
        imap, _ = IndexMap.from_records_means_and_variances(recs, means, variances)
        data = nt_domain_data_to_index_domain_data(recs, imap)
        prior = nt_domain_coeffs_to_index_domain_coeffs(means, variances, imap, 10.0)
        model, _, _ = TrainerSequentialBayesianLogisticLossWithL2(
            training_data=data, initial_model=prior, penalty=10.0, delta=0.8).train()
        m, v = index_domain_coeffs_to_nt_domain_coeffs(model, imap)
        means = [Feature(n, tt, x) for (n, tt), x in m.items()]
        variances = [Feature(n, tt, x) for (n, tt), x in v.items()]
        t2 = time.perf_counter()
        build += t1 - t0; update += t2 - t1
    print(json.dumps({"build_s": build, "update_s": update,
                      "means": {f"{f.name}|{f.term}": float(f.value) for f in means}}))
    '''
)


_LIBRARY_WIDE_SCRIPT = textwrap.dedent(
    r'''
    import json, sys, time
    import numpy as np
    from linkedin.learner.ds.feature import Feature
    from linkedin.learner.ds.index_map import IndexMap
    from linkedin.learner.ds.record import TrainingRecord
    from linkedin.learner.ds.representation_utils import (
        index_domain_coeffs_to_nt_domain_coeffs, nt_domain_coeffs_to_index_domain_coeffs,
        nt_domain_data_to_index_domain_data)
    from linkedin.learner.prediction.trainer_sequential_bayesian_logistic_loss_with_l2 import (
        TrainerSequentialBayesianLogisticLossWithL2)

    z = np.load(sys.argv[1]); repeats = int(sys.argv[2]); lam, delta = float(z["penalty"]), float(z["delta"])
    X, y, ent, off = z["X"], z["y"], z["entity"], z["fe_offset"]
    K = X.shape[1]
    names = [("intercept", "intercept")] + [("x", str(j)) for j in range(K)]
    # sparse records, as a stream would carry them: only the nonzero features
    by_entity = {}
    for i in range(len(y)):
        feats = [Feature("x", str(j), float(X[i, j])) for j in np.flatnonzero(X[i])]
        by_entity.setdefault(str(int(ent[i])), []).append(TrainingRecord(float(y[i]), 1.0, float(off[i]), feats))
    prior = {}
    for e, mean_row, var_row in zip(z["re_entities"].tolist(), z["re_mean"], z["re_var"]):
        prior[e] = ([Feature(n, t, float(a)) for (n, t), a in zip(names, mean_row)],
                    [Feature(n, t, float(a)) for (n, t), a in zip(names, var_row)])

    def update(recs, means, variances):
        imap, _ = IndexMap.from_records_means_and_variances(recs, means, variances)
        data = nt_domain_data_to_index_domain_data(recs, imap)
        init = nt_domain_coeffs_to_index_domain_coeffs(means, variances, imap, lam)
        model, _, _ = TrainerSequentialBayesianLogisticLossWithL2(
            training_data=data, initial_model=init, penalty=lam, delta=delta).train()
        return index_domain_coeffs_to_nt_domain_coeffs(model, imap)[0]

    times, out = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = {e: update(recs, *prior.get(e, ([], []))) for e, recs in by_entity.items()}
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"ms": times, "n_entities": len(by_entity),
                      "means": {e: {f"{n}|{t}": float(v) for (n, t), v in d.items()} for e, d in out.items()}}))
    '''
)


def bench_glmix_wide(python: Path, repeats: int) -> None:
    """GLMix on wide sparse random effects (200 entities x 60 features, 95 % zeros): the library's
    per-entity loop on sparse records vs battleground's batched solver (which works on the nonzero
    pattern) and its dense stacked systems, on the same mini-batch and prior."""
    from battleground.incremental import GLMix
    from battleground.incremental._sparse_groups import SparseGroups

    rng = np.random.default_rng(60)
    E_w, K_w, density = 200, 60, 0.05
    p_ent = (1.0 + np.arange(E_w)) ** -0.5
    p_ent /= p_ent.sum()
    beta = rng.normal(0, 0.5, K_w)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ent = rng.choice(E_w, size=n, p=p_ent)
        X = rng.normal(size=(n, K_w)) * (rng.random((n, K_w)) < density)
        y = (rng.random(n) < 1 / (1 + np.exp(1.0 - X @ beta))).astype(float)
        return X, y, ent

    Xw, yw, _ = draw(10 * N)
    X0, y0, e0 = draw(N)
    X1, y1, e1 = draw(N)
    g0 = GLMix(penalty=PENALTY, delta=DELTA).fit_fixed_effect(Xw, yw).partial_fit(X0, y0, entity=e0)
    state = g0.get_state()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "wide.npz"
        np.savez(data, X=X1, y=y1, entity=e1, fe_offset=g0.fixed_effect_score(X1), penalty=PENALTY, delta=DELTA,
                 re_entities=np.array(g0.entities_, dtype=str), re_mean=g0.re_coef_, re_var=1.0 / g0.re_precision_)
        script = Path(tmp) / "ll_wide.py"
        script.write_text(_LIBRARY_WIDE_SCRIPT)
        done = subprocess.run([str(python), str(script), str(data), str(max(2, repeats // 4))], capture_output=True,
                              text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        lib = json.loads(done.stdout)

    def fresh() -> GLMix:
        return GLMix.from_state(*state)

    ours, t_sparse = _timed(lambda g: g.partial_fit(X1, y1, entity=e1), repeats, fresh)
    assert ours.last_metadata_["sparse"]
    pays = SparseGroups.pays
    SparseGroups.pays = staticmethod(lambda X: False)  # type: ignore[method-assign]
    try:
        dense, t_dense = _timed(lambda g: g.partial_fit(X1, y1, entity=e1), repeats, fresh)
    finally:
        SparseGroups.pays = pays  # type: ignore[method-assign]
    diff_dense = float(np.max(np.abs(ours.re_coef_ - dense.re_coef_)))
    cols = ["intercept|intercept", *[f"x|{j}" for j in range(K_w)]]
    diff_lib = 0.0
    for e, coefs in lib["means"].items():
        row = dict(zip(cols, ours.re_coef_[ours.entities_.index(e)].tolist(), strict=True))
        diff_lib = max(diff_lib, max(abs(row[k] - v) for k, v in coefs.items()))
    med = statistics.median
    print(f"GLMix on wide sparse random effects: {N} records, {lib['n_entities']} entities in the batch "
          f"(of {E_w}), {K_w + 1} coefficients each, {100 * (1 - density):.0f} % zeros")
    print(f"  lambda-learner per-entity loop (sparse records) {_fmt(lib['ms'])}")
    print(f"  battleground batched, dense stacked systems    {_fmt(t_dense)}  x{med(lib['ms']) / med(t_dense):5.1f}")
    print(f"  battleground batched, nonzero pattern          {_fmt(t_sparse)}  x{med(lib['ms']) / med(t_sparse):5.1f}"
          f"  max|Δθ| {diff_lib:.1e} vs library (its default tolerance), {diff_dense:.1e} vs dense   target >= 8x")


_RIVALS_SCRIPT = textwrap.dedent(
    r'''
    import json, sys, time
    import numpy as np
    from sklearn.metrics import roc_auc_score

    z = np.load(sys.argv[1]); batches = int(sys.argv[2])
    parts = {k: z[k] for k in ("train_X", "train_y", "train_entity", "train_batch",
                               "hold_X", "hold_y", "hold_entity", "hold_batch")}
    K = parts["train_X"].shape[1]

    def rows(kind, t):
        sel = parts[f"{kind}_batch"] == t
        return parts[f"{kind}_X"][sel], parts[f"{kind}_y"][sel], parts[f"{kind}_entity"][sel]

    def run(learn, score):
        aucs, t_learn, t_score = [], 0.0, 0.0
        for t in range(batches):
            X, y, e = rows("train", t)
            t0 = time.perf_counter(); learn(X, y, e); t_learn += time.perf_counter() - t0
            hX, hy, he = rows("hold", t)
            t0 = time.perf_counter(); s = score(hX, he); t_score += time.perf_counter() - t0
            aucs.append(roc_auc_score(hy, s))
        return {"auc": aucs, "learn_s": t_learn, "score_s": t_score}

    out = {}
    from vowpalwabbit import Workspace

    def vw_lines(X, e, y=None):
        head = [("1" if v else "-1") + " " for v in y] if y is not None else [""] * len(X)
        return [f"{h}|x " + " ".join(f"{j}:{v:.6g}" for j, v in enumerate(row)) + f" |e {int(en)}"
                for h, row, en in zip(head, X, e)]

    for name, args in (("vw", ""), ("vw -q xe", "-q xe")):
        w = Workspace(f"--loss_function logistic --quiet {args}")

        def learn(X, y, e, w=w):
            for line in vw_lines(X, e, y):
                w.learn(line)

        def score(X, e, w=w):
            return np.array([w.predict(line) for line in vw_lines(X, e)])

        out[name] = run(learn, score)
        w.finish()

    from river import linear_model, optim

    for name, lr in (("river LogisticRegression (SGD 0.01)", 0.01), ("river LogisticRegression (SGD 0.1)", 0.1)):
        m = linear_model.LogisticRegression(optimizer=optim.SGD(lr))

        def feats(row, en):
            d = {f"x{j}": float(v) for j, v in enumerate(row)}
            d[f"entity={int(en)}"] = 1.0
            return d

        def learn(X, y, e, m=m):
            for row, yy, en in zip(X, y, e):
                m.learn_one(feats(row, en), bool(yy))

        def score(X, e, m=m):
            return np.array([m.predict_proba_one(feats(row, en))[True] for row, en in zip(X, e)])

        out[name] = run(learn, score)
    import river, vowpalwabbit
    out["versions"] = {"river": river.__version__, "vowpalwabbit": getattr(vowpalwabbit, "__version__", "?")}
    print(json.dumps(out))
    '''
)


def bench_rivals(quick: bool) -> None:
    """The whole reference stream (``gen_data.py --seed 7``, 100 batches of 1,000 records, 2,000
    held-out records per batch): learn batch t, then AUC on batch t's held-out records; mean AUC and
    time of battleground (single mode and GLMix, defaults and tuned) against River and Vowpal Wabbit
    (side environment ``/tmp/16-venv`` or ``BATTLEGROUND_RIVALS_VENV``), in the same run."""
    from battleground.incremental import GLMix, SequentialBayesianLogisticRegression
    from battleground.incremental._trainers import _auc

    batches = 20 if quick else 100
    venv = Path(os.environ.get("BATTLEGROUND_RIVALS_VENV", "/tmp/16-venv"))
    python = side_python(venv, ["river", "vowpalwabbit==9.11.9", *pins_like_ours("numpy", "scipy", "scikit-learn")],
                         "import river, vowpalwabbit, sklearn")
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(__file__).resolve().parents[1] / "tests" / "data" / "incremental" / "gen_data.py"
        subprocess.run([sys.executable, str(gen), "--seed", "7", "--out", tmp], check=True, capture_output=True)
        path = Path(tmp) / "stream_seed7.npz"
        script = Path(tmp) / "rivals.py"
        script.write_text(_RIVALS_SCRIPT)
        done = subprocess.run([str(python), str(script), str(path), str(batches)], capture_output=True, text=True,
                              check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        rivals = json.loads(done.stdout)
        with np.load(path) as z:
            ref = {k: z[k] for k in z.files}
    versions = rivals.pop("versions")

    def rows(kind: str, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sel = ref[f"{kind}_batch"] == t
        return ref[f"{kind}_X"][sel], ref[f"{kind}_y"][sel], ref[f"{kind}_entity"][sel]

    def run(model: Any) -> dict[str, Any]:
        aucs, t_learn, t_score = [], 0.0, 0.0
        for t in range(batches):
            X, y, e = rows("train", t)
            t0 = time.perf_counter()
            model.partial_fit(X, y, entity=e)
            t_learn += time.perf_counter() - t0
            hX, hy, he = rows("hold", t)
            t0 = time.perf_counter()
            s = model.decision_function(hX, entity=he)
            t_score += time.perf_counter() - t0
            aucs.append(_auc(s, hy))
        return {"auc": aucs, "learn_s": t_learn, "score_s": t_score}

    def glmix(penalty: float, delta: float) -> GLMix:
        return GLMix(penalty=penalty, delta=delta).fit_fixed_effect(ref["warm_X"], ref["warm_y"])

    load = os.getloadavg()
    X0, y0, e0 = rows("train", 0)  # warm-up (imports, first calls) outside the timings
    SequentialBayesianLogisticRegression().partial_fit(X0, y0, entity=e0).decision_function(X0, entity=e0)
    glmix(10.0, 0.8).partial_fit(X0, y0, entity=e0).decision_function(X0, entity=e0)
    ours = {
        "battleground single (defaults: penalty 10, delta 0.8)": run(SequentialBayesianLogisticRegression()),
        "battleground single, delta 0.95": run(SequentialBayesianLogisticRegression(delta=0.95)),
        "battleground single, penalty 3, delta 0.95": run(SequentialBayesianLogisticRegression(penalty=3.0, delta=0.95)),
        "battleground single, delta 0.99": run(SequentialBayesianLogisticRegression(delta=0.99)),
        "battleground GLMix (defaults: penalty 10, delta 0.8)": run(glmix(10.0, 0.8)),
        "battleground GLMix, delta 0.95": run(glmix(10.0, 0.95)),
        "battleground GLMix, delta 0.99": run(glmix(10.0, 0.99)),
    }
    print(f"whole reference stream (seed 7): {batches} batches x 1,000 records, AUC on each batch's 2,000 "
          f"held-out records after learning it; river {versions['river']}, vowpalwabbit {versions['vowpalwabbit']} "
          f"(one record at a time, their natural API); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  {'learner':55s} {'mean AUC':>8s} {'2nd half':>8s} {'learn s':>8s} {'score s':>8s}")
    for name, r in {**ours, **rivals}.items():
        a = np.asarray(r["auc"])
        print(f"  {name:55s} {a.mean():8.4f} {a[len(a) // 2:].mean():8.4f} {r['learn_s']:8.2f} {r['score_s']:8.2f}")


def _ensure_library(venv: Path) -> Path:
    """The side environment's python, creating it on first use (see ``benchmarks._common.side_python``)."""
    pins = ["lambda-learner==0.1.0", *pins_like_ours("numpy", "scipy", "scikit-learn")]
    return side_python(venv, pins, "import linkedin.learner.prediction.trainer_lbgfs")


def _timed(fn: Callable[..., Any], repeats: int, setup: Callable[[], Any] | None = None) -> tuple[Any, list[float]]:
    """Run ``fn()`` (or ``fn(setup())``, setup untimed) ``repeats`` times; milliseconds per run."""
    out: Any = None
    times: list[float] = []
    for _ in range(repeats):
        args = () if setup is None else (setup(),)
        t0 = time.perf_counter()
        out = fn(*args)
        times.append((time.perf_counter() - t0) * 1e3)
    return out, times


def _fmt(times: list[float]) -> str:
    return f"median {statistics.median(times):7.2f} ms  (min {min(times):6.2f})"


def main(argv: list[str]) -> None:

    from battleground.incremental import (
        Feature,
        GLMix,
        IndexMap,
        SequentialBayesianLogisticRegression,
        TrainerSequentialBayesianLogisticLossWithL2,
        TrainingRecord,
        index_domain_coeffs_to_nt_domain_coeffs,
        nt_domain_coeffs_to_index_domain_coeffs,
        nt_domain_data_to_index_domain_data,
    )

    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    repeats = 8 if quick else 40
    stream_batches = 20 if quick else 100
    rng = np.random.default_rng(2024)
    p_ent = (1.0 + np.arange(E)) ** -0.8
    p_ent /= p_ent.sum()
    beta, u = rng.normal(0, 0.3, K), rng.normal(0, 1, E)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ent = rng.choice(E, size=n, p=p_ent)
        X = rng.normal(size=(n, K))
        y = (rng.random(n) < 1 / (1 + np.exp(1.0 - X @ beta - u[ent]))).astype(float)
        return X, y, ent

    names = [f"x|{j}" for j in range(K)]
    X0, y0, e0 = draw(N)
    X1, y1, e1 = draw(N)
    # single mode: the prior is the posterior after batch 0, so the timed update is a realistic warm start
    prior_model = SequentialBayesianLogisticRegression(penalty=PENALTY, delta=DELTA)
    prior_model.partial_fit(X0, y0, entity=e0)
    prior_model.feature_names_in_ = names
    pm, pv = prior_model.to_nt_domain()
    state = prior_model.get_state()
    # GLMix: fixed effect on a warm-up set, random effects after batch 0
    Xw, yw, _ = draw(10 * N)
    glmix0 = GLMix(penalty=PENALTY, delta=DELTA).fit_fixed_effect(Xw, yw).partial_fit(X0, y0, entity=e0)
    fe_offset = glmix0.fixed_effect_score(X1)
    glmix_state = glmix0.get_state()

    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "batch.npz"
        np.savez(data_path, X=X1, y=y1, entity=e1, fe_offset=fe_offset, penalty=PENALTY, delta=DELTA,
                 prior_names=np.array(list(pm), dtype=str), prior_mean=np.array(list(pm.values())),
                 prior_var=np.array(list(pv.values())), re_entities=np.array(glmix0.entities_, dtype=str),
                 re_mean=glmix0.re_coef_, re_var=1.0 / glmix0.re_precision_)
        venv = Path(os.environ.get("BATTLEGROUND_LL_VENV", "/tmp/ll-venv"))
        print(f"library side environment: {venv}", flush=True)
        python = _ensure_library(venv)
        script = Path(tmp) / "ll_bench.py"
        script.write_text(_LIBRARY_SCRIPT)
        done = subprocess.run([str(python), str(script), str(data_path), str(repeats)], capture_output=True,
                              text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        lib = json.loads(done.stdout)
        # the whole reference stream (gen_data.py --seed 7), as in ANCHORS
        gen = Path(__file__).resolve().parents[1] / "tests" / "data" / "incremental" / "gen_data.py"
        subprocess.run([sys.executable, str(gen), "--seed", "7", "--out", tmp], check=True, capture_output=True)
        stream_path = Path(tmp) / "stream_seed7.npz"
        stream_script = Path(tmp) / "ll_stream.py"
        stream_script.write_text(_LIBRARY_STREAM_SCRIPT)
        done = subprocess.run([str(python), str(stream_script), str(stream_path), str(stream_batches)],
                              capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        lib_stream = json.loads(done.stdout)
        with np.load(stream_path) as z:
            ref = {k: z[k] for k in ("train_X", "train_y", "train_entity", "train_batch")}

    # --- battleground: record API, the seed's calls on the same records ----------------------------
    def feats(i: int, X: np.ndarray, ent: np.ndarray) -> list[Feature]:
        return [*(Feature("x", str(j), float(X[i, j])) for j in range(K)), Feature("entity", str(int(ent[i])), 1.0)]

    records = [TrainingRecord(float(y1[i]), 1.0, 0.0, feats(i, X1, e1)) for i in range(N)]
    means = [Feature(n, t, v) for (n, t), v in pm.items()]
    variances = [Feature(n, t, v) for (n, t), v in pv.items()]

    def record_update() -> dict:
        imap, _ = IndexMap.from_records_means_and_variances(records, means, variances)
        data = nt_domain_data_to_index_domain_data(records, imap)
        prior = nt_domain_coeffs_to_index_domain_coeffs(means, variances, imap, PENALTY)
        model, _, _ = TrainerSequentialBayesianLogisticLossWithL2(
            training_data=data, initial_model=prior, penalty=PENALTY, delta=DELTA).train()
        return index_domain_coeffs_to_nt_domain_coeffs(model, imap)[0]

    rec_means, t_record = _timed(record_update, repeats)

    def fresh() -> SequentialBayesianLogisticRegression:
        return SequentialBayesianLogisticRegression.from_state(*state)

    fast_model, t_fast = _timed(lambda m: m.partial_fit(X1, y1, entity=e1), repeats, fresh)
    fast_means = {f"{n}|{t}": v for (n, t), v in fast_model.to_nt_domain()[0].items()}
    rec_means_s = {f"{n}|{t}": v for (n, t), v in rec_means.items()}
    diff_fast = max(abs(fast_means[k] - v) for k, v in lib["means_tight"].items())
    diff_rec = max(abs(rec_means_s[k] - v) for k, v in lib["means_tight"].items())
    diff_default = max(abs(rec_means_s[k] - v) for k, v in lib["means"].items())

    # --- GLMix ----------------------------------------------------------------------------------
    def fresh_glmix(solver: str) -> Callable[[], GLMix]:
        def make() -> GLMix:
            g = GLMix.from_state(*glmix_state)
            g.solver = solver  # type: ignore[assignment]
            return g
        return make

    g_batched, t_gb = _timed(lambda g: g.partial_fit(X1, y1, entity=e1), repeats, fresh_glmix("batched"))
    _, t_gl = _timed(lambda g: g.partial_fit(X1, y1, entity=e1), max(2, repeats // 5), fresh_glmix("loop"))
    diff_glmix = 0.0
    for e, coefs in lib["re_means"].items():
        row = g_batched.re_coef_[g_batched.entities_.index(e)]
        ours = dict(zip(["intercept|intercept", *[f"x|{j}" for j in range(K)]], row.tolist(), strict=True))
        diff_glmix = max(diff_glmix, max(abs(ours[k] - v) for k, v in coefs.items()))

    # --- whole stream, fast path ------------------------------------------------------------------
    stream_model = SequentialBayesianLogisticRegression(penalty=PENALTY, delta=DELTA)
    stream_s = 0.0
    for t in range(stream_batches):
        rows = ref["train_batch"] == t
        Xt, yt, et = ref["train_X"][rows], ref["train_y"][rows], ref["train_entity"][rows]
        t0 = time.perf_counter()
        stream_model.partial_fit(Xt, yt, entity=et)
        stream_s += time.perf_counter() - t0
    stream_model.feature_names_in_ = names
    sm = {f"{n}|{t}": v for (n, t), v in stream_model.to_nt_domain()[0].items()}
    diff_stream = max(abs(sm[k] - v) for k, v in lib_stream["means"].items())

    med = statistics.median
    lib_update, lib_conv = med(lib["update_ms"]), med(lib["convert_ms"])
    print(f"single-mode update, {N} records x {len(lib['means'])} coefficients (median of {repeats})")
    print(f"  lambda-learner 0.1.0 update incl. conversion   {_fmt(lib['update_ms'])}"
          f"  [conversion {lib_conv:.2f} ms = {100 * lib_conv / lib_update:.0f} %]")
    print(f"  lambda-learner, tight L-BFGS (factr=10)        {_fmt(lib['update_tight_ms'])}"
          f"  [default tolerance is {diff_default:.1e} from the exact optimum]")
    print(f"  battleground record API (seed calls)           {_fmt(t_record)}  "
          f"x{lib_update / med(t_record):5.1f}  max|Δθ| {diff_rec:.1e}   target >= 2x")
    print(f"  battleground array fast path                   {_fmt(t_fast)}  "
          f"x{lib_update / med(t_fast):5.1f}  max|Δθ| {diff_fast:.1e}   target >= 7x")
    print("  (max|Δθ| is against the library at factr=10; ratios are against its default update)")
    print(f"GLMix mini-batch, {N} records, {lib['n_entities']} entities, 21 coefficients each")
    print(f"  lambda-learner per-entity loop                 {_fmt(lib['glmix_ms'])}")
    print(f"  battleground per-entity loop (same trainer)    {_fmt(t_gl)}  x{med(lib['glmix_ms']) / med(t_gl):5.1f}")
    print(f"  battleground batched Newton                    {_fmt(t_gb)}  "
          f"x{med(lib['glmix_ms']) / med(t_gb):5.1f}  max|Δθ| {diff_glmix:.1e}   target >= 5x")
    print(f"reference stream (seed 7), {stream_batches} batches x 1,000 records, single mode, total")
    print(f"  lambda-learner updates {lib_stream['update_s']:6.2f} s  (+ {lib_stream['build_s']:.2f} s building records)")
    print(f"  battleground fast path {stream_s:6.2f} s  x{lib_stream['update_s'] / stream_s:5.1f}  "
          f"final max|Δθ| {diff_stream:.1e} (library at its default tolerance)")
    bench_glmix_wide(python, repeats)
    bench_rivals(quick)
    bench_jetstream(quick)




async def _publish_jetstream(url: str, stream: str, subject: str, payloads: list[bytes]) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[subject])
    for i in range(0, len(payloads), 5000):
        for p in payloads[i : i + 5000]:
            await js.publish_async(subject, p)
        await js.publish_async_completed()
    await nc.close()


async def _delete_jetstream(url: str, stream: str) -> None:
    import nats

    nc = await nats.connect(url)
    await nc.jetstream().delete_stream(stream)
    await nc.close()


def _jetstream_payloads(variant: str, X: np.ndarray, y: np.ndarray, names: list[str]) -> tuple[Any, list[bytes]]:
    """The codec and the messages of one benchmark variant: ``json`` / ``f64`` one record per message,
    ``jsonxN`` a JSON array of N records per message, ``f64xN`` N packed rows per message."""
    from battleground.incremental._codec import JsonRecords, PackedRecords

    codec_name, _, per = variant.partition("x")
    per_message = int(per) if per else 1
    n = len(X)
    if codec_name == "json":
        codec: Any = JsonRecords(names)
        recs = [{"label": float(y[i]), "weight": 1.0, "offset": 0.0, "features": X[i].tolist()} for i in range(n)]
        if per_message == 1:
            return codec, [codec.encode(r) for r in recs]
        return codec, [json.dumps(recs[i : i + per_message], separators=(",", ":")).encode()
                       for i in range(0, n, per_message)]
    codec = PackedRecords(names)
    full = np.column_stack([np.full(n, np.nan), y, np.ones(n), np.zeros(n), X])
    return codec, [codec.encode(full[i : i + per_message]) for i in range(0, n, per_message)]


JETSTREAM_VARIANTS = ("json", "f64", "jsonx100", "f64x100", "f64x1000")


def bench_jetstream(quick: bool, variants: tuple[str, ...] = JETSTREAM_VARIANTS) -> None:
    """End to end from NATS JetStream: 1,000-record batches, 121 coefficients (intercept + 120 features),
    a checkpoint every batch; one record per message and many records per message (a JSON array, or
    packed f64 rows), against the same learner fed in-memory frames in the same run."""
    import asyncio
    import uuid

    import pandas as pd

    from battleground.incremental import (
        NatsJetStreamSource,
        SequentialBayesianLogisticRegression,
        run_stream,
    )

    url = os.environ.get("BATTLEGROUND_TEST_NATS_URL", "nats://127.0.0.1:4222")
    n_batches, batch, k = (10 if quick else 50), 1000, 120
    rng = np.random.default_rng(16)
    X = rng.normal(size=(n_batches * batch, k))
    beta = rng.normal(0, 0.2, size=k)
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-(X @ beta - 0.5)))).astype(float)
    names = [f"x{j}" for j in range(k)]
    frames = []
    for b in range(n_batches):
        sl = slice(b * batch, (b + 1) * batch)
        f = pd.DataFrame(X[sl], columns=names)
        f.insert(0, "offset", 0.0)
        f.insert(0, "weight", 1.0)
        f.insert(0, "label", y[sl])
        frames.append(f)

    def fresh() -> Any:
        return SequentialBayesianLogisticRegression(penalty=PENALTY, delta=DELTA)

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up (imports, first-call costs) outside the timings: a steady-state learner is measured
        run_stream([(i, f) for i, f in enumerate(frames[:2])], Path(tmp) / "warm", model=fresh())
        t0 = time.perf_counter()
        plain = fresh()
        for f in frames:
            plain.partial_fit(f)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        base = run_stream([(i, f) for i, f in enumerate(frames)], Path(tmp) / "mem", model=fresh())
        mem_s = time.perf_counter() - t0
        np.testing.assert_allclose(base.model.coef_, plain.coef_, rtol=0, atol=1e-12)
        rows: list[tuple[str, float, Any, int]] = []
        for variant in variants:
            name = f"bgbench_{uuid.uuid4().hex[:8]}"
            codec, payloads = _jetstream_payloads(variant, X, y, names)
            asyncio.run(_publish_jetstream(url, name, f"{name}.r", payloads))
            try:
                src = NatsJetStreamSource(url=url, stream=name, subject=f"{name}.r", durable="bench",
                                          batch_size=batch, codec=codec, max_wait_s=60.0)
                t0 = time.perf_counter()
                res = run_stream(src, Path(tmp) / name, model=fresh(), max_batches=n_batches)
                total = time.perf_counter() - t0
            finally:
                asyncio.run(_delete_jetstream(url, name))
            assert res.records == len(X), (variant, res.records)
            np.testing.assert_allclose(res.model.coef_, base.model.coef_, rtol=0, atol=1e-12)
            rows.append((variant, total, src, len(payloads)))
    n = len(X)
    print(f"end to end from JetStream: {n_batches} batches x {batch} records, 121 coefficients, checkpoint "
          f"(fsync) every batch; same model as in-memory frames to 1e-12; load average {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f}")
    print(f"  partial_fit alone (no screening, no checkpoint)       {fit_s:6.2f} s  {n / fit_s:9,.0f} records/s"
          f"  ({1e3 * fit_s / n_batches:.1f} ms/batch)")
    print(f"  in-memory frames through run_stream                   {mem_s:6.2f} s  {n / mem_s:9,.0f} records/s"
          f"  ({1e3 * mem_s / n_batches:.1f} ms/batch: screening + checkpoint "
          f"{1e3 * (mem_s - fit_s) / n_batches:.1f} ms)")
    for variant, total, src, n_messages in rows:
        broker, decode = src.broker_s, src.decode_s
        learner = total - broker
        per = n // n_messages
        print(f"  JetStream {variant:9s} ({per:>4} record{'s' if per > 1 else ' '}/message)      {total:6.2f} s  "
              f"{n / total:9,.0f} records/s  x{mem_s / total:4.2f} of in-memory   target >= 50,000/s")
        print(f"      broker (fetch + ack, incl. nats-py parsing) {100 * broker / total:4.0f} %   "
              f"learner {100 * learner / total:4.0f} % (decode {100 * decode / total:.0f} %, "
              f"screen + learn + checkpoint {100 * (learner - decode) / total:.0f} %)")


if __name__ == "__main__":
    if "--rivals" in sys.argv:
        bench_rivals("--quick" in sys.argv)
    elif "--glmix-wide" in sys.argv:
        bench_glmix_wide(_ensure_library(Path(os.environ.get("BATTLEGROUND_LL_VENV", "/tmp/ll-venv"))),
                         8 if "--quick" in sys.argv else 40)
    elif "--stream" in sys.argv:  # only the JetStream section (no lambda-learner side environment needed)
        chosen = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--variants=")]
        bench_jetstream("--quick" in sys.argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1",
                        tuple(chosen[0].split(",")) if chosen else JETSTREAM_VARIANTS)
    else:
        main(sys.argv[1:])
