"""`conveyor demo`: the whole loop, as far as it is built, on the sample service."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.cli.output import VerboseOption, console, examples, verbosity
from conveyor.errors import ExitCode

if TYPE_CHECKING:
    from conveyor.service.demo import DemoResult
    from conveyor.service.project import Project
    from conveyor.service.runs import RunOutcome


def register(app: typer.Typer) -> None:
    app.command("demo", epilog=DEMO_EXAMPLES)(demo)


DEMO_EXAMPLES = examples(
    ("conveyor demo", "the whole story on the sample service"),
    ("conveyor demo -q", "state changes only"),
)


def demo(
    sample: Annotated[
        Path | None, typer.Option("--sample", help="The sample service folder.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="State changes only.")] = False,
    verbose: Annotated[bool, VerboseOption] = False,
) -> int:
    """Copy the sample service into a fresh git repository and carry it through its pipeline."""
    from conveyor.cli.live import LiveReporter, reporter_for
    from conveyor.service.demo import run_demo

    def announce(text: str) -> None:
        console.rule(f"[bold]{escape(text)}[/]", align="left")

    reporter = reporter_for(console, verbosity(quiet, verbose))
    try:
        result = run_demo(reporter, announce, sample=sample, explain=_explain)
    finally:
        if isinstance(reporter, LiveReporter):
            reporter.stop()
    spec = result.repository / "conveyor.yml"
    console.rule("[bold]where to look next[/]", align="left")
    console.print(f"  cd {result.repository}")
    for command, why in (
        ("history", "every run"),
        ("status", "the last run's jobs"),
        ("report", "findings, gates, tests, coverage"),
        ("logs", "a job's log"),
        ("plan --explain", "why each job runs or not"),
        ("image ls", "the images built"),
        ("image verify shop:<commit>", "signatures, scan, provenance"),
        ("approvals ls", "who approved what, and what was refused"),
        ("release record production", "commits, gates, tests, staging, approvals, provenance"),
        ("audit verify", "the hash chain of every decision"),
    ):
        console.print(f"  conveyor {command:<30} [dim]{why}[/]")
    console.print(f"  [dim](or from anywhere: conveyor history -f {spec})[/]")
    _print_gate(result)
    _print_regression(result.repository)
    _print_loop(result)
    _print_contract_refusal(result)
    if result.urls:
        console.rule("[bold]the shop, served through the router[/]", align="left")
        for name, url in result.urls.items():
            console.print(f"  {name:<11} {url}   [dim](try {url}/api/products)[/]")
        for command in ("env ls", "env status production", "env history production"):
            console.print(f"  conveyor {command}")
        console.print("  conveyor rollback production   [dim](back to the previous release)[/]")
        names = " && ".join(f"conveyor env stop {name}" for name in result.urls)
        console.print(f"  [dim]they keep running; stop them with: {names}[/]")
        console.print(
            f"  [dim]and the payments service's, the same way, in "
            f"{result.repository.parent / 'payments'}; the feature flags' API "
            "stops with the next demo[/]"
        )
    _start_server(result.repository)
    if not result.as_expected:
        console.print("[bold red]the demo did not go as expected[/]")
        return int(ExitCode.PIPELINE_FAILED)
    return int(ExitCode.OK)


def _start_server(repository: Path) -> None:
    """The control plane over the demo's project, left running like its environments."""
    from conveyor.service.demo_server import DEMO_PID_DIR, start_demo_server
    from conveyor.service.project import Project

    project = Project.locate(repository / "conveyor.yml")
    server = start_demo_server(project, DEMO_PID_DIR)
    console.rule(
        "[bold]the control plane: runs, releases, approvals in the browser[/]", align="left"
    )
    console.print(f"  {server.url}")
    if server.login_link:
        console.print(f"  log in (once) with: {server.login_link}")
    console.print(f"  [dim]its log: {server.log}; stop it with: kill {server.pid}[/]")


