"""``battleground demo``: the whole battleground on embedded defaults, with progress bars.

1. An A/B test of a checkout change: two weeks of simulated users with a known true lift, assigned by
   hash, ingested day by day into the event store, monitored, reported.
2. Churn models: synthetic game-subscription data, a logistic baseline and a tuned LightGBM, tracked in
   MLflow, the better one registered as ``churn@champion`` behind the deployment threshold.
3. Champion vs baseline: an A/B test on simulated traffic whose outcomes follow each model's
   predictions (each arm sends retention offers to the users its model ranks riskiest), monitored every
   day until an end condition stops it, then reported.
4. A bandit battle on the retail simulator, with its off-policy evaluation table.
5. Incremental (GLMix) updates on a stream, with checkpoints.

Everything lands under ``settings.home``; the demo ends by printing what to open.
"""

from __future__ import annotations

import datetime as dt
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from rich.console import Console
    from rich.progress import Progress

    from battleground.settings import Settings

__all__ = ["DemoSizes", "DemoSummary", "run_demo"]

# The seed's start date (실험시작일): the simulated calendar is fixed, so every run tells the same story.
START = dt.datetime(2022, 3, 5)
DAYS = 14


@dataclass(frozen=True)
class DemoSizes:
    """How big each stage is; :meth:`fast` is what the tests run."""

    users_per_day: int = 4_000
    churn_characters: int = 6_000
    churn_trials: int = 8
    traffic_characters: int = 40_000
    traffic_per_day: int = 4_000
    bandit_customers: int = 1_000
    bandit_steps: int = 30
    stream_batches: int = 12

    @classmethod
    def fast(cls) -> DemoSizes:
        return cls(users_per_day=600, churn_characters=2_500, churn_trials=2, traffic_characters=8_000,
                   traffic_per_day=1_000, bandit_customers=200, bandit_steps=8, stream_batches=4)


@dataclass
class DemoSummary:
    """What the demo produced: the numbers it printed and the files to open."""

    checkout_experiment: int | None = None
    checkout_decision: str = ""
    champion: str = ""
    model_experiment: int | None = None
    model_decision: str = ""
    model_stop_reason: str = ""
    bandit_winner: str = ""
    decisions_experiment: int | None = None
    incremental_auc_lift: float = float("nan")
    files: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------------


@contextmanager
def _stage(console: Console, summary: DemoSummary, title: str, key: str) -> Iterator[None]:
    console.rule(f"[bold]{title}")
    started = time.perf_counter()
    yield
    summary.seconds[key] = round(time.perf_counter() - started, 1)
    console.print(f"[dim]{title}: {summary.seconds[key]:.1f} s[/]")


def _progress(console: Console) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")


def _exposure_times(rng: np.random.Generator, day: int, n: int) -> np.ndarray:
    import numpy as np

    seconds = rng.integers(0, 86_400 - 3_600, size=n)
    return np.datetime64(START, "s") + np.timedelta64(day, "D") + seconds.astype("timedelta64[s]")


