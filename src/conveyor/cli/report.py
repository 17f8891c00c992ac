"""`conveyor report RUN`: findings (new, unchanged, waived, expired), gates, tests, coverage,
and staging's E2E journeys and load test."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.cli.output import console, emit_json, examples, styled
from conveyor.cli.project import SpecOption

if TYPE_CHECKING:  # keeps `conveyor --help` from importing the store
    from conveyor.findings.model import Finding
    from conveyor.findings.reports import CoverageDocument, PerfReport, TestsReport
    from conveyor.service.reports import RunReport


def register(app: typer.Typer) -> None:
    app.command("report", epilog=REPORT_EXAMPLES)(report)


REPORT_EXAMPLES = examples(
    ("conveyor report", "the latest run: findings, gates, tests, coverage"),
    ("conveyor report 12 -o sarif > run12.sarif", "the merged SARIF log, for a code host"),
)


_FORMATS = ("text", "json", "sarif")


def report(
    run_id: Annotated[
        int | None, typer.Argument(help="A run number (default: the latest).")
    ] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="text, json, or sarif (the merged SARIF log).")
    ] = "text",
) -> None:
    """Show a run's findings, gate decisions, tests and coverage."""
    from conveyor.errors import ConveyorError
    from conveyor.service.project import Project
    from conveyor.service.queries import run_view
    from conveyor.service.reports import run_report

    if output not in _FORMATS:
        raise ConveyorError(f"unknown output format {output!r}", hint="use text, json or sarif")
    with Project.locate(spec).open_store(create=False) as store:
        chosen = run_view(store, run_id).run.id
        result = run_report(store, chosen)
    if output == "sarif":
        sys.stdout.write(json.dumps(result.sarif, indent=2) + "\n")
    elif output == "json":
        emit_json(
            {
                "run": result.run,
                "findings": result.findings,
                "gates": result.gates,
                "tests": result.tests,
                "coverage": result.coverage,
                "e2e": result.e2e,
                "perf": result.perf,
            }
        )
    else:
        _print(result)


def _print(result: RunReport) -> None:
    run = result.run
    console.print(
        f"[bold]run {run.id}[/] {styled(run.state.value)} · {escape(run.pipeline)} · "
        f"{(run.commit_sha or '')[:12]} on {escape(run.branch or '(detached)')}"
    )
    grouped = result.by_disposition()
    counts = ", ".join(f"{len(items)} {d.value}" for d, items in grouped.items())
    console.print(f"[bold]findings[/]: {counts}")
    for disposition, items in grouped.items():
        for finding in sorted(items, key=lambda f: (-f.level.rank, f.location)):
            _print_finding(disposition.value, finding)
    if any(f.blocks_by_default for f in result.findings):
        console.print(
            "  [dim]waive a finding: copy its `waive:` line under `exceptions:` in "
            ".conveyor/exceptions.yml; adopting the gates on existing code: "
            'conveyor baseline accept --reason "..."[/]',
            soft_wrap=True,
        )
    if result.gates:
        console.print("[bold]gates[/]:")
        for gate in result.gates:
            verdict = "[green]passed[/]" if gate.passed else "[bold red]blocked[/]"
            console.print(f"  {escape(str(gate.gate))} ({escape(gate.job)}): {verdict}")
            for reason in gate.reasons:
                console.print(f"    [red]✗[/] {escape(reason)}")
    for tests in result.tests:
        _print_tests(tests)
    for coverage in result.coverage:
        _print_coverage(coverage)
    for journeys in result.e2e:
        _print_tests(journeys, "e2e")
    for load in result.perf:
        _print_perf(load)


def _print_finding(disposition: str, finding: Finding) -> None:
    """One line per finding, its fingerprint first; a blocking one gets the line that
    waives it. Never wrapped: both are copied."""
    from datetime import date

    from conveyor.findings.exceptions import short_fingerprint, waiver_line
    from conveyor.service.runs import default_actor

    waiver = ""
    if finding.waiver is not None:
        waiver = (
            f" [dim](waived until {finding.waiver.expires} by "
            f"{escape(finding.waiver.owner)}: {escape(finding.waiver.reason)})[/]"
        )
    console.print(
        f"  {disposition:<14} {short_fingerprint(finding)}  {escape(finding.location)}  "
        f"{finding.level.value:<7} {escape(finding.rule_id)} [dim]\\[{escape(finding.tool)}][/] "
        f"{escape(finding.message)}{waiver}",
        soft_wrap=True,
    )
    if finding.blocks_by_default and finding.fingerprint:
        line = waiver_line(finding, default_actor(), date.today())
        console.print(f"  {'':<14} waive: {escape(line)}", soft_wrap=True)


def _print_tests(tests: TestsReport, title: str = "tests") -> None:
    parts = ", ".join(f"{value} {name}" for name, value in tests.totals.items())
    console.print(f"[bold]{title}[/] ({escape(tests.job)}): {escape(parts)}")
    for failure in tests.failures:
        console.print(
            f"  [red]✗[/] {escape(failure.id)} at {escape(str(failure.location))}: "
            f"{escape(str(failure.message))}"
        )
    for flaky in tests.flaky:
        console.print(f"  [yellow]~[/] flaky: {escape(flaky.id)}")
    if tests.slowest:
        console.print(
            "  slowest: "
            + ", ".join(f"{escape(t.id)} {t.duration:.2f}s" for t in tests.slowest[:5])
        )


def _print_coverage(coverage: CoverageDocument) -> None:
    console.print(f"[bold]coverage[/] ({escape(coverage.job)}): {coverage.total_percent:.1f}%")
    for path, percent in sorted(coverage.files.items(), key=lambda item: item[1])[:10]:
        console.print(f"  {percent:6.1f}%  {escape(path)}")


def _print_perf(load: PerfReport) -> None:
    """The load test: totals, each threshold's verdict, the comparison with the last result."""
    totals = load.totals
    verdict = "[green]passed[/]" if load.passed else "[bold red]failed[/]"
    rate, failed = float(totals.get("rps", 0)), float(totals.get("error_rate", 0))
    console.print(
        f"[bold]perf[/] ({escape(load.job)}): {verdict}, {totals.get('requests')} requests,"
        f" p95 {totals.get('p95_ms')} ms, p99 {totals.get('p99_ms')} ms,"
        f" {rate:.1f} req/s, {failed:.2f}% failed"
    )
    for reason in load.reasons:
        console.print(f"  [red]✗[/] {escape(str(reason))}")
    if load.comparison.note:
        console.print(f"  [dim]{escape(load.comparison.note)}[/]")
