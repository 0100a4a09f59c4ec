"""`battleground serve-decisions` and `battleground decisions …`: the decision service, deployed
policies, OPE from the store and the agreement ledger."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from battleground.cli._common import console, fail, load_settings, user_errors
from battleground.cli._table import (
    Column,
    Table,
    csv_option,
    json_option,
    output_format,
    print_tables,
)

if TYPE_CHECKING:
    from battleground.decisions._ledger import LedgerEntry, TrackRecord

app = typer.Typer(help="Deployed decision policies, OPE from the decision log, the agreement ledger.",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Add ``serve-decisions`` and the ``decisions`` group to the root app (one line in cli/__init__.py)."""
    from battleground.cli._help import HelpGroup

    root.command("serve-decisions")(serve_decisions_command)
    root.add_typer(app, name="decisions", cls=HelpGroup)


def serve_decisions_command(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8090, help="Port to listen on."),
    updater: bool = typer.Option(True, "--updater/--no-updater", help="Learn from logged rewards in the background."),
    release_idle: float | None = typer.Option(
        None, help="Let the embedded store go after this many idle seconds (default: keep it open while serving)."),
) -> None:
    """Serve decisions over HTTP: POST /decide, POST /reward (writes need the API token)."""
    from battleground.cli._app import _listen, _serve

    settings = load_settings()
    with user_errors():
        from battleground.decisions._app import create_decision_app

        asgi = create_decision_app(settings, updaters=updater, hosts=(host,), idle=release_idle)
    _serve(asgi, _listen(host, port), "decision service")


@app.command("deploy")
def deploy_command(
    key: str = typer.Argument(..., help="Policy key clients send to /decide."),
    n_arms: int = typer.Option(..., help="Number of actions."),
    n_features: int = typer.Option(..., help="Context width."),
    experiment: str | None = typer.Option(None, help="Run against a control slice in this experiment."),
    bandit_variant: str = typer.Option("bandit", help="The experiment's variant the policy serves."),
    control: str = typer.Option("random", help="The control slice: 'random' or a fixed arm number."),
    batch_size: int = typer.Option(256, help="Rewarded decisions per mini-batch of the updater."),
    guard: str = typer.Option("SNIPS", help="OPE estimator of the guard: SNIPS, IPS or DR."),
    policy_file: Path | None = typer.Option(None, help="A saved policy (.npz) to deploy; default an untrained LinTS."),
    reward_event: str | None = typer.Option(None, help="Ingested events of this type become the rewards of "
                                            "the unit's latest decision before them (besides POST /reward)."),
    reward_window: float = typer.Option(3600.0, help="Seconds after a decision in which its reward events count."),
    reward_value: str = typer.Option("sum", help="'sum' of the events' values, or 'any' (1 if there was one, else 0)."),
) -> None:
    """Deploy a policy (a new live version when the key exists)."""
    with user_errors():
        from battleground.bandit import load_policy
        from battleground.decisions import PolicySpec, deploy_policy

        arm: str | int = int(control) if control.isdigit() else control
        spec = PolicySpec(key, n_arms, n_features, experiment, bandit_variant, arm, batch_size, guard,
                          reward_event=reward_event, reward_window=reward_window, reward_value=reward_value)
        version = deploy_policy(load_settings(), spec, load_policy(policy_file) if policy_file else None)
        console.print(f"{key} v{version} is live")


def _candidates(settings: Any, key: str, files: list[str]) -> dict[str, Any]:
    from battleground.bandit import load_policy
    from battleground.decisions import PolicyStore
    from battleground.decisions._offline import control_policy

    out: dict[str, Any] = {}
    for item in files:
        name, _, path = item.rpartition("=")
        out[name or Path(path).stem] = load_policy(path)
    if not out:  # the deployed policies of the key: live version and control slice
        store = PolicyStore.of(settings)
        specs = [store.spec(k) for k in store.deployed()]
        for spec in specs:
            if key in (spec.key, spec.experiment):
                live = int(store.live(spec.key)["version"])
                out[spec.bandit_variant if spec.experiment else spec.key] = store.load_version(spec.key, live)
                if spec.experiment:
                    out["control"] = control_policy(spec.n_arms, spec.control)
    if not out:
        fail(f"no candidate policy for {key!r}: pass --policy-file NAME=path.npz")
    return out