def _events(ids: np.ndarray, variants: np.ndarray, at: np.ndarray, event_type: str, experiment_key: str,
            values: np.ndarray | None = None) -> pd.DataFrame:
    """One ``event_type`` event per user, ten minutes after exposure; ids are unique per experiment, user
    and type, so sending a day twice adds nothing."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({
        "event_id": [f"{event_type}:{experiment_key}:{u}" for u in ids],
        "variant": variants,
        "user_id": ids,
        "event_type": event_type,
        "timestamp": at + np.timedelta64(600, "s"),
    })
    if values is not None:
        frame["value"] = values
    return frame


def _results_table(console: Console, frame: pd.DataFrame, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("metric", "variant", "users", "value", "rel lift [95% CI]", "p"):
        table.add_column(col, justify="left" if col in ("metric", "variant") else "right")
    for r in frame.itertuples():
        value = f"{r.value:.3%}" if r.kind in ("proportion", "ratio") else f"{r.value:,.3f}"
        if r.is_control:
            table.add_row(str(r.metric), f"{r.variant} (control)", f"{r.users:,}", value, "", "")
        else:
            table.add_row(str(r.metric), str(r.variant), f"{r.users:,}", value,
                          f"{r.rel_lift:+.2%} [{r.rel_ci_lower:+.2%}, {r.rel_ci_upper:+.2%}]", f"{r.p_value:.3g}")
    console.print(table)


def _check_day(settings: Settings, registry: Any, experiment_id: int, day: int) -> Any:
    """End conditions at the end of simulated ``day``; a met condition stops the test on that date."""
    from dataclasses import replace

    from battleground.experiment.monitoring import check_experiments

    end_of_day = START + dt.timedelta(days=day + 1)
    (report,) = check_experiments(settings, experiment_id, stop=False, now=end_of_day)
    if report.met:
        registry.stop(experiment_id, "; ".join(report.reasons), actor="demo", at=end_of_day)
        report = replace(report, stopped=True)
    return report


# ---------------------------------------------------------------------------------------------------
# 1. The checkout A/B test
# ---------------------------------------------------------------------------------------------------


def checkout_ab_test(settings: Settings, sizes: DemoSizes, console: Console, *, seed: int = 0) -> tuple[int, Any]:
    """Register, simulate, ingest, monitor and report a checkout experiment with a +10 % true lift."""
    import numpy as np

    from battleground.experiment.assign import Assigner
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.monitoring import Monitor
    from battleground.experiment.register import Registry
    from battleground.experiment.report import MakeReport

    registry = Registry(settings.registry_url)
    exp = registry.create_experiment(
        f"checkout-button-{_stamp()}", variants={"control": 0.5, "green_button": 0.5},
        description="A green checkout button instead of the grey one",
        hypothesis="A green button raises conversion by 10 % relative without hurting order value",
        owner="demo", start_at=START, end_at=START + dt.timedelta(days=DAYS),
        metrics=[
            {"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True},
            {"name": "revenue", "kind": "mean", "numerator": "purchase"},
            {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"},
        ],
        end_conditions={"target_sample_size": sizes.users_per_day * DAYS * 2 // 5},
        metadata={"true_relative_lift": 0.10, "simulated": True}, salt=f"demo-checkout-{seed}",
    )
    exp = registry.start(exp.id, actor="demo", at=START)
    store = open_event_store(settings)
    assigner = Assigner(exp)
    rng = np.random.default_rng(seed)
    check = None
    p_buy = {"control": 0.10, "green_button": 0.11}
    p_click = {"control": 0.05, "green_button": 0.05}
    with _progress(console) as progress:
        task = progress.add_task("simulating and ingesting two weeks of users", total=DAYS)
        for day in range(DAYS):
            ids = np.arange(day * sizes.users_per_day, (day + 1) * sizes.users_per_day)
            at = _exposure_times(rng, day, ids.size)
            assigner.expose(store, ids, at=at)
            variants = assigner.assign_many(ids)
            buy = rng.random(ids.size) < np.vectorize(p_buy.get)(variants)
            spend = rng.gamma(2.0, 25.0, size=ids.size)
            impressions = rng.poisson(5, size=ids.size) + 1
            clicks = rng.binomial(impressions, np.vectorize(p_click.get)(variants))
            for event_type, mask, values in (("purchase", buy, spend), ("impression", impressions > 0, impressions),
                                             ("click", clicks > 0, clicks)):
                ingest(store, _events(ids[mask], variants[mask], at[mask], event_type, str(exp.id),
                                      values[mask].astype(float)), experiment=exp.id)
            progress.advance(task)
            check = _check_day(settings, registry, exp.id, day)  # the nightly cron job, on simulated time
            if check.stopped:
                progress.update(task, description=f"stopped automatically after day {day + 1}")
                break
    assert check is not None
    console.print(f"[bold]{'stopped' if check.stopped else 'still running'}[/]: "
                  f"{'; '.join(check.reasons) or 'no end condition met'}")
    frame = Monitor(client=settings).put_experiment_id(experiment_id=exp.id).get_abtest_result()
    _results_table(console, frame, f"#{exp.id} {exp.name} (true lift +10 % on conversion)")
    return exp.id, MakeReport(client=settings).create_report(exp.id)


# ---------------------------------------------------------------------------------------------------
# 3. Champion vs baseline on simulated traffic
# ---------------------------------------------------------------------------------------------------


# The model running today: a logistic regression on three raw columns (the one the AUC test
# beats by at least 0.05), and the columns it reads.
INCUMBENT_COLUMNS = ("total_kills", "total_deaths", "price")


def _traffic(n_characters: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Fresh characters (another seed than the training data) with their features and the truth."""
    from battleground.datasets import build_churn_features, make_churn_tables

    frame = build_churn_features(make_churn_tables(n_characters, seed=seed), "2022-12-01")
    return frame.reset_index(drop=True), frame["churned"].to_numpy().astype(bool)


