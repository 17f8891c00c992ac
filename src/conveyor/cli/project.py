"""`conveyor init`, `conveyor lint`, `conveyor schema`: the spec file itself."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.errors import SpecError

if TYPE_CHECKING:
    from conveyor.spec.detect.model import DataSetting, Detection

SPEC_ENV = "CONVEYOR_FILE"
SpecOption = typer.Option(
    "--file",
    "-f",
    envvar=SPEC_ENV,
    show_envvar=True,
    help="The spec file, or a folder holding conveyor.yml (default: ./conveyor.yml).",
)


def register(app: typer.Typer) -> None:
    app.command("init", epilog=INIT_EXAMPLES)(init)
    app.command("lint", epilog=LINT_EXAMPLES)(lint)
    app.command("schema", epilog=SCHEMA_EXAMPLES)(schema)


INIT_EXAMPLES = examples(
    ("conveyor init", "conveyor.yml for the project in this folder"),
    ("conveyor init --explain", "and what was detected, file:line"),
    ("conveyor init services/shop", "in another folder (created if missing)"),
)
LINT_EXAMPLES = examples(
    ("conveyor lint", "./conveyor.yml: every problem, file:line:col"),
    ("conveyor lint -f ci/conveyor.yml -o json", "another file; problems as JSON"),
    ("CONVEYOR_FILE=ci/conveyor.yml conveyor lint", "the same, from the environment"),
)
SCHEMA_EXAMPLES = examples(
    ("conveyor schema > conveyor.schema.json", "for yaml-language-server and editors"),
)


def init(
    directory: Annotated[Path, typer.Argument(help="Where to write conveyor.yml.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Say what was detected, and where (file:line).")
    ] = False,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Write a conveyor.yml that fits the project in DIRECTORY, and the state folder.

    A Python web app (FastAPI, Starlette, Flask, Django) gets the gates, its tests with
    coverage, an image served by uvicorn or gunicorn, its scan and signature, staging and
    a production canary; any other folder a minimal file, and the list of what was not
    found. Nothing of the project is imported or run.
    """
    from conveyor.service.starter import initialize
    from conveyor.spec.detect.explain import findings, summary

    done = initialize(directory, force=force)
    found = done.detection
    if output is OutputFormat.JSON:
        emit_json(
            {
                "file": str(done.file),
                "state_dir": str(done.state_dir),
                "detected": summary(found),
                "complete": done.full,
                "findings": [row.to_json() for row in findings(found)],
                "not_detected": list(found.notes),
                "problems": list(found.problems),
                "signing_key": str(done.signing_key) if done.signing_key else None,
            }
        )
        return
    console.print(f"wrote {escape(str(done.file))} for {escape(summary(found))}")
    if explain:
        _print_findings(found)
    for line in (*found.notes, *found.problems):
        console.print(f"  [yellow]not detected:[/] {escape(line)}")
    if done.signing_key is not None:
        console.print(f"  made the signing key {escape(str(done.signing_key))} (keep it secret)")
    _print_next(done.full, found.secrets)


def _print_findings(found: Detection) -> None:
    from conveyor.spec.detect.explain import findings

    rows = findings(found)
    width = max((len(row.what) for row in rows), default=0)
    for row in rows:
        value = row.value or "none"
        console.print(f"  {row.what:<{width}}  {escape(value)}  [dim]{escape(row.why)}[/]")


def _print_next(full: bool, secrets: Sequence[DataSetting]) -> None:
    steps = ["[bold]conveyor lint[/]"]
    if full:
        steps.append("[bold]conveyor vulndb import FILE[/] (the scan's advisories)")
    if secrets:
        names = ", ".join(s.variable for s in secrets)
        steps.append(f"the values of {escape(names)} in .conveyor/secrets.env")
    steps.append("commit, then [bold]conveyor run[/]")
    console.print("next: " + "; ".join(steps))


def lint(
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Check conveyor.yml: syntax, keys, types, the needs graph, step parameters.

    Every problem is reported, one `file:line:col: key: message` line each.
    """
    from conveyor.service.project import Project
    from conveyor.spec.loader import load_pipeline
    from conveyor.steps.registry import STEP_PARAMS

    started = time.perf_counter()
    path = Project.locate(spec).spec_path
    try:
        loaded = load_pipeline(path, steps=STEP_PARAMS)
    except SpecError as error:
        if output is OutputFormat.JSON:  # the report on stdout; the error on stderr too
            emit_json({"file": str(path), "valid": False, "problems": _problems_json(error)})
        raise  # the CLI prints it: each problem on a line of its own (or in JSON)
    jobs = loaded.pipeline.jobs
    took = time.perf_counter() - started
    if output is OutputFormat.JSON:
        emit_json({"file": str(path), "valid": True, "jobs": len(jobs), "seconds": round(took, 4)})
        return
    console.print(f"[green]✓[/] {path}: {len(jobs)} jobs, valid ({took * 1000:.0f} ms)")


def _problems_json(error: SpecError) -> list[dict[str, object]]:
    return [
        {
            "line": problem.line,
            "column": problem.column,
            "location": {"file": problem.file, "line": problem.line, "col": problem.column},
            "key": problem.key_path,
            "message": problem.detail,
            "hint": problem.hint,
        }
        for problem in error.problems
    ]


def schema() -> None:
    """Print the JSON Schema of conveyor.yml (for editors: yaml-language-server)."""
    from conveyor.spec.schema import pipeline_json_schema
    from conveyor.steps.registry import STEP_PARAMS

    print(json.dumps(pipeline_json_schema(STEP_PARAMS), indent=2))