def ope_from_store_command(key: str, policy_files: list[str], fmt: str, record: bool) -> None:
    """`bandit ope --from-store KEY`: every estimator on the stored decisions (called by cli/bandit.py)."""
    with user_errors():
        from battleground.decisions import ope_from_store

        settings = load_settings()
        res = ope_from_store(settings, key, _candidates(settings, key, policy_files))
        records = [{str(k): v for k, v in r.items()} for r in res.table.to_dict("records")]
        table = Table("estimates", f"Off-policy values from the decision log of {key} ({res.n_rounds:,} rewarded "
                                   f"decisions; logged mean reward {res.logged_value:.4f})", [
            Column.of("candidate", key=True), Column.of("estimator", key=True),
            Column.of("value", fmt="{:.4f}", justify="right"),
            Column("CI", lambda r: f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]", justify="right"),
        ], records)
        print_tables([table], fmt)  # type: ignore[arg-type]
        if record:
            if res.experiment_id is None:
                fail(f"{key!r} runs in no experiment; the ledger records estimates beside an experiment")
            from battleground.decisions import Ledger
            from battleground.ope import OPEEstimate

            ledger = Ledger(settings)
            for name, group in res.table.groupby("candidate", sort=False):
                ests = [OPEEstimate(r.estimator, r.value, r.se, r.ci_low, r.ci_high, r.alpha, r.ci_method, r.n_rounds)
                        for r in group.itertuples()]
                ledger.record_offline(res.experiment_id, str(name), ests, source=f"decision log of {key}")
            if fmt == "table":
                console.print(f"recorded in the ledger beside experiment #{res.experiment_id}")


def ledger_tables(entries: list[LedgerEntry], records: list[TrackRecord]) -> list[Table]:
    """The track record per estimator and the entries, as CLI tables."""
    def num(fmt: str, field: str) -> Any:
        return lambda r: "" if r.get(field) is None else fmt.format(r[field])

    track = Table("track_record", "Track record of each OPE estimator across experiments", [
        Column.of("estimator", key=True), Column.of("experiments", justify="right"),
        Column.of("entries", justify="right"), Column("bias", num("{:+.4f}", "bias"), justify="right"),
        Column("MAE", num("{:.4f}", "mae"), justify="right"),
        Column("coverage", num("{:.0%}", "coverage"), justify="right"),
        Column("rank agreement", lambda r: "" if r["rank_pairs"] == 0 else f"{r['rank_agreement']:.0%} of {r['rank_pairs']}",
               justify="right"),
    ], [t.to_dict() for t in records])
    rows = Table("entries", "Ledger entries: offline estimate beside the online value", [
        Column.of("experiment", key=True), Column.of("candidate", key=True), Column.of("estimator", key=True),
        Column("offline", lambda r: f"{r['offline_value']:.4f} [{r['offline_low']:.4f}, {r['offline_high']:.4f}]",
               justify="right"),
        Column("online", lambda r: "open" if r["online_value"] is None else
               f"{r['online_value']:.4f} [{r['online_low']:.4f}, {r['online_high']:.4f}]", justify="right"),
        Column("covered", lambda r: "" if r["covered"] is None else ("yes" if r["covered"] else "no")),
    ], [e.to_dict() for e in entries])
    return [track, rows]


@app.command("ledger")
def ledger_command(as_json: bool = json_option, as_csv: bool = csv_option) -> None:
    """Each OPE estimator's track record (bias, coverage, rank agreement) and the ledger entries."""
    fmt = output_format(as_json, as_csv)
    with user_errors():
        from battleground.decisions import Ledger

        ledger = Ledger(load_settings())
        entries = ledger.entries()
        print_tables(ledger_tables(entries, ledger.track_record()), fmt)


@app.command("close")
def close_command(experiment: str = typer.Argument(..., help="Experiment name or id.")) -> None:
    """Record the online value each candidate's variant observed next to its offline estimates."""
    with user_errors():
        from battleground.decisions import Ledger

        for name, (value, low, high, n) in Ledger(load_settings()).close(experiment).items():
            console.print(f"{name}: {value:.4f} [{low:.4f}, {high:.4f}] over {n:,} rewarded decisions")
