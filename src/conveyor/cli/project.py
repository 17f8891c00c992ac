"""`conveyor init`, `conveyor lint`, `conveyor schema`: the spec file itself."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.errors import ConveyorError, SpecError

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
    ("conveyor init", "conveyor.yml in this folder"),
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
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Write a starter conveyor.yml and the state folder, which keeps itself out of git."""
    from conveyor.service.project import Project
    from conveyor.spec.starter import STARTER_YAML

    target = directory / "conveyor.yml"
    if target.exists() and not force:
        raise ConveyorError(f"{target} already exists", hint="pass --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(STARTER_YAML)
    # The state folder ignores itself (all but exceptions.yml) from the start, so a
    # secrets.env put there before the first run is never committed by accident.
    project = Project.locate(target)
    project.ensure_state_dir()
    if output is OutputFormat.JSON:
        emit_json({"file": str(target.resolve()), "state_dir": str(project.state_dir)})
        return
    console.print(f"wrote {target}; next: [bold]conveyor lint[/], then [bold]conveyor run[/]")


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
