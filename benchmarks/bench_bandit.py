"""Bandit benchmarks (issue 6, parts 2–3).

1. Per-round API (one context in, one decision with its propensity out, one update), K = 10, d = 5:
   LinTS against a naive per-arm numpy loop that samples θ_k ~ N(θ̂_k, A_k⁻¹) for every arm each round
   and inverts A after each update (measured in the same run; obp's recorded 2,371 rounds/s is the
   same algorithm). Target ≥ 10×. LinUCB and epsilon-greedy against obp's recorded 16,228 and 30,904
   rounds/s (obp does not install on Python 3.11). Target LinUCB ≥ 4×.
2. Batched API: decisions/s of ``select`` on 1M contexts (with propensities) after 100k updates.
   Target ≥ 500,000/s for LinTS and LinUCB. Issue 15: LinTS in four regimes (trained, tied, arms close,
   arms close with one starved arm so spreads differ ~100×), with the worst gap between the exact
   propensities and a 200k-draw Monte Carlo.
3. Simulator: customer-steps/s at the default size (1,000 customers, 100 products, 10 categories).
4. LinTS (the tuned defaults) against the random policy on the default simulator: trained offline on
   30 logged random steps, then 3 evaluation trajectories of 30 steps; the revenue margin.

5. The same per-round stream against mabwiser 2.7.4 (LinTS, LinUCB: ``predict`` + ``partial_fit`` of
   one row, after one ``fit`` on a 100-row warm-up of uniformly random arms) and Vowpal Wabbit 9.11.9
   (``--cb_explore_adf -q sa`` with ``--epsilon 0.1`` and with ``--squarecb``: one text-format ADF
   example per round, ``predict`` → pmf → sampled arm, ``learn`` of the labelled example). They are not
   dependencies: the benchmark installs them from PyPI into a side environment (``/tmp/bandit-venv``,
   or ``BATTLEGROUND_BANDIT_VENV``; cached, with our numpy/scipy/scikit-learn/pandas versions) and times
   them in a subprocess on fewer rounds (they are slower); where pip cannot install one it prints
   "not installable: <reason>". Mean rewards over the rounds all of them play show they all learn.

BLAS is limited to one thread (threadpoolctl here, ``*_NUM_THREADS=1`` in the side process): on a small
shared machine OpenBLAS's threads on these tiny matrices cost more than they save.

Run: ``python -m benchmarks bandit`` or ``python benchmarks/bench_bandit.py --quick``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

OBP_LINTS = 2_371  # rounds/s, obp 0.5.7, 100k rounds, K = 10, d = 5 (ANCHORS.md, recorded)
OBP_LINUCB = 16_228
OBP_EPS_GREEDY = 30_904
K, D = 10, 5


def _env(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D)), rng.normal(size=(K, D)), rng


def _stream(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contexts (n, D), true per-arm coefficients (K, D) and reward noise (n,): reward = θ_a·x + noise."""
    x, theta, rng = _env(n)
    return x, theta, rng.normal(0, 0.1, size=n)


def per_round(policy: Any, n: int) -> tuple[float, np.ndarray]:
    """Rounds/s of ``select_one`` + ``update_one`` on the stream, and the rewards it collected."""
    x, theta, noise = _stream(n)
    rewards = np.empty(n)
    t0 = time.perf_counter()
    for i in range(n):
        xi = x[i]
        a, _p = policy.select_one(xi)
        r = float(theta[a] @ xi) + noise[i]
        policy.update_one(xi, a, r)
        rewards[i] = r
    return n / (time.perf_counter() - t0), rewards


