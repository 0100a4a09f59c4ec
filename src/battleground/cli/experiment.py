"""`battleground experiment …` commands."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import typer

from battleground.cli._common import experiment_key as _experiment_key
from battleground.cli._help import HelpGroup
from battleground.cli._table import (
    Column,
    Table,
    csv_option,
    json_option,
    output_format,
    print_tables,
)

app = typer.Typer(help="Register, run, monitor and report A/B tests.", no_args_is_help=True)


# --- Registry: create, list, show, start, stop, archive, audit (issue 2) ----------------------------


def _parse_variants(text: str) -> dict[str, float] | list[str]:
    """``control=0.5,treatment=0.5`` (first is the control) or ``control,treatment`` (equal weights)."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise typer.BadParameter("give variants like control=0.5,treatment=0.5", param_hint="--variants")
    if all("=" not in item for item in items):
        return items
    out: dict[str, float] = {}
    for item in items:
        name, sep, weight = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(
                f"{item!r} is not NAME=WEIGHT; write e.g. control=0.5,treatment=0.5", param_hint="--variants"
            )
        try:
            out[name.strip()] = float(weight)
        except ValueError:
            raise typer.BadParameter(f"weight of {name.strip()!r} must be a number, got {weight!r}",
                                     param_hint="--variants") from None
    return out


