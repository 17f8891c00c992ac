"""`conveyor baseline accept|show`: the findings a project accepts as existing when it
adopts the gates (`.conveyor/baseline.yml`), so only new problems block."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.cli.project import SpecOption

if TYPE_CHECKING:
    from conveyor.findings.accepted import AcceptedBaseline
    from conveyor.service.baseline import AcceptOutcome

baseline_app = typer.Typer(
    help="The findings accepted as existing on the project's first day.",
    no_args_is_help=True,
    epilog=examples(
        (
            'conveyor baseline accept --reason "adopting the gates; cleanup in SHOP-40"',
            "the latest run's findings become the baseline: only new ones block",
        ),
        ("conveyor baseline accept --run 3 --reason ...", "a given run's findings"),
        ("conveyor baseline show", "what was accepted, by whom, when and why"),
    ),
)


def register(app: typer.Typer) -> None:
    app.add_typer(baseline_app, name="baseline")


@baseline_app.command("accept")
def accept(
    reason: Annotated[
        str, typer.Option("--reason", help="Why these findings are accepted (required).")
    ],
    run_id: Annotated[
        int | None, typer.Option("--run", help="The run whose findings (default: the latest).")
    ] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Record a run's findings in .conveyor/baseline.yml, owned by you, with your reason;
    the gates then count them as unchanged. Commit the file: the gates read it from the
    commit they check. The acceptance is also recorded in the audit log."""
    from conveyor.service import baseline
    from conveyor.service.project import Project
    from conveyor.service.runs import default_actor

    project = Project.locate(spec)
    with project.open_store(create=False) as store:
        outcome = baseline.accept(
            project, store, run_id=run_id, reason=reason, actor=default_actor()
        )
    if output is OutputFormat.JSON:
        emit_json(
            {
                "file": str(outcome.file),
                "run": outcome.run_id,
                "accepted": [f.fingerprint for f in outcome.added],
                "already_accepted": outcome.already,
                "left_to_waivers": outcome.waived,
                "secrets_still_blocking": outcome.secrets,
            }
        )
        return
    _print_outcome(outcome, project.directory)


def _print_outcome(outcome: AcceptOutcome, root: Path) -> None:
    where = escape(_relative(outcome.file, root))
    if not outcome.added:
        console.print(
            f"nothing to accept: run {outcome.run_id}'s findings are already in {where}"
            f" ({outcome.already}) or waived ({outcome.waived})"
        )
        return
    tools = Counter(f.tool for f in outcome.added)
    per_tool = ", ".join(f"{escape(tool)} {count}" for tool, count in sorted(tools.items()))
    console.print(
        f"accepted {len(outcome.added)} findings of run {outcome.run_id} into {where}: {per_tool}"
    )
    if outcome.already or outcome.waived:
        console.print(
            f"  [dim]{outcome.already} already accepted, {outcome.waived} left to their waivers[/]"
        )
    if outcome.secrets:
        console.print(
            f"  [yellow]![/] {outcome.secrets} secrets still block while "
            "gates.secrets.fail_on_any is true: mark a test fixture's line with "
            "`# pragma: allowlist secret`, or waive it in .conveyor/exceptions.yml"
        )
    console.print(f"next: commit {where}; the gates read it from the commit they check")


@baseline_app.command("show")
def show(
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """List the accepted findings, with who accepted them, when, why and from which run."""
    from conveyor.service import baseline
    from conveyor.service.project import Project

    project = Project.locate(spec)
    accepted = baseline.show(project)
    if output is OutputFormat.JSON:
        emit_json([a.model_dump(mode="json") for a in accepted.acceptances])
        return
    _print_baseline(accepted)


def _print_baseline(accepted: AcceptedBaseline) -> None:
    from conveyor.findings.accepted import BASELINE_FILE

    if not accepted.acceptances:
        console.print(
            f"no accepted baseline ({BASELINE_FILE} is absent or empty): every finding is new "
            "until the target branch's first successful run; `conveyor baseline accept` "
            "records today's"
        )
        return
    console.print(f"{BASELINE_FILE}: {len(accepted.fingerprints)} findings accepted")
    for acceptance in accepted.acceptances:
        source = f"run {acceptance.run}" if acceptance.run is not None else "by hand"
        commit = f", {acceptance.commit}" if acceptance.commit else ""
        console.print(
            f"[bold]{acceptance.accepted.isoformat()}[/] by {escape(acceptance.owner)} "
            f"({source}{commit}): {escape(acceptance.reason)}"
        )
        for finding in acceptance.findings:
            console.print(
                f"  {finding.fingerprint[:16]}  {escape(finding.path or '(no location)')}  "
                f"{escape(finding.rule)} [dim]\\[{escape(finding.tool)}][/]"
            )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