def _print_gate(result: DemoResult) -> None:
    """The human gate: the author's own approvals refused, the reviewer's accepted."""
    if not (result.refusals or result.approvals):
        return
    console.rule("[bold]the approval gate[/]", align="left")
    for line in result.refusals:
        console.print(f"  [red]✗[/] {escape(line)}")
    for line in result.approvals:
        console.print(f"  [green]✓[/] {escape(line)}")


def _print_regression(repository: Path) -> None:
    """Chapter 8's canary: how fast the judge caught it, what the bad version served."""
    from conveyor.service.demo import regression_report
    from conveyor.service.project import Project

    report = regression_report(Project.locate(repository / "conveyor.yml"))
    if not report:
        return
    console.rule("[bold]the regression, caught by the canary judge[/]", align="left")
    console.print(f"  {escape(str(report['release']))}: {escape(str(report['reason']))}")
    console.print(
        f"  detected {report.get('seconds_with_traffic')} s after it first had traffic; "
        f"it served {report.get('canary_requests')} requests "
        f"({report.get('canary_errors')} errors) before all traffic went back to stable "
        f"in {report.get('switch_seconds')} s"
    )


def _print_contract_refusal(result: DemoResult) -> None:
    """Chapter 13: what can-i-deploy said of the breaking payments change."""
    if not result.contract_refusal:
        return
    console.rule("[bold]the contract that would break (conveyor can-i-deploy)[/]", align="left")
    for reason in result.contract_refusal:
        console.print(f"  [red]✗[/] {escape(reason)}")
    payments = result.repository.parent / "payments"
    console.print(f"  [dim]cd {payments} && conveyor can-i-deploy payments@HEAD --to production[/]")


def _print_loop(result: DemoResult) -> None:
    """After chapter 9: the SLO alert's rollback, the incident and its follow-up; then what
    the checkout experiment did to business and to the users' ratings; then DORA."""
    from conveyor.cli.business import print_view as print_business
    from conveyor.cli.feedback import print_report as print_feedback
    from conveyor.cli.incidents import show
    from conveyor.cli.insights import dora
    from conveyor.cli.output import OutputFormat

    loop = result.loop
    if loop is None:
        return
    spec = result.repository / "conveyor.yml"
    console.rule(
        "[bold]after promotion: production's SLO catches what the canary could not[/]",
        align="left",
    )
    if loop.release is None:
        console.print(f"  [red]✗[/] {escape(loop.alert)}")
        return
    console.print(
        f"  {escape(loop.release)} rolled back to {escape(str(loop.restored_to))} "
        f"{loop.seconds_with_all_traffic} s after it took all the traffic, "
        f"by {escape(loop.alert)}"
    )
    if loop.incident_id is not None:
        show(loop.incident_id, spec=spec, output=OutputFormat.TEXT)
    if loop.requirement:
        console.print(f"  the follow-up requirement, committed: {escape(loop.requirement)}")
    for line in result.addressed:  # chapter 10's commit names it
        console.print(f"  [green]✓[/] {escape(line)} (chapter 10)")
    if result.experiment is not None:
        console.rule(
            "[bold]the one-page checkout experiment: business and feedback per variant[/]",
            align="left",
        )
        print_business(result.experiment.business)
        print_feedback(result.experiment.feedback)
    console.rule("[bold]delivery performance (DORA) over the demo[/]", align="left")
    dora(env="production", since="1d", spec=spec, output=OutputFormat.TEXT)


def _explain(project: Project, outcome: RunOutcome) -> None:
    """After a blocked run, show what stopped it, file:line."""
    from conveyor.service.reports import run_report
    from conveyor.states import RunState

    if outcome.state is RunState.SUCCESS:
        return
    with project.open_store() as store:
        report = run_report(store, outcome.run_id)
    console.print("[bold]what stopped it:[/]")
    reasons = [(str(gate.gate), str(reason)) for gate in report.gates for reason in gate.reasons]
    if not reasons:  # not a gate: a failed job, such as a deploy the judge rolled back
        with project.open_store() as store:
            jobs = store.get_jobs(outcome.run_id)
        reasons = [(job.job_id, job.detail or "") for job in jobs if job.state.value == "failed"]
    for where, reason in reasons:
        console.print(f"  [red]✗[/] {escape(where)}: {escape(reason)}")
