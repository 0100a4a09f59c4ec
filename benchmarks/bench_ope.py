"""Off-policy evaluation benchmarks (issue 6, part 1).

1. All ten estimators on 1M logged rounds (K = 10) through ``estimate_all`` (one validation, shared
   per-round columns). Target ≤ 0.15 s. Baseline in the same run: a plain numpy implementation that
   computes each estimator on its own; obp 0.5.7's recorded 1.54 s for its eight (ANCHORS.md; obp does not
   install on Python 3.11, so that figure is quoted, not measured).
2. Percentile bootstrap, 1,000 resamples on 1M rounds. Target ≤ 2.5 s. Baseline in the same run: a plain
   per-resample numpy loop (random indices, gather, mean) for DR; obp's recorded 12.4 s quoted.

3. Issue 15: the order-independent bootstrap (DR, 1,000 resamples) against obp 0.5.7's
   ``DoublyRobust.estimate_interval`` measured in the same run. obp needs Python 3.11 with numpy<2,
   scikit-learn<1.3, pandas<2.2, scipy<1.12 and torch; the benchmark builds that side environment on
   first use (``/tmp/obp-venv`` or ``BATTLEGROUND_OBP_VENV``: the CPU torch wheel from ``/opt/wheels``
   when there is one, else ``torch`` from the index, then ``pip install --no-deps
   --ignore-requires-python obp==0.5.7``) and times obp in a subprocess on the same arrays. Target ≥ 5×.

Run: ``python -m benchmarks ope`` (1M rounds) or ``BATTLEGROUND_BENCH_QUICK=1 python -m benchmarks ope``
/ ``python benchmarks/bench_ope.py --quick`` (100k rounds).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from benchmarks._common import best_of

OBP_ESTIMATORS_S = 1.54  # obp 0.5.7, 8 estimators, 1M rounds (ANCHORS.md, recorded)
OBP_BOOTSTRAP_S = 12.4  # obp 0.5.7, 1,000 resamples, 1M rounds (ANCHORS.md, recorded)



def _data(n: int) -> tuple[np.ndarray, ...]:
    from battleground.datasets._bandit_feedback import epsilon_greedy_policy, make_bandit_feedback

    fb = make_bandit_feedback(n, n_actions=10, dim_context=5, beta=0.5, random_state=0)
    rng = np.random.default_rng(1)
    q_hat = np.clip(fb.expected_reward + rng.normal(0, 0.05, fb.expected_reward.shape), 0, 1)
    dist = epsilon_greedy_policy(q_hat, 0.2)
    return fb.action, fb.reward, fb.pscore, dist, q_hat


def _plain_numpy(action, reward, pscore, dist, q_hat, lam: float = 5.0) -> dict[str, float]:
    """Each estimator computed on its own, the way a straightforward script would."""
    idx = np.arange(action.shape[0])

    def w() -> np.ndarray:
        return dist[idx, action] / pscore

    def dm_term() -> np.ndarray:
        return (dist * q_hat).sum(axis=1)

    def res() -> np.ndarray:
        return reward - q_hat[idx, action]

    out = {
        "ips": float(np.mean(w() * reward)),
        "capped_ips": float(np.mean(np.minimum(w(), lam) * reward)),
        "snips": float(np.sum(w() * reward) / np.sum(w())),
        "capped_snips": float(np.sum(np.minimum(w(), lam) * reward) / np.sum(np.minimum(w(), lam))),
        "dm": float(np.mean(dm_term())),
        "dr": float(np.mean(dm_term() + w() * res())),
        "capped_dr": float(np.mean(dm_term() + np.minimum(w(), lam) * res())),
        "sndr": float(np.mean(dm_term() + w() * res() / np.mean(w()))),
        "switch_dr": float(np.mean(dm_term() + (w() <= lam) * w() * res())),
        "dr_os": float(np.mean(dm_term() + lam * w() / (w() ** 2 + lam) * res())),
    }
    return out


def bench_estimators(n: int) -> dict[str, float]:
    from battleground.ope import estimate_all

    args = _data(n)
    t_ours, ours = best_of(lambda: estimate_all(*args, lambda_=5.0))
    t_plain, plain = best_of(lambda: _plain_numpy(*args))
    diff = max(abs(a - b) for a, b in zip(ours.values(), plain.values(), strict=True))
    print(
        f"[estimators] n={n:,} K=10: battleground.ope.estimate_all (10 estimators, validated) {t_ours:.3f} s"
    )
    print(
        f"[estimators] plain numpy, each estimator on its own (same run): {t_plain:.3f} s  "
        f"ratio {t_plain / t_ours:.1f}x; max |difference| {diff:.1e}"
    )
    if n == 1_000_000:
        print(
            f"[estimators] obp 0.5.7 recorded (not measured, 8 estimators): {OBP_ESTIMATORS_S} s  "
            f"ratio {OBP_ESTIMATORS_S / t_ours:.1f}x; target ≤ 0.15 s: {'met' if t_ours <= 0.15 else 'MISSED'}"
        )
    return {"ours_s": t_ours, "plain_s": t_plain}


def bench_bootstrap(n: int, n_boot: int = 1000) -> dict[str, float]:
    from battleground.ope import DR, all_estimators, estimate_intervals

    args = _data(n)
    t_one, one = best_of(
        lambda: estimate_intervals(
            [DR()], *args, ci="bootstrap", n_bootstrap=n_boot, random_state=0
        )[0],
        repeat=2,
    )
    t_all, _ = best_of(
        lambda: estimate_intervals(
            all_estimators(5.0), *args, ci="bootstrap", n_bootstrap=n_boot, random_state=0
        ),
        repeat=1,
    )
    action, reward, pscore, dist, q_hat = args
    idx = np.arange(n)
    v = (dist * q_hat).sum(axis=1) + dist[idx, action] / pscore * (reward - q_hat[idx, action])

    def loop() -> np.ndarray:
        rng = np.random.default_rng(0)
        return np.array([v[rng.integers(0, n, n)].mean() for _ in range(n_boot)])

    t_loop, draws = best_of(loop, repeat=1)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    print(
        f"[bootstrap] n={n:,}, {n_boot} resamples, DR: battleground.ope {t_one:.2f} s "
        f"(CI [{one.ci_low:.5f}, {one.ci_high:.5f}], sd {one.se:.2e})"
    )
    print(f"[bootstrap] all ten estimators sharing one set of resamples: {t_all:.2f} s")
    print(
        f"[bootstrap] plain per-resample numpy loop (same run): {t_loop:.2f} s  ratio {t_loop / t_one:.1f}x "
        f"(CI [{lo:.5f}, {hi:.5f}], sd {draws.std(ddof=1):.2e})"
    )
    if n == 1_000_000:
        print(
            f"[bootstrap] obp 0.5.7 recorded (not measured): {OBP_BOOTSTRAP_S} s  ratio "
            f"{OBP_BOOTSTRAP_S / t_one:.1f}x; target ≤ 2.5 s and ≥ 5x obp: "
            f"{'met' if t_one <= 2.5 and OBP_BOOTSTRAP_S / t_one >= 5 else 'MISSED'}"
        )
    return {"ours_s": t_one, "all_s": t_all, "loop_s": t_loop}


def bench_bootstrap_order(n: int, n_boot: int = 1000) -> dict[str, float]:
    """Issue 15: the same log in its own order and sorted by reward must give the same interval."""
    from battleground.ope import DR, estimate_intervals

    args = _data(n)
    order = np.argsort(args[1], kind="stable")
    t_own, own = best_of(lambda: estimate_intervals([DR()], *args, ci="bootstrap", n_bootstrap=n_boot, random_state=0)[0], repeat=1)
    t_sorted, srt = best_of(
        lambda: estimate_intervals([DR()], *[a[order] for a in args], ci="bootstrap", n_bootstrap=n_boot, random_state=0)[0],
        repeat=1,
    )
    width = own.ci_high - own.ci_low
    ratio = (srt.ci_high - srt.ci_low) / width
    print(
        f"[bootstrap order] n={n:,}, {n_boot} resamples, DR: log order {t_own:.2f} s (width {width:.5f}), "
        f"sorted by reward {t_sorted:.2f} s (width ratio {ratio:.3f}; Monte-Carlo error of a width ≈ "
        f"{1 / np.sqrt(2 * n_boot):.3f} relative)"
    )
    return {"own_s": t_own, "sorted_s": t_sorted, "width_ratio": float(ratio)}


OBP_PINS = ["numpy<2", "scikit-learn<1.3", "pandas<2.2", "scipy<1.12", "matplotlib<3.9", "seaborn", "tqdm", "pyyaml"]
OBP_PROBE = "import torch, obp; from obp.ope import DoublyRobust"
_OBP_SCRIPT = textwrap.dedent(
    r'''
    import json, sys, time
    import numpy as np
    import obp
    from obp.ope import DoublyRobust

    z = np.load(sys.argv[1]); n_boot = int(sys.argv[2])
    kw = dict(reward=z["reward"], action=z["action"], pscore=z["pscore"],
              action_dist=z["dist"][:, :, None], estimated_rewards_by_reg_model=z["q_hat"][:, :, None])
    dr = DoublyRobust()
    value = float(dr.estimate_policy_value(**kw))
    t0 = time.process_time()
    ci = dr.estimate_interval(**kw, n_bootstrap_samples=n_boot, random_state=0)
    elapsed = time.process_time() - t0
    lo, hi = [v for k, v in ci.items() if "lower" in k][0], [v for k, v in ci.items() if "upper" in k][0]
    print(json.dumps({"version": obp.__version__, "cpu_s": elapsed, "value": value, "low": lo, "high": hi}))
    '''
)


def obp_python(timeout: float = 900.0) -> Path:
    """The side environment's python with obp 0.5.7, built on first use (cached afterwards)."""
    from benchmarks._common import SideEnvError

    venv = Path(os.environ.get("BATTLEGROUND_OBP_VENV", "/tmp/obp-venv"))
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", OBP_PROBE], capture_output=True).returncode == 0:
        return python
    if sys.version_info[:2] != (3, 11):
        raise SideEnvError(f"obp 0.5.7 needs Python 3.11 (this is {sys.version.split()[0]})")
    wheels = sorted(glob.glob("/opt/wheels/torch-*+cpu-cp311-*.whl"))
    torch = wheels[-1] if wheels else "torch"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    steps = [[sys.executable, "-m", "venv", str(venv)]] if not python.exists() else []
    steps += [[*pip, *OBP_PINS, torch], [*pip, "--no-deps", "--ignore-requires-python", "obp==0.5.7"]]
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SideEnvError(f"`{' '.join(cmd[:4])} ...` timed out after {timeout:.0f} s") from None
        if done.returncode != 0:
            raise SideEnvError((done.stderr or done.stdout).strip().splitlines()[-1][:300])
    done = subprocess.run([str(python), "-c", OBP_PROBE], capture_output=True, text=True)
    if done.returncode != 0:
        raise SideEnvError(f"obp installed but `{OBP_PROBE}` fails: {done.stderr.strip().splitlines()[-1:]}")
    return python