def naive_lints(n: int) -> float:
    """The textbook loop: sample every arm's θ from its posterior each round, invert after each update."""
    x, theta, rng = _env(n)
    noise = rng.normal(0, 0.1, size=n)
    a_mat = np.tile(np.eye(D), (K, 1, 1))
    a_inv = a_mat.copy()
    b = np.zeros((K, D))
    theta_hat = np.zeros((K, D))
    t0 = time.perf_counter()
    for i in range(n):
        xi = x[i]
        sampled = np.array([rng.multivariate_normal(theta_hat[k], a_inv[k]) for k in range(K)])
        a = int((sampled @ xi).argmax())
        r = float(theta[a] @ xi) + noise[i]
        a_mat[a] += np.outer(xi, xi)
        b[a] += r * xi
        a_inv[a] = np.linalg.inv(a_mat[a])
        theta_hat[a] = a_inv[a] @ b[a]
    return n / (time.perf_counter() - t0)


def batched(policy: Any, n_train: int, n_select: int) -> float:
    x, theta, rng = _env(n_train, seed=1)
    a = rng.integers(K, size=n_train)
    policy.update(x, a, (x * theta[a]).sum(axis=1) + rng.normal(0, 0.1, size=n_train))
    xs = rng.normal(size=(n_select, D))
    policy.select(xs[:1000])
    t0 = time.perf_counter()
    decision = policy.select(xs)
    elapsed = time.perf_counter() - t0
    assert decision.propensities.shape == (n_select,)
    return n_select / elapsed


