"""`battleground experiment …` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Register, run, monitor and report A/B tests.", no_args_is_help=True)


# --- A/B results: status, check, report (issue 3) ------------------------------------------------


def _experiment_key(value: str) -> int | str:
    """An experiment is named by its id (digits) or its name."""
    return int(value) if value.strip().isdigit() else value


@app.command("status")
def status_command(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    start: str | None = typer.Option(None, "--start", help="First day (YYYY-MM-DD) of the window."),
    end: str | None = typer.Option(None, "--end", help="Last day (YYYY-MM-DD) of the window."),
) -> None:
    """Results per variant and metric: lifts with CIs, p-values, SRM and guardrails, as a table."""
    from battleground.cli._common import console, load_settings, user_errors

    with user_errors():
        from rich.table import Table

        from battleground.experiment.monitoring import Monitor

        monitor = Monitor(client=load_settings()).put_experiment_id(experiment_id=_experiment_key(experiment))
        info = monitor.experiment()
        frame = monitor.get_abtest_result(start_dt=start, end_dt=end)
        method = "mSPRT, always valid" if info.sequential else "Welch, fixed horizon"
        table = Table(title=f"#{info.id} {info.name} ({info.status}) · {method}")
        for col in ("metric", "variant", "users", "value", "abs lift [CI]", "rel lift [CI]", "p", "p (Holm)", ""):
            table.add_column(col, justify="left" if col in ("metric", "variant", "") else "right")
        for r in frame.itertuples():
            if r.is_control:
                table.add_row(str(r.metric), f"{r.variant} (control)", f"{r.users:,}", _fmt_value(r.value, r.kind), "", "", "", "", "")
                continue
            flag = "[red]guardrail harmed[/]" if r.guardrail_breach else ("[green]significant[/]" if r.significant else "")
            table.add_row(
                str(r.metric), str(r.variant), f"{r.users:,}", _fmt_value(r.value, r.kind),
                f"{r.abs_lift:+.4g} [{r.abs_ci_lower:+.4g}, {r.abs_ci_upper:+.4g}]",
                f"{r.rel_lift:+.2%} [{r.rel_ci_lower:+.2%}, {r.rel_ci_upper:+.2%}]",
                f"{r.p_value:.3g}", f"{r.p_value_adjusted:.3g}", flag,
            )
        console.print(table)
        srm = frame.attrs.get("srm")
        if srm:
            style = {"alert": "bold white on red", "warn": "bold yellow", "ok": "green"}[srm["status"]]
            console.print(
                f"[{style}]SRM {srm['status'].upper()}[/]: users {[int(o) for o in srm['observed']]} vs "
                f"weights {srm['weights']} (χ² = {srm['chi2']:.3f}, p = {srm['p_value']:.3g})"
            )
            if srm["status"] == "alert":
                console.print("[bold red]data quality problem: do not trust these results[/]")


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
                    "data quality problem, do not trust these results (recorded in the audit log)"
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