def bench_bootstrap_vs_obp(n: int, n_boot: int = 1000) -> dict[str, float] | str:
    """Issue 15: our DR bootstrap interval and obp's ``estimate_interval`` on the same log, CPU seconds
    (``time.process_time``: the machine is shared), both in this run. A string says why obp was not run."""
    from battleground.ope import DR, estimate_intervals
    from benchmarks._common import SideEnvError

    args = _data(n)
    t0 = time.process_time()
    ours = estimate_intervals([DR()], *args, ci="bootstrap", n_bootstrap=n_boot, random_state=0)[0]
    t_ours = time.process_time() - t0
    print(f"[vs obp] n={n:,}, {n_boot} resamples, DR: battleground.ope {t_ours:.2f} CPU s "
          f"(value {ours.value:.5f}, CI [{ours.ci_low:.5f}, {ours.ci_high:.5f}])")
    try:
        python = obp_python()
    except SideEnvError as exc:
        print(f"[vs obp] obp 0.5.7 not installable: {exc}")
        return str(exc)
    action, reward, pscore, dist, q_hat = args
    env = {**os.environ, **{v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "log.npz"
        np.savez(data, action=action, reward=reward, pscore=pscore, dist=dist, q_hat=q_hat)
        script = Path(tmp) / "obp_bootstrap.py"
        script.write_text(_OBP_SCRIPT)
        done = subprocess.run([str(python), str(script), str(data), str(n_boot)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        print(f"[vs obp] obp run failed: {reason}")
        return reason
    lib = json.loads(done.stdout.strip().splitlines()[-1])
    ratio = lib["cpu_s"] / t_ours
    print(f"[vs obp] obp {lib['version']} DoublyRobust.estimate_interval (same log, same run): {lib['cpu_s']:.2f} CPU s "
          f"(value {lib['value']:.5f}, CI [{lib['low']:.5f}, {lib['high']:.5f}]) → {ratio:.1f}× "
          f"(target ≥ 5×: {'met' if ratio >= 5 else 'MISSED'}); |value difference| {abs(lib['value'] - ours.value):.1e}")
    return {"ours_s": t_ours, "obp_s": lib["cpu_s"], "ratio": ratio, "value_diff": abs(lib["value"] - ours.value)}


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    n = 100_000 if quick else 1_000_000
    bench_estimators(n)
    bench_bootstrap(n)
    bench_bootstrap_order(n if not quick else 200_000)
    bench_bootstrap_vs_obp(n)


if __name__ == "__main__":
    main(sys.argv[1:])