def _baseline_propensity(rev: str) -> Any:
    """The ``_propensity`` module as of git revision ``rev`` (the baseline of a before/after run)."""
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    text = subprocess.run(["git", "show", f"{rev}:src/battleground/bandit/_propensity.py"], cwd=root,
                          capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_propensity.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("baseline_propensity", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lints_regimes(n_select: int, baseline: str | None = None, repeats: int = 1) -> dict[str, tuple[float, float, float | None, float, float | None]]:
    """Issue 15: batched LinTS decisions/s with exact propensities in four regimes, and the worst gap
    between ``select``'s propensities and a Monte Carlo of the Thompson draw at 20 contexts.

    trained: arms apart, every arm played. tied: untrained. close: every arm the same reward, equal play.
    close, starved: the same, with one arm played 10 times in 100k (its spread ~100× the others').
    With ``baseline`` (a git revision), ``select`` also runs with that revision's propensity function,
    alternating with the current one on the same policy and contexts (best of ``repeats`` each), and
    the third value is its rate. The last two values are the same rates per CPU second of this process
    (``time.process_time``), which a shared machine's other jobs disturb far less than the wall clock.
    """
    from battleground.bandit import LinTS

    current = LinTS.__dict__["_win_probability"]  # the staticmethod object itself
    old = staticmethod(_baseline_propensity(baseline).win_probability) if baseline else None
    out: dict[str, tuple[float, float, float | None, float, float | None]] = {}
    k_rng = np.random.default_rng(7)
    for name, theta_scale, p_starved, n_train in (("trained", 1.0, None, 100_000), ("tied", 1.0, None, 0),
                                                  ("close", 0.0, None, 100_000), ("close, starved", 0.0, 1e-4, 100_000)):
        policy = LinTS(n_arms=K, variance_scale=0.1, random_state=0)
        if n_train:
            x = k_rng.normal(size=(n_train, D))
            theta = k_rng.normal(size=(K, D)) * theta_scale
            probs = np.full(K, 1.0 / K) if p_starved is None else np.r_[p_starved, np.full(K - 1, (1 - p_starved) / (K - 1))]
            a = k_rng.choice(K, size=n_train, p=probs)
            policy.update(x, a, (x * theta[a]).sum(axis=1) + k_rng.normal(0, 0.1, size=n_train))
        xs = k_rng.normal(size=(n_select, D))
        policy.select(xs[:1000])
        rate, rate_old, cpu, cpu_old = 0.0, None, 0.0, None
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            decision = policy.select(xs)
            rate = max(rate, n_select / (time.perf_counter() - t0))
            cpu = max(cpu, n_select / (time.process_time() - c0))
            if old is not None:
                LinTS._win_probability = old  # type: ignore[method-assign]
                try:
                    t0, c0 = time.perf_counter(), time.process_time()
                    policy.select(xs)
                    rate_old = max(rate_old or 0.0, n_select / (time.perf_counter() - t0))
                    cpu_old = max(cpu_old or 0.0, n_select / (time.process_time() - c0))
                finally:
                    LinTS._win_probability = current  # type: ignore[method-assign]
        dist = policy.action_dist(xs[:20])
        gap = 0.0
        mu, sd = policy._mean_sd(xs[:20])
        for i in range(20):
            wins = (mu[i] + sd[i] * k_rng.standard_normal((200_000, K))).argmax(axis=1)
            gap = max(gap, float(np.abs(np.bincount(wins, minlength=K) / 200_000 - dist[i]).max()))
        assert decision.propensities.shape == (n_select,)
        out[name] = (rate, gap, rate_old, cpu, cpu_old)
    return out


def main_regimes(argv: list[str]) -> None:
    """``python benchmarks/bench_bandit.py regimes [N] [BASELINE_REV] [REPEATS]``: the four LinTS regimes, before/after."""
    from threadpoolctl import threadpool_limits

    n = int(argv[0]) if argv else 50_000
    baseline = argv[1] if len(argv) > 1 else None
    repeats = int(argv[2]) if len(argv) > 2 else 3
    with threadpool_limits(limits=1, user_api="blas"):
        res = lints_regimes(n, baseline, repeats=repeats)
    print(f"LinTS batched select, K={K}, d={D}, {n:,} contexts per regime, best of {repeats}, baseline {baseline}"
          " (wall clock; per CPU second in brackets):")
    for name, (rate, gap, rate_old, cpu, cpu_old) in res.items():
        before = f"{rate_old:>11,.0f}/s [{cpu_old:>11,.0f}] before → " if rate_old and cpu_old else ""
        ratio = f", {rate / rate_old:.2f}× [{cpu / cpu_old:.2f}×]" if rate_old and cpu_old else ""
        print(f"  {name:<15} {before}{rate:>11,.0f}/s [{cpu:>11,.0f}]{ratio}  (worst gap vs 200k-draw MC {gap:.1e})")


def simulator_speed(n_steps: int) -> float:
    from battleground.bandit import RetailSimulator

    sim = RetailSimulator()
    sim.reset()
    actions = np.random.default_rng(0).integers(11, size=sim.n_customers)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        sim.step(actions)
        sim.contexts()
    return n_steps * sim.n_customers / (time.perf_counter() - t0)


def revenue_margin(n_log: int, n_eval: int, n_traj: int) -> tuple[float, float, float]:
    from battleground.bandit import RandomPolicy, RetailSimulator
    from battleground.bandit._config import load_config
    from battleground.bandit.workflow import _random_logs, build_policy, rollout, train_offline

    config = load_config(None, [f"collect.n_steps={n_log}"])
    logs = _random_logs(config, n_steps=n_log, seed=1, purpose=1)
    ts, _ = train_offline(build_policy("linear_ts", config["agents"]["linear_ts"], 11, 0), logs)
    sim = RetailSimulator(**config["simulator"])
    ts_rev = [rollout(copy.deepcopy(ts), sim, n_steps=n_eval, episode=(3, 100, i)).revenue_per_customer for i in range(n_traj)]
    rnd_rev = [rollout(RandomPolicy(random_state=i), sim, n_steps=n_eval, episode=(3, 100, i)).revenue_per_customer for i in range(n_traj)]
    return float(np.mean(ts_rev)), float(np.mean(rnd_rev)), float(np.mean(ts_rev) / np.mean(rnd_rev) - 1)


LIBS_ALPHA_TS = float(np.sqrt(0.1))  # mabwiser samples θ ~ N(θ̂, α²A⁻¹): α² = our variance_scale 0.1
LIBS_ALPHA_UCB = 0.5
_LIBRARIES = {  # name → (pins, probe)
    "mabwiser": (["mabwiser==2.7.4"], "import mabwiser.mab"),
    "vowpalwabbit": (["vowpalwabbit==9.11.9"], "import vowpalwabbit"),
}
_SAME_VERSIONS = ("numpy", "scipy", "scikit-learn", "pandas")

_LIBRARY_SCRIPT = textwrap.dedent(
    r'''
    import json, sys, time
    from importlib.metadata import version
    import numpy as np

    z = np.load(sys.argv[1]); library = sys.argv[2]; n = int(sys.argv[3])
    x, theta, noise = z["x"][:n], z["theta"], z["noise"][:n]
    K, D = theta.shape
    results = {}

    def mab_run(name, policy):
        from mabwiser.mab import MAB
        mab = MAB(list(range(K)), policy, seed=0)
        mab.fit(z["warm_a"], z["warm_r"], z["warm_x"])
        rewards = np.empty(n)
        t0 = time.perf_counter()
        for i in range(n):
            xi = x[i : i + 1]
            a = mab.predict(xi)
            r = float(theta[a] @ x[i]) + noise[i]
            mab.partial_fit([a], [r], xi)
            rewards[i] = r
        results[name] = {"rate": n / (time.perf_counter() - t0), "rewards": rewards.tolist()}

    def vw_run(name, explore):
        import vowpalwabbit
        vw = vowpalwabbit.Workspace(f"--cb_explore_adf -q sa --quiet --random_seed 0 {explore}")
        actions = [f"|a a{k}" for k in range(K)]
        u = np.random.default_rng(1).random(n).tolist()
        rewards = np.empty(n)
        t0 = time.perf_counter()
        for i in range(n):
            xi = x[i]
            example = ["shared |s " + " ".join(f"x{j}:{v:.6g}" for j, v in enumerate(xi.tolist())), *actions]
            pmf = vw.predict(example)
            a, acc, target = 0, pmf[0], u[i] * sum(pmf)
            while acc < target and a < K - 1:
                a += 1
                acc += pmf[a]
            r = float(theta[a] @ xi) + noise[i]
            example[a + 1] = f"0:{-r:.6g}:{pmf[a]:.6g} {actions[a]}"
            vw.learn(example)
            rewards[i] = r
        results[name] = {"rate": n / (time.perf_counter() - t0), "rewards": rewards.tolist()}
        vw.finish()

    if library == "mabwiser":
        from mabwiser.mab import LearningPolicy
        mab_run("LinTS", LearningPolicy.LinTS(alpha=float(z["alpha_ts"])))
        mab_run("LinUCB", LearningPolicy.LinUCB(alpha=float(z["alpha_ucb"])))
    else:
        vw_run("epsilon 0.1", "--epsilon 0.1")
        vw_run("squarecb", "--squarecb")
    print(json.dumps({"version": version(library), "results": results}))
    '''
)


def compare_libraries(x: np.ndarray, theta: np.ndarray, noise: np.ndarray, rounds: dict[str, int],
                      timeout: float = 120.0) -> dict[str, dict[str, Any] | str]:
    """Each library's per-round results on the first ``rounds[library]`` rounds of the stream, run in the
    side environment; a string (the reason) where it cannot be installed or run."""
    from benchmarks._common import SideEnvError, pins_like_ours, side_python

    venv = Path(os.environ.get("BATTLEGROUND_BANDIT_VENV", "/tmp/bandit-venv"))
    rng = np.random.default_rng(1)
    warm_a = np.repeat(np.arange(K), 10)
    warm_x = rng.normal(size=(warm_a.size, D))
    warm_r = (warm_x * theta[warm_a]).sum(axis=1) + rng.normal(0, 0.1, size=warm_a.size)
    env = {**os.environ, **{v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    out: dict[str, dict[str, Any] | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "stream.npz"
        n_max = max(rounds.values())
        np.savez(data, x=x[:n_max], theta=theta, noise=noise[:n_max], warm_a=warm_a, warm_x=warm_x,
                 warm_r=warm_r, alpha_ts=LIBS_ALPHA_TS, alpha_ucb=LIBS_ALPHA_UCB)
        script = Path(tmp) / "bandit_libs.py"
        script.write_text(_LIBRARY_SCRIPT)
        for name, (pins, probe) in _LIBRARIES.items():
            try:
                python = side_python(venv, [*pins, *pins_like_ours(*_SAME_VERSIONS)], probe)
            except SideEnvError as exc:
                out[name] = f"not installable: {exc}"
                continue
            try:
                done = subprocess.run([str(python), str(script), str(data), name, str(rounds[name])],
                                      capture_output=True, text=True, env=env, timeout=timeout)
            except subprocess.TimeoutExpired:
                out[name] = f"run failed: timed out after {timeout:.0f} s"
                continue
            if done.returncode != 0:
                last = done.stderr.strip().splitlines()[-1:]
                out[name] = f"run failed: {last[0] if last else f'exit code {done.returncode}'}"
                continue
            out[name] = json.loads(done.stdout)
    return out


def _print_libraries(libs: dict[str, dict[str, Any] | str], ours: dict[str, tuple[float, np.ndarray]],
                     x: np.ndarray, theta: np.ndarray) -> None:
    venv = os.environ.get("BATTLEGROUND_BANDIT_VENV", "/tmp/bandit-venv")
    print(f"same stream, other libraries (side environment {venv}, subprocess, one BLAS thread):")
    ts, ucb, eps = ours["LinTS"][0], ours["LinUCB"][0], ours["epsilon-greedy"][0]
    labels = {"LinTS": f"LinTS (alpha=√0.1={LIBS_ALPHA_TS:.3f})", "LinUCB": f"LinUCB (alpha={LIBS_ALPHA_UCB})",
              "epsilon 0.1": "--cb_explore_adf -q sa --epsilon 0.1", "squarecb": "--cb_explore_adf -q sa --squarecb"}
    played = [len(r["rewards"]) for lib in libs.values() if isinstance(lib, dict) for r in lib["results"].values()]
    for name, lib in libs.items():
        if isinstance(lib, str):
            print(f"  {name}: {lib}")
            continue
        for policy, res in lib["results"].items():
            rate, n = res["rate"], len(res["rewards"])
            if name == "mabwiser":
                mine, label = (ts, "LinTS") if policy == "LinTS" else (ucb, "LinUCB")
                ratio = f"battleground {label} {mine / rate:.1f}×"
            else:
                ratio = (f"battleground LinTS {ts / rate:.1f}×, LinUCB {ucb / rate:.1f}×"
                         + (f", epsilon-greedy {eps / rate:.1f}×" if policy == "epsilon 0.1" else ""))
            print(f"  {name + ' ' + lib['version'] + ' ' + labels[policy]:<58} {rate:>7,.0f} rounds/s ({n:,} rounds) → {ratio}")
    if played:
        m = min(played)
        means = {f"battleground {k}": float(v[1][:m].mean()) for k, v in ours.items()}
        for name, lib in libs.items():
            if isinstance(lib, dict):
                means.update({f"{name} {k}": float(np.mean(r["rewards"][:m])) for k, r in lib["results"].items()})
        best = float((x[:m] @ theta.T).max(axis=1).mean())
        uniform = float((x[:m] @ theta.T).mean())
        print(f"  mean reward over the first {m:,} rounds (best arm {best:.3f}, uniform random {uniform:.3f}; "
              "mabwiser after its 100-row warm-up):")
        print("    " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))


def main(argv: list[str]) -> None:
    from threadpoolctl import threadpool_limits

    from battleground.bandit import EpsilonGreedy, LinTS, LinUCB

    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    n_rounds = 20_000 if quick else 100_000
    n_naive = 1_000 if quick else 3_000
    n_select = 200_000 if quick else 1_000_000
    lib_rounds = {"mabwiser": 2_000, "vowpalwabbit": 5_000} if quick else {"mabwiser": 5_000, "vowpalwabbit": 20_000}
    with threadpool_limits(limits=1, user_api="blas"):
        ours = {"LinTS": per_round(LinTS(n_arms=K, variance_scale=0.1, random_state=0), n_rounds),
                "LinUCB": per_round(LinUCB(n_arms=K, alpha=LIBS_ALPHA_UCB, random_state=0), n_rounds),
                "epsilon-greedy": per_round(EpsilonGreedy(n_arms=K, epsilon=0.1, random_state=0), n_rounds)}
        naive = naive_lints(n_naive)
        ts, ucb, eps = (ours[k][0] for k in ("LinTS", "LinUCB", "epsilon-greedy"))
        print(f"per-round API, K={K}, d={D}, {n_rounds:,} rounds (select_one with propensity + update_one):")
        print(f"  LinTS           {ts:>11,.0f} rounds/s   naive per-arm numpy loop {naive:,.0f} rounds/s → {ts / naive:.1f}× "
              f"(target ≥ 10×; obp recorded {OBP_LINTS:,} → {ts / OBP_LINTS:.1f}×)")
        print(f"  LinUCB          {ucb:>11,.0f} rounds/s   obp recorded {OBP_LINUCB:,} → {ucb / OBP_LINUCB:.1f}× (target ≥ 4×)")
        print(f"  epsilon-greedy  {eps:>11,.0f} rounds/s   obp recorded {OBP_EPS_GREEDY:,} → {eps / OBP_EPS_GREEDY:.1f}×")
        x, theta, noise = _stream(n_rounds)
        _print_libraries(compare_libraries(x, theta, noise, lib_rounds), ours, x, theta)
        b_ts = batched(LinTS(n_arms=K, variance_scale=0.1, random_state=0), 100_000, n_select)
        b_ucb = batched(LinUCB(n_arms=K, alpha=0.5, random_state=0), 100_000, n_select)
        b_ts_fresh = n_select / _time(lambda: LinTS(n_arms=K, random_state=0).select(np.random.default_rng(2).normal(size=(n_select, D))))
        print(f"batched select, {n_select:,} contexts after 100k updates (target ≥ 500,000/s):")
        print(f"  LinTS   {b_ts:>13,.0f} decisions/s (untrained, all arms tied: {b_ts_fresh:,.0f}/s)")
        print(f"  LinUCB  {b_ucb:>13,.0f} decisions/s (target ≥ 3M/s)")
        n_regime = max(n_select // 5, 20_000)
        print(f"LinTS with exact propensities, {n_regime:,} contexts per regime (worst |propensity − 200k-draw MC|):")
        for name, (rate, gap, *_) in lints_regimes(n_regime).items():
            print(f"  {name:<15} {rate:>13,.0f} decisions/s  (max gap {gap:.1e})")
    steps = 20 if quick else 50
    print(f"simulator (1,000 customers, 100 products, 10 categories): {simulator_speed(steps):,.0f} customer-steps/s")
    n_log, n_eval, n_traj = (20, 15, 2) if quick else (30, 30, 3)
    ts_rev, rnd_rev, margin = revenue_margin(n_log, n_eval, n_traj)
    print(f"LinTS vs random ({n_log} logged steps, {n_traj} trajectories × {n_eval} steps, 1,000 customers): "
          f"{ts_rev:,.2f} vs {rnd_rev:,.2f} accumulated revenue per customer → {100 * margin:+.2f} %")


def _time(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    if sys.argv[1:2] == ["regimes"]:
        main_regimes(sys.argv[2:])
    else:
        main(sys.argv[1:])