def fit_incumbent(splits_dir: str | Path, *, seed: int = 0) -> Callable[[pd.DataFrame], np.ndarray]:
    """The baseline arm: a logistic regression on :data:`INCUMBENT_COLUMNS` of the training split."""
    from battleground.model.data import read_splits
    from battleground.model.train import Trainer

    train = read_splits(splits_dir)["train"]
    cols = list(INCUMBENT_COLUMNS)
    model = Trainer("logistic", random_state=seed).fit(train[cols], train["churned"])
    return lambda X: model.predict_proba(X[cols])[:, 1]


def model_ab_test(settings: Settings, sizes: DemoSizes, console: Console, *,
                  scorers: dict[str, Callable[[pd.DataFrame], np.ndarray]], seed: int = 0) -> tuple[int, Any, str]:
    """An A/B test of two churn models (``scorers``: ``baseline`` and ``champion``, frame → P(churn)).

    Each arm offers a retention bonus to the 30 % of its users that its model ranks riskiest; an offer
    keeps a would-be churner with probability 0.6. The better ranking keeps more players.
    """
    import numpy as np

    from battleground.experiment.assign import Assigner
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.monitoring import Monitor
    from battleground.experiment.register import Registry
    from battleground.experiment.report import MakeReport

    X, churns = _traffic(sizes.traffic_characters, seed + 101)
    risk = {k: np.asarray(score(X), dtype=float) for k, score in scorers.items()}
    registry = Registry(settings.registry_url)
    exp = registry.create_experiment(
        f"churn-model-{_stamp()}", variants={"baseline": 0.5, "champion": 0.5},
        description="Retention offers targeted by the baseline model vs by the champion",
        hypothesis="Offers targeted by the champion keep more players than offers targeted by the baseline",
        owner="demo", start_at=START, end_at=START + dt.timedelta(days=DAYS),
        metrics=[{"name": "retained", "kind": "proportion", "numerator": "retained", "primary": True},
                 {"name": "offers", "kind": "proportion", "numerator": "offer", "direction": "decrease",
                  "guardrail": True}],
        end_conditions={"target_sample_size": sizes.traffic_per_day * DAYS * 2 // 5, "sequential": True},
        metadata={"simulated": True, "offer_targets_riskiest": 0.3, "offer_keeps_churner": 0.6},
        salt=f"demo-churn-{seed}",
    )
    exp = registry.start(exp.id, actor="demo", at=START)
    store = open_event_store(settings)
    assigner = Assigner(exp)
    rng = np.random.default_rng(seed + 7)
    cutoff = {k: np.quantile(r, 0.7) for k, r in risk.items()}
    stop_reason = ""
    with _progress(console) as progress:
        task = progress.add_task("champion vs baseline: daily traffic, monitoring", total=DAYS)
        for day in range(DAYS):
            rows = rng.integers(0, len(X), size=sizes.traffic_per_day)
            ids = np.arange(day * sizes.traffic_per_day, (day + 1) * sizes.traffic_per_day)
            at = _exposure_times(rng, day, ids.size)
            assigner.expose(store, ids, at=at)
            arm = assigner.assign_many(ids)
            offered = np.where(arm == "champion", risk["champion"][rows] >= cutoff["champion"],
                               risk["baseline"][rows] >= cutoff["baseline"])
            kept = ~churns[rows] | (offered & (rng.random(ids.size) < 0.6))
            for event_type, mask in (("offer", offered), ("retained", kept)):
                ingest(store, _events(ids[mask], arm[mask], at[mask], event_type, str(exp.id)), experiment=exp.id)
            progress.advance(task)
            report = _check_day(settings, registry, exp.id, day)
            if report.stopped:
                stop_reason = "; ".join(report.reasons)
                progress.update(task, description=f"stopped automatically after day {day + 1}")
                break
    if not stop_reason:
        registry.stop(exp.id, "simulation over: 14 days of traffic", actor="demo", at=START + dt.timedelta(days=DAYS))
        stop_reason = "simulation over"
    console.print(f"[bold]stopped[/]: {stop_reason}")
    frame = Monitor(client=settings).put_experiment_id(experiment_id=exp.id).get_abtest_result()
    _results_table(console, frame, f"#{exp.id} {exp.name}")
    return exp.id, MakeReport(client=settings).create_report(exp.id), stop_reason


# ---------------------------------------------------------------------------------------------------
# The whole demo
# ---------------------------------------------------------------------------------------------------


def run_demo(settings: Settings, *, fast: bool = False, console: Console | None = None,
             sizes: DemoSizes | None = None, on_stage: Callable[[str], None] | None = None) -> DemoSummary:
    """Run every part of battleground on embedded defaults and say what to open."""
    from rich.console import Console

    console = console or Console()
    with _quiet_libraries(keep_stderr=console.stderr):
        return _run_stages(settings, fast=fast, console=console, sizes=sizes, on_stage=on_stage)


@contextmanager
def _quiet_libraries(*, keep_stderr: bool = False) -> Iterator[None]:
    """Keep library warnings (MLflow's type-hint nag, ...) and MLflow's registry chatter ("Successfully
    registered model", "Created version") out of the demo's output: the demo says what matters itself.

    Libraries write these to ``sys.stderr`` (MLflow re-enables its own event stream inside its calls,
    and resets warning filters), so the demo collects stderr and shows it only if it fails.
    """
    import io
    import sys
    from contextlib import redirect_stderr

    held = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if keep_stderr:  # the demo itself prints to stderr: hold nothing back
            yield
            return
        try:
            with redirect_stderr(held):
                yield
        except BaseException:
            sys.stderr.write(held.getvalue())
            raise


def _run_stages(settings: Settings, *, fast: bool, console: Console | None, sizes: DemoSizes | None,
                on_stage: Callable[[str], None] | None) -> DemoSummary:
    from rich.console import Console

    from battleground.settings import quiet_third_party_telemetry

    quiet_third_party_telemetry()
    console = console or Console()
    sizes = sizes or (DemoSizes.fast() if fast else DemoSizes())
    settings.ensure_home()
    summary = DemoSummary()
    console.print(f"[bold]battleground demo[/] · everything under {settings.home}")

    with _stage(console, summary, "1 · A/B test: checkout button", "checkout"):
        summary.checkout_experiment, report = checkout_ab_test(settings, sizes, console)
        summary.checkout_decision = report.headline
        summary.files["checkout report"] = report.html_path
        console.print(f"decision: [bold]{report.headline}[/]")

    with _stage(console, summary, "2 · churn models: baseline, tuned LightGBM, champion", "models"):
        from battleground.model.tracking import run_churn_demo

        with console.status("splitting, tuning and training (MLflow tracking)…"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")  # type-hint nags
            churn = run_churn_demo(settings, n_characters=sizes.churn_characters, n_trials=sizes.churn_trials)
        ev = churn.evaluation
        for run in churn.train.runs:
            console.print(f"{run.model:>20}: validation {ev.metric} {run.valid_score:.4f}")
        assert ev.decision is not None
        console.print(f"champion gate: {ev.decision.summary()}")
        if ev.champion_version is None:
            raise RuntimeError(f"no {ev.name}@champion: {ev.decision.reason}")
        summary.champion = f"{ev.name} v{ev.champion_version}" + (f" ({ev.model_type})" if ev.promoted else "")
        summary.files["model plots"] = str(churn.folder / "plots")
        champion_name = ev.name

    with _stage(console, summary, "3 · A/B test: champion vs baseline on live traffic", "model_ab"):
        from battleground.model.tracking import load_champion

        champion = load_champion(settings, champion_name).model  # only a version the gate promoted loads
        columns = list(champion.metadata.get_input_schema().input_names())
        scorers = {"baseline": fit_incumbent(churn.folder / "splits"),
                   "champion": lambda X: champion.predict(X[columns])}
        console.print(f"baseline: today's logistic regression on {', '.join(INCUMBENT_COLUMNS)}")
        summary.model_experiment, report, summary.model_stop_reason = model_ab_test(
            settings, sizes, console, scorers=scorers)
        summary.model_decision = report.headline
        summary.files["model A/B report"] = report.html_path
        console.print(f"decision: [bold]{report.headline}[/]")

    with _stage(console, summary, "4 · bandit battle on the retail simulator, with OPE", "bandit"):
        summary.bandit_winner = _bandit_battle(settings, sizes, console, summary)

    with _stage(console, summary, "5 · decision service: OPE from the store, LinTS live vs control, ledger", "decisions"):
        from battleground.decisions._demo import show_decision_loop

        loop = show_decision_loop(settings, console, n_customers=min(sizes.bandit_customers, 150),
                                  steps=max(4, sizes.bandit_steps // 2))
        summary.decisions_experiment = loop.experiment_id
        summary.files["OPE ledger"] = "battleground ui, then /ledger (or: battleground decisions ledger)"

    with _stage(console, summary, "6 · incremental learning: GLMix on a stream", "incremental"):
        from battleground.incremental._demo import run_incremental_demo

        with _progress(console) as progress:
            task = progress.add_task("mini-batches", total=sizes.stream_batches)
            inc = run_incremental_demo(n_batches=sizes.stream_batches, checkpoint_dir=settings.home / "incremental",
                                       progress=lambda done, total: progress.update(task, completed=done))
        summary.incremental_auc_lift = inc["mean_auc_lift"]
        console.print(f"held-out AUC: GLMix {inc['mean_auc_glmix']:.4f} vs fixed effect alone "
                      f"{inc['mean_auc_fixed_effect']:.4f} ({inc['records']:,} records, {inc['entities']} entities, "
                      f"checkpoint v{inc['checkpoint_version']})")

    console.rule("[bold]what to open")
    for name, path in summary.files.items():
        console.print(f"{name}: {path}")
    console.print("dashboard: battleground ui   (then http://127.0.0.1:8080)")
    console.print(f"MLflow:    .venv/bin/mlflow ui --backend-store-uri {settings.mlflow_uri}")
    console.print(f"[dim]stages (s): {summary.seconds}[/]")
    return summary


def _bandit_battle(settings: Settings, sizes: DemoSizes, console: Console, summary: DemoSummary) -> str:
    from rich.table import Table

    from battleground.bandit import run_battle

    with console.status("agents shopping for customers…"):
        battle = run_battle(settings, n_customers=sizes.bandit_customers, n_steps=sizes.bandit_steps, seed=0)
    agents = battle.summary[["agent", "accumulated_revenue", "accumulated_revenue_std", "retention",
                             "category_penetration", "empirical_discount", "mean_coupon_level"]]
    for title, frame in (("agents: per customer over the evaluation trajectories", agents),
                         (f"off-policy estimates of {battle.ope_agent} from random-policy logs vs its true value",
                          battle.ope)):
        table = Table(title=title)
        for col in frame.columns:
            table.add_column(str(col))
        for row in frame.itertuples(index=False):
            table.add_row(*[f"{v:,.4g}" if isinstance(v, float) else str(v) for v in row])
        console.print(table)
    summary.files["bandit report"] = str(battle.report_path)
    return str(battle.winner)