def _parse_metric(text: str, guardrails: set[str], decreasing: set[str], primary: str | None,
                  first: bool) -> dict[str, object]:
    """``NAME:KIND:NUMERATOR[:DENOMINATOR]``, e.g. ``conversion:proportion:purchase`` or
    ``ctr:ratio:click:impression``."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) not in (3, 4) or not all(parts):
        raise typer.BadParameter(
            f"{text!r} is not NAME:KIND:NUMERATOR[:DENOMINATOR] (e.g. conversion:proportion:purchase, "
            "ctr:ratio:click:impression)", param_hint="--metric",
        )
    name = parts[0]
    return {
        "name": name, "kind": parts[1], "numerator": parts[2],
        "denominator": parts[3] if len(parts) == 4 else None,
        "guardrail": name in guardrails, "direction": "decrease" if name in decreasing else "increase",
        "primary": name == primary if primary is not None else first,
    }


ACTOR_OPTION = typer.Option(
    None, "--actor", help="Who does this, for the audit log (default: $BATTLEGROUND_ACTOR, else the OS user)."
)


@app.command("create")
def create_command(
    name: str = typer.Argument(..., help="Unique experiment name."),
    variants: str = typer.Option(
        "control=0.5,treatment=0.5", "--variants",
        help="NAME=WEIGHT,… (weights sum to 1) or NAME,… (equal weights); the first is the control.",
    ),
    control: str | None = typer.Option(None, "--control", help="The control variant (default: the first)."),
    metric: list[str] = typer.Option(
        [], "--metric", help="NAME:KIND:NUMERATOR[:DENOMINATOR], KIND proportion|mean|ratio (repeatable)."
    ),
    primary: str | None = typer.Option(None, "--primary", help="The decision metric (default: the first)."),
    guardrail: list[str] = typer.Option([], "--guardrail", help="A metric that must not get worse (repeatable)."),
    decrease: list[str] = typer.Option([], "--decrease", help="A metric where lower is better (repeatable)."),
    description: str | None = typer.Option(None, "--description"),
    hypothesis: str | None = typer.Option(None, "--hypothesis"),
    owner: str | None = typer.Option(None, "--owner"),
    start: str | None = typer.Option(None, "--start", help="Planned start (ISO date/datetime, UTC)."),
    end: str | None = typer.Option(None, "--end", help="Planned end (ISO date/datetime, UTC)."),
    traffic: float = typer.Option(1.0, "--traffic", help="Fraction of users in the experiment, in (0, 1]."),
    salt: str | None = typer.Option(None, "--salt", help="Assignment salt (default: random)."),
    target_sample_size: int | None = typer.Option(None, "--target-sample-size", help="Users per variant."),
    max_days: float | None = typer.Option(None, "--max-days", help="Maximum duration in days."),
    sequential: bool = typer.Option(False, "--sequential", help="Stop early on an always-valid test."),
    project: str | None = typer.Option(None, "--project", help="Project (default: default); its running "
                                       "holdout keeps its units out when the experiment starts."),
    layer: str | None = typer.Option(None, "--layer", help="Layer of mutually exclusive experiments to join."),
    layer_range: str | None = typer.Option(None, "--range", help="START-END: the half-open range of the "
                                           "layer's 10,000 buckets the experiment owns, e.g. 0-2500."),
    buckets: int | None = typer.Option(None, "--buckets", help="Instead of --range: how many buckets the "
                                       "registry allocates (the lowest free range of the layer)."),
    actor: str | None = ACTOR_OPTION,
) -> None:
    """Register an experiment (status draft)."""
    from battleground.cli._common import console, load_settings, user_errors

    parsed = _parse_variants(variants)
    metrics = [
        _parse_metric(m, set(guardrail), set(decrease), primary, i == 0) for i, m in enumerate(metric)
    ]
    unknown = sorted((set(guardrail) | set(decrease) | ({primary} if primary else set()))
                     - {str(m["name"]) for m in metrics})
    if unknown:
        raise typer.BadParameter(f"no --metric named {unknown}", param_hint="--guardrail/--decrease/--primary")
    with user_errors():
        from battleground.experiment.register import Registry

        spec: object = parsed
        if control is not None:
            names = list(parsed) if isinstance(parsed, dict) else parsed
            if control not in names:
                raise typer.BadParameter(f"{control!r} is not one of the variants {names}", param_hint="--control")
            weights = parsed if isinstance(parsed, dict) else {n: 1.0 / len(names) for n in names}
            spec = [{"name": n, "weight": w, "is_control": n == control} for n, w in weights.items()]
        exp = Registry(load_settings().registry_url).create_experiment(
            name, variants=spec, metrics=metrics, description=description, hypothesis=hypothesis,
            owner=owner, start_at=start, end_at=end, traffic=traffic, salt=salt,
            end_conditions={"target_sample_size": target_sample_size, "max_duration_days": max_days,
                            "sequential": sequential}, project=project, layer=layer, layer_range=layer_range,
            layer_buckets=buckets, actor=actor,
        )
        console.print(f"created experiment [bold]#{exp.id} {exp.name}[/] (draft): "
                      + ", ".join(f"{v.name} {v.weight:g}" + (" (control)" if v.is_control else "")
                                  for v in exp.variants)
                      + (f"; layer {exp.layer} buckets {_range_text(exp.layer_range)}" if exp.layer else ""))


def _range_text(rng: Any) -> str:
    """``[start, end)`` of 10,000 buckets with its share of units."""
    if not rng:
        return "—"
    return f"[{rng[0]}, {rng[1]}) of 10,000 ({(rng[1] - rng[0]) / 100:g} % of units)"


@app.command("list")
def list_command(
    status: str | None = typer.Option(None, "--status", help="Only draft, running, stopped or archived."),
    as_json: bool = json_option,
    as_csv: bool = csv_option,
) -> None:
    """The registered experiments, oldest first."""
    from battleground.cli._common import console, load_settings, user_errors

    fmt = output_format(as_json, as_csv)
    with user_errors():
        from battleground.experiment.register import Registry

        experiments = Registry(load_settings().registry_url).list(status=status)
        if not experiments and fmt == "table":
            console.print("no experiments" + (f" with status {status}" if status else ""))
            return
        records = [{**e.to_dict(), "window": list(e.window())} for e in experiments]
        columns = [
            Column.of("id", justify="right", key=True), Column.of("name", key=True), Column.of("status"),
            Column("variants", lambda r: ", ".join(f"{v['name']} {v['weight']:g}" for v in r["variants"])),
            Column("metrics", lambda r: ", ".join(m["name"] for m in r["metrics"])),
            Column("window", _window), Column.of("owner"),
        ]
        print_tables([Table("experiments", "experiments", columns, records)], fmt)


def _window(record: Mapping[str, Any]) -> str:
    start, stop = record["window"]
    return f"{_day(start)} → {_day(stop)}" if start or stop else ""


def _day(value: object) -> str:
    return "open" if value is None else str(value)[:10]


@app.command("show")
def show_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    as_json: bool = json_option,
    as_csv: bool = csv_option,
) -> None:
    """Everything the registry knows about one experiment."""
    from battleground.cli._common import console, load_settings, user_errors

    fmt = output_format(as_json, as_csv)
    with user_errors():
        from rich.markup import escape

        from battleground.experiment.register import Registry

        e = Registry(load_settings().registry_url).get(_experiment_key(experiment))
        record = e.to_dict()
        variants = Table("variants", "variants", [
            Column.of("variant", "name", key=True), Column.of("weight", fmt="{:g}", justify="right"),
            Column("control", lambda r: "yes" if r["is_control"] else ""),
        ], record.pop("variants"))
        metrics = Table("metrics", "metrics", [
            Column.of("metric", "name", key=True), Column.of("kind"), Column.of("numerator"),
            Column.of("denominator"), Column.of("direction"),
            Column("role", lambda m: ", ".join(r for r in ("primary", "guardrail") if m[r])),
        ], record.pop("metrics"))
        if fmt != "table":
            print_tables([variants, metrics], fmt, extra={"experiment": record})
            return
        console.print(f"[bold]#{e.id} {escape(e.name)}[/] ({e.status})")
        for label, value in (
            ("description", e.description), ("hypothesis", e.hypothesis), ("owner", e.owner),
            ("planned window", f"{_day(e.start_at)} → {_day(e.end_at)}"),
            ("started", e.started_at), ("stopped", e.stopped_at), ("stop reason", e.stop_reason),
            ("archived", e.archived_at), ("traffic", f"{e.traffic:g}"), ("salt", e.salt),
            ("project", e.project),
            ("layer", f"{e.layer}: buckets {_range_text(e.layer_range)}" if e.layer else None),
            ("holds out", f"buckets {_range_text(e.layer_range)} of project {e.project}" if e.is_holdout else None),
            ("behind holdout", f"#{e.holdout.id} {e.holdout.name} ({e.holdout.fraction:.2%} held out)"
             if e.holdout else None),
            ("metadata", e.metadata or None),
        ):
            if value is not None:
                console.print(f"  {label}: {escape(str(value))}", soft_wrap=True)
        print_tables([variants, metrics] if e.metrics else [variants], fmt)
        ec = e.end_conditions
        console.print(
            f"  end conditions: target sample size {ec.target_sample_size or '—'} per variant, "
            f"maximum {ec.max_duration_days if ec.max_duration_days is not None else '—'} days, "
            f"sequential {'yes' if ec.sequential else 'no'}", soft_wrap=True,
        )


def _transition(verb: str, experiment: str, reason: str | None = None, actor: str | None = None) -> None:
    from battleground.cli._common import console, load_settings, user_errors

    with user_errors():
        from battleground.experiment.register import Registry

        registry = Registry(load_settings())  # the settings: a stop closes the ledger from the event store
        key = _experiment_key(experiment)
        if verb == "start":
            e = registry.start(key, actor=actor)
        elif verb == "stop":
            e = registry.stop(key, reason or "", actor=actor)
        else:
            e = registry.archive(key, actor=actor)
        console.print(f"#{e.id} {e.name} is now [bold]{e.status}[/]")


@app.command("start")
def start_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."), actor: str | None = ACTOR_OPTION
) -> None:
    """draft → running (variants, weights, traffic and salt are frozen from now on)."""
    _transition("start", experiment, actor=actor)


@app.command("stop")
def stop_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    reason: str = typer.Option(..., "--reason", help="Why it stops (goes to the audit log)."),
    actor: str | None = ACTOR_OPTION,
) -> None:
    """running → stopped, with the reason in the audit log."""
    _transition("stop", experiment, reason, actor)


@app.command("archive")
def archive_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."), actor: str | None = ACTOR_OPTION
) -> None:
    """stopped → archived (read-only from now on)."""
    _transition("archive", experiment, actor=actor)


@app.command("audit")
def audit_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    as_json: bool = json_option,
    as_csv: bool = csv_option,
) -> None:
    """The append-only audit log of one experiment: every status change, edit and note."""
    from battleground.cli._common import load_settings, user_errors

    fmt = output_format(as_json, as_csv)
    with user_errors():
        import json

        from battleground.experiment.register import Registry

        registry = Registry(load_settings().registry_url)
        e = registry.get(_experiment_key(experiment))
        records = [{"at": a.at, "actor": a.actor, "action": a.action, "detail": dict(a.detail)}
                   for a in registry.audit_log(e.id)]

        def detail(r: Mapping[str, Any]) -> str:
            d = r["detail"]
            if r["action"] == "create":  # the whole experiment: its variants say enough here
                d = {"variants": [v["name"] for v in d.get("experiment", {}).get("variants", [])]}
            return json.dumps(d, ensure_ascii=False, default=str)

        columns = [Column("at (UTC)", lambda r: r["at"].strftime("%Y-%m-%d %H:%M:%S"), key=True),
                   Column.of("action", key=True), Column.of("actor"), Column("detail", detail)]
        print_tables([Table("audit", f"audit log of #{e.id} {e.name}", columns, records)], fmt)


# --- A/B results: status, check, report (issue 3) ------------------------------------------------


@app.command("status")
def status_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    start: str | None = typer.Option(None, "--start", help="First day (YYYY-MM-DD) of the window."),
    end: str | None = typer.Option(None, "--end", help="Last day (YYYY-MM-DD) of the window."),
    as_json: bool = json_option,
    as_csv: bool = csv_option,
) -> None:
    """Results per variant and metric: lifts with CIs, p-values, SRM and guardrails, as a table."""
    from battleground.cli._common import console, load_settings, user_errors

    fmt = output_format(as_json, as_csv)
    with user_errors():
        from battleground.experiment._decide import clause_text, p_label
        from battleground.experiment.monitoring import Monitor

        monitor = Monitor(client=load_settings()).put_experiment_id(experiment_id=_experiment_key(experiment))
        info = monitor.experiment()
        result = monitor.result(start_dt=start, end_dt=end)
        decision, srm = result.decision, result.srm
        method = {"fixed": "Welch, fixed horizon", "msprt": "mSPRT, always valid",
                  "one_sided": "one-sided confidence sequence", "obrien_fleming": "group-sequential, O'Brien–Fleming",
                  "pocock": "group-sequential, Pocock"}.get(result.design, result.design)
        records = []
        for row in result.rows:
            records.append(row.to_dict() | {"metric": row.metric})
            if row.cuped is not None:  # the CUPED-adjusted comparison right under the unadjusted one
                records.append(row.cuped.to_dict() | {"metric": f"{row.metric} (CUPED)"})
            if row.post_stratified is not None:  # and the one post-stratified by the declared attributes
                records.append(row.post_stratified.to_dict() | {"metric": f"{row.metric} (post-stratified)"})
            if row.cupedpp is not None:  # and the one adjusted by several covariates (CUPED++)
                records.append(row.cupedpp.to_dict() | {"metric": f"{row.metric} (CUPED++)",
                                                        "variance_reduction": row.cupedpp_variance_reduction})
        columns = [c if c.header != "p (Holm)" else Column(p_label(decision.correction), c.cell, justify="right")
                   for c in _STATUS_COLUMNS]
        table = Table("rows", f"#{info.id} {info.name} ({info.status}) · {method}", columns, records)
        if fmt != "table":
            extra = {"experiment": info.to_dict(), "srm": srm.to_dict() if srm else None,
                     "data_quality": [c.to_dict() for c in result.data_quality], "decision": decision.to_dict(),
                     "sequential_srm": result.sequential_srm.to_dict() if result.sequential_srm else None,
                     "power": [p.to_dict() for p in result.power]}
            print_tables([table], fmt, extra=extra if fmt == "json" else None)
            return
        print_tables([table], fmt)
        if result.capping_note:
            console.print(result.capping_note)
        if result.quantile_note:
            console.print(result.quantile_note)
        if srm is not None:
            style = {"alert": "bold white on red", "warn": "bold yellow", "ok": "green"}[srm.status]
            console.print(
                f"[{style}]SRM {srm.status.upper()}[/]: users {[int(o) for o in srm.observed]} vs "
                f"weights {list(srm.weights)} (χ² = {srm.chi2:.3f}, p = {srm.p_value:.3g})"
            )
            if srm.status == "alert":
                console.print("[bold red]data quality problem: do not trust these results[/]")
        for check in result.data_quality:
            if check.name != "srm" and check.status != "ok":
                console.print(f"[bold yellow]{check.name} {check.status.upper()}[/]: {check.detail}")
        for pw in result.power:  # mid-experiment power against the planned MDE (gbstats' method)
            extra_users = "not reachable" if pw.additional_users is None else f"{pw.additional_users:,.0f} more users"
            days = f", about {pw.additional_days:.1f} more days" if pw.additional_days == pw.additional_days else ""
            console.print(f"power for MDE {pw.mde:+.1%} on {pw.metric} ({pw.variant}): now {pw.power_now:.0%}, "
                          f"at the planned end {pw.power_at_plan:.0%}; to reach {pw.target_power:.0%}: {extra_users}{days}")
        verdict_style = {"ship": "bold green", "dont_ship": "bold red", "data_quality": "bold white on red"}
        console.print(f"decision: [{verdict_style.get(decision.verdict, 'bold')}]{decision.headline}[/]"
                      f" (decided by {clause_text(decision.clause)})")
        for reason in decision.reasons:
            console.print(f"  - {reason}")
        if len(decision.variants) > 1:
            console.print("  per variant: " + ", ".join(
                f"{v.variant} {v.verdict.replace('_', ' ')}" for v in decision.variants))
        console.print(f"[dim]rule: {decision.rule}[/]")


def _treated(text: Callable[[Mapping[str, Any]], str]) -> Callable[[Mapping[str, Any]], str]:
    """A cell shown only on treatment rows (the control has no lift)."""
    return lambda r: "" if r["is_control"] else text(r)


def _flag(r: Mapping[str, Any]) -> str:
    return "[red]guardrail harmed[/]" if r["guardrail_breach"] else "[green]significant[/]" if r["significant"] else ""


_STATUS_COLUMNS = [
    Column.of("metric", key=True),
    Column("variant", lambda r: f"{r['variant']} (control)" if r["is_control"] else str(r["variant"]), key=True),
    Column.of("users", fmt="{:,}", justify="right"),
    Column("value", lambda r: _fmt_value(r["value"], r["kind"]), justify="right"),
    Column("abs lift [CI]", _treated(lambda r: f"{r['abs_lift']:+.4g} [{r['abs_ci_lower']:+.4g}, "
                                               f"{r['abs_ci_upper']:+.4g}]"), justify="right"),
    Column("rel lift [CI]", _treated(lambda r: f"{r['rel_lift']:+.2%} [{r['rel_ci_lower']:+.2%}, "
                                               f"{r['rel_ci_upper']:+.2%}]"), justify="right"),
    Column("p (raw)", _treated(lambda r: f"{r['p_value']:.3g}"), justify="right"),
    Column("p (Holm)", _treated(lambda r: "" if r["p_value_adjusted"] != r["p_value_adjusted"]
                                else f"{r['p_value_adjusted']:.3g}"), justify="right"),
    Column("flag", _treated(_flag), markup=True),
]


def _fmt_value(value: object, kind: object) -> str:
    v = float(value)  # type: ignore[arg-type]
    if v != v:  # NaN
        return "—"
    return f"{v:.3%}" if kind in ("proportion", "ratio") else f"{v:,.4g}"


@app.command("check")
def check_command(
    experiment: str | None = typer.Argument(None, help="Experiment id or name (default: every running one)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report met conditions without stopping."),
) -> None:
    """Evaluate end conditions (target sample size, maximum duration, sequential boundary); stop the
    experiments whose condition is met, with the reason in the audit log. Safe to run from cron."""
    from battleground.cli._common import console, load_settings, user_errors

    with user_errors():
        from battleground.experiment.monitoring import check_experiments

        key = _experiment_key(experiment) if experiment is not None else None
        reports = check_experiments(load_settings(), key, stop=not dry_run)
        if not reports:
            console.print("no running experiments")
        for r in reports:
            if r.srm_status == "alert":
                console.print(
                    f"[bold white on red] SRM ALERT [/] #{r.experiment_id} {r.name}: p = {r.srm_p_value:.3g}; "
                    "data quality problem, do not trust these results "
                    + ("(would record it in the audit log)" if dry_run else "(recorded in the audit log)")
                )
            elif r.srm_status == "warn":
                console.print(f"[yellow]SRM warning[/] #{r.experiment_id} {r.name}: p = {r.srm_p_value:.3g}")
            if r.met:
                verb = "stopped" if r.stopped else "would stop" if dry_run else "condition met"
                console.print(f"[bold]#{r.experiment_id} {r.name}: {verb}[/] — " + "; ".join(r.reasons))
            else:
                console.print(f"#{r.experiment_id} {r.name}: running, no end condition met")


@app.command("report")
def report_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    out: str | None = typer.Option(None, "--out", help="HTML file to write (Markdown goes next to it)."),
) -> None:
    """Write a self-contained HTML report (opens offline) and a Markdown summary with the decision."""
    from battleground.cli._common import console, load_settings, user_errors

    with user_errors():
        from battleground.experiment.report import MakeReport

        result = MakeReport(client=load_settings()).create_report(_experiment_key(experiment), out=out)
        console.print(f"decision: [bold]{result.headline}[/]")
        console.print(f"wrote {result.html_path} and {result.markdown_path}")


# --- Offline A/A re-splits of an experiment's own data (issue 17) ---------------------------------


_AA_VERDICT = {"calibrated": "[green]calibrated[/]", "too_many_false_positives": "[red]too many false positives[/]",
               "conservative": "[yellow]conservative[/]", "no_variance": "[dim]no variance[/]"}

_AA_COLUMNS = [
    Column.of("metric", key=True),
    Column.of("kind"),
    Column.of("users", fmt="{:,}", justify="right"),
    Column.of("re-splits", "resplits", fmt="{:,}", justify="right"),
    Column("false positives", lambda r: "—" if r["false_positive_rate"] is None
           else f"{r['false_positive_rate']:.2%} ± {r['mc_se']:.2%}", justify="right"),
    Column("expected", lambda r: f"{r['alpha']:.0%}", justify="right"),
    Column("verdict", lambda r: _AA_VERDICT[r["verdict"]], markup=True),
]


@app.command("aa")
def aa_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    metric: list[str] = typer.Option([], "--metric", help="A registered metric to check (repeatable; default: all)."),
    resplits: int = typer.Option(1000, "--resplits", help="How many random re-splits."),
    share: float | None = typer.Option(None, "--share", help="Treatment share of a re-split (default: the "
                                       "experiment's treatment weight)."),
    arm: str | None = typer.Option(None, "--arm", help="Re-split only this arm's users (e.g. control)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of each re-split's test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the re-splits (same seed, same result)."),
    start: str | None = typer.Option(None, "--start", help="First day (YYYY-MM-DD) of the window."),
    end: str | None = typer.Option(None, "--end", help="Last day (YYYY-MM-DD) of the window."),
    as_json: bool = json_option,
    as_csv: bool = csv_option,
) -> None:
    """Offline A/A: re-split the experiment's users at random many times and show, per metric, how often
    the test calls a difference significant when there is none (a calibrated metric: about alpha)."""
    from battleground.cli._common import console, load_settings, user_errors

    fmt = output_format(as_json, as_csv)
    with user_errors():
        from battleground.experiment.monitoring import offline_aa

        result = offline_aa(load_settings(), _experiment_key(experiment), metrics=metric or None,
                            resplits=resplits, share=share, arm=arm, alpha=alpha, seed=seed, start=start, end=end)
        found = result.to_dict()
        who = f"arm {result.arm}" if result.arm else "all arms"
        table = Table("metrics", f"#{result.experiment_id} {result.experiment} · offline A/A, {who}, "
                      f"share {result.share:.0%} · {result.test}", _AA_COLUMNS, found["metrics"])
        if fmt == "json":
            print_tables([table], fmt, extra={k: v for k, v in found.items() if k != "metrics"})
            return
        print_tables([table], fmt)
        if fmt == "table":
            console.print(f"[dim]{result.users:,} users, {result.resplits:,} re-splits (seed {result.seed}); "
                          "'± ' is the Monte-Carlo standard error, calibrated = within 3 of it[/]")


# --- CUPAC: the champion's prediction as a CUPED++ covariate (issue 17) ------------------------------

_CUPAC_COLUMNS = [
    Column.of("comparison", key=True),
    Column("variance reduction", lambda r: f"{r['variance_reduction']:.1%}", justify="right"),
]


@app.command("cupac")
def cupac_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    features: str = typer.Option(..., "--features", help="Parquet or CSV file: one row per user with user_id, "
                                 "the model's features and the time they were measured."),
    time_column: str = typer.Option("feature_ts", "--time-column", help="The column dating the features; each "
                                    "must be before the user's first exposure."),
    model: str | None = typer.Option(None, "--model", help="Registered model name (default: the project's model)."),
    alias: str = typer.Option("champion", "--alias", help="Registry alias of the model version to use."),
    attribute: str = typer.Option("cupac", "--attribute", help="Event type the predictions are stored as."),
    as_json: bool = json_option,
    as_csv: bool = csv_option,
) -> None:
    """CUPAC: score the experiment's exposed users with a registered model (its champion) from features
    measured before their exposure, and use the prediction as a CUPED++ covariate (shown by status)."""
    from battleground.cli._common import console, load_settings, user_errors

    fmt = output_format(as_json, as_csv)
    with user_errors():
        import pandas as pd

        from battleground.experiment.monitoring import cupac_covariate

        try:
            frame = pd.read_parquet(features) if features.endswith(".parquet") else pd.read_csv(features)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"cannot read {features!r}: {exc}", param_hint="--features") from None
        if "user_id" in frame.columns:
            frame["user_id"] = frame["user_id"].astype(str)
        result = cupac_covariate(load_settings(), _experiment_key(experiment), frame, feature_times=time_column,
                                 model_name=model, alias=alias, attribute=attribute)
        records = [{"comparison": k, "variance_reduction": v} for k, v in result.variance_reduction.items()]
        table = Table("variance_reduction", f"#{result.experiment_id} · CUPAC with {result.model} "
                      f"(version {result.version or '—'}) as {result.attribute!r}", _CUPAC_COLUMNS, records)
        if fmt == "json":
            print_tables([table], fmt, extra={k: v for k, v in result.to_dict().items() if k != "variance_reduction"})
            return
        print_tables([table], fmt)
        if fmt == "table":
            console.print(f"[dim]{result.users_scored:,} users scored, {result.users_without_features:,} exposed "
                          f"without features, {result.rows_ignored:,} feature rows of users never exposed; "
                          f"{result.events_written:,} events written. The prediction alone as the covariate; "
                          "`experiment status` shows CUPED++ rows with it and the pre-periods.[/]")


# --- Project holdouts (issue 17 §Assignment) --------------------------------------------------------

holdout_app = typer.Typer(
    help="A project's global holdout: units kept out of every experiment of the project for a period; "
    "`experiment start/stop` open and close the period, `experiment status/report` on the holdout "
    "measure the cumulative impact of everything shipped (shipped vs holdout).",
    no_args_is_help=True,
)



@holdout_app.command("create")
def holdout_create_command(
    name: str = typer.Argument(..., help="Unique name of the holdout."),
    fraction: float = typer.Option(..., "--fraction", help="Share of the project's units held out, in (0, 1), "
                                   "a multiple of 0.0001 (e.g. 0.05)."),
    project: str | None = typer.Option(None, "--project", help="Project held out from (default: default)."),
    metric: list[str] = typer.Option(
        [], "--metric", help="NAME:KIND:NUMERATOR[:DENOMINATOR]: a metric the impact is measured on (repeatable)."
    ),
    decrease: list[str] = typer.Option([], "--decrease", help="A metric where lower is better (repeatable)."),
    description: str | None = typer.Option(None, "--description"),
    owner: str | None = typer.Option(None, "--owner"),
    start: str | None = typer.Option(None, "--start", help="Planned start of the period (ISO, UTC)."),
    end: str | None = typer.Option(None, "--end", help="Planned end of the period (ISO, UTC)."),
    salt: str | None = typer.Option(None, "--salt", help="Hash namespace (default: random)."),
    actor: str | None = ACTOR_OPTION,
) -> None:
    """Register a project holdout (draft); `experiment start` opens it."""
    from battleground.cli._common import console, load_settings, user_errors

    metrics = [_parse_metric(m, set(), set(decrease), None, i == 0) for i, m in enumerate(metric)]
    with user_errors():
        from battleground.experiment.register import Registry

        h = Registry(load_settings().registry_url).create_holdout(
            name, fraction=fraction, project=project, metrics=metrics, description=description, owner=owner,
            start_at=start, end_at=end, salt=salt, actor=actor,
        )
        console.print(f"created holdout [bold]#{h.id} {h.name}[/] (draft) of project {h.project}: holds out "
                      f"buckets {_range_text(h.layer_range)}; start it with `battleground experiment start {h.id}`")


@holdout_app.command("show")
def holdout_show_command(
    holdout: str = typer.Argument(..., help="Holdout id or name."),
    as_json: bool = json_option,
    as_csv: bool = csv_option,
) -> None:
    """A holdout and the experiments started behind it."""
    from battleground.cli._common import console, load_settings, user_errors

    fmt = output_format(as_json, as_csv)
    with user_errors():
        from battleground.experiment.register import Registry

        registry = Registry(load_settings().registry_url)
        h = registry.get(_experiment_key(holdout))
        behind = registry.holdout_of(h.id)
        table = Table("experiments", "experiments behind the holdout", [
            Column.of("id", justify="right", key=True), Column.of("name", key=True), Column.of("status"),
            Column("layer", lambda r: f"{r['layer']} {_range_text(r['layer_range'])}" if r["layer"] else ""),
        ], [e.to_dict() for e in behind])
        if fmt != "table":
            info = {k: v for k, v in h.to_dict().items() if k != "salt"}
            print_tables([table], fmt, extra={"holdout": info} if fmt == "json" else None)
            return
        console.print(f"[bold]#{h.id} {h.name}[/] ({h.status}) holds out {h.holdout_fraction:.2%} of project "
                      f"{h.project}: buckets {_range_text(h.layer_range)}")
        if behind:
            print_tables([table], fmt)
        else:
            console.print("no experiment started behind it yet")
        console.print(f"cumulative impact: `battleground experiment status {h.id}` or `... report {h.id}`")


app.add_typer(holdout_app, name="holdout", cls=HelpGroup)


# --- Dimension breakdowns: results per slice of a declared attribute (issue 17) ----------------------

def _pct_or_num(relative: bool) -> Callable[[object], str]:
    return (lambda v: f"{float(v):+.2%}") if relative else (lambda v: f"{float(v):+.4g}")  # type: ignore[arg-type]


def _breakdown_columns(relative: bool) -> list[Column]:
    f = _pct_or_num(relative)

    def opt(key: str, text: Callable[[Mapping[str, Any]], str]) -> Callable[[Mapping[str, Any]], str]:
        return lambda r: "—" if r.get(key) is None else text(r)

    return [
        Column.of("metric", key=True),
        Column.of("slice", key=True),
        Column.of("variant", key=True),
        Column("users (c / t)", lambda r: f"{r['n_control']:,.0f} / {r['n_treatment']:,.0f}", justify="right"),
        Column("effect [CI]", opt("estimate", lambda r: f"{f(r['estimate'])} [{f(r['ci_lower'])}, "
                                                       f"{f(r['ci_upper'])}]"), justify="right"),
        Column("p (adj)", opt("adjusted_p_value", lambda r: f"{r['adjusted_p_value']:.3g}"), justify="right"),
        Column("vs rest", opt("heterogeneity_adjusted_p_value",
                              lambda r: f"{f(r['rest_estimate'])}, p (adj) {r['heterogeneity_adjusted_p_value']:.3g}"),
               justify="right"),
        Column("flag", lambda r: "[yellow]heterogeneous[/]" if r["heterogeneous"] else "[green]significant[/]"
               if r["significant"] else f"[dim]{r['note']}[/]" if r["note"] else "", markup=True),
    ]


@app.command("breakdown")
def breakdown_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    by: str = typer.Option(..., "--by", help="A declared attribute (metadata breakdown_by or post_stratify_by)."),
    correction: str | None = typer.Option(None, "--correction", help="holm (default) or bh, or another method "
                                          "of adjust_pvalues."),
    absolute: bool = typer.Option(False, "--absolute", help="Absolute differences instead of relative lifts."),
    start: str | None = typer.Option(None, "--start", help="First day (YYYY-MM-DD) of the window."),
    end: str | None = typer.Option(None, "--end", help="Last day (YYYY-MM-DD) of the window."),
    as_json: bool = json_option,
    as_csv: bool = csv_option,
) -> None:
    """Each metric's effect per slice of a declared user attribute, corrected for multiplicity, with the
    slices whose effect differs from the rest's flagged (heterogeneous effects)."""
    from battleground.cli._common import console, load_settings, user_errors

    fmt = output_format(as_json, as_csv)
    with user_errors():
        from battleground.experiment.monitoring import Monitor

        monitor = Monitor(client=load_settings()).put_experiment_id(experiment_id=_experiment_key(experiment))
        result = monitor.breakdown(by, start, end, relative=not absolute, correction=correction)
        records = result.slice_records()
        table = Table("slices", f"#{result.experiment_id} · breakdown by {result.attribute} "
                      f"({'relative lift' if result.relative else 'difference'}, {result.correction})",
                      _breakdown_columns(result.relative), records)
        if fmt == "json":
            print_tables([table], fmt, extra={"experiment_id": result.experiment_id, "attribute": result.attribute,
                                              "correction": result.correction, "alpha": result.alpha,
                                              "relative": result.relative, "users": result.users})
            return
        print_tables([table], fmt)
        if fmt == "table":
            console.print(f"[dim]{len(result.users)} slices; p-values corrected over slices × variants per metric; "
                          "'vs rest' tests each slice's effect against the other users' (z/Welch)[/]")
