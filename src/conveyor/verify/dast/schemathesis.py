"""schemathesis: property-based API tests from the service's OpenAPI document.

It sends generated requests (valid ones, boundary values and invalid ones) to every
operation of the document and checks each response: no 5xx, status codes, content types,
headers and bodies as documented, invalid data rejected, methods not offered refused.
Runs are reproducible: a fixed seed, no example database, a few examples per operation
(the `max_examples` key), and no stateful phase, so the step stays quick.

Each failing check on an operation is one finding: the rule id is the check's name
(`not_a_server_error`, `response_schema_conformance`), the path the operation's template.
Levels follow schemathesis's own severities: critical and high are errors, medium a
warning, low a note. What was sent is in the message (e.g. the request that got a 500).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, get_args

from conveyor.engine.step import StepContext
from conveyor.engine.tool_output import read_json_report, tool_failed
from conveyor.findings.model import Finding, Level
from conveyor.states import FailureClass
from conveyor.verify.dast import (
    ROOT_PATH,
    DastTool,
    Endpoint,
    GarbledReport,
    ToolReport,
    dast_finding,
    unique,
)
from conveyor.verify.target import Target

SCHEMATHESIS = "schemathesis"
Check = Literal[
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
]
ALL_CHECKS: tuple[Check, ...] = get_args(Check)
# Everything but the two checks that report how precisely the document describes the API
# rather than how the service behaves (the Allow header of a 405; inputs the schema
# allows but the service's validation refuses).
DEFAULT_CHECKS: tuple[Check, ...] = tuple(
    c for c in ALL_CHECKS if c not in ("allow_header_conformance", "positive_data_acceptance")
)
PHASES = "examples,coverage,fuzzing"
SEED = "0"  # the same requests every run, so the same findings every run
WORKERS = "2"
REQUEST_TIMEOUT_S = "5"
SEVERITY_LEVELS = {
    "critical": Level.ERROR,
    "high": Level.ERROR,
    "medium": Level.WARNING,
    "low": Level.NOTE,
}
EXIT_PASSED, EXIT_FAILURES = 0, 1  # anything else: schemathesis itself failed
HARD_LIMIT_GRACE_S = 30


@dataclasses.dataclass(frozen=True)
class SchemathesisRun:
    target: Target
    openapi_url: str
    checks: tuple[str, ...]
    max_examples: int
    time_limit: float  # seconds before schemathesis is killed (and the step fails)
    scratch: Path


def schemathesis_argv(run: SchemathesisRun, summary: Path, events: Path) -> list[str]:
    return [
        SCHEMATHESIS,
        "run",
        run.openapi_url,
        *("--url", run.target.url),
        *("--checks", ",".join(run.checks)),
        *("--phases", PHASES),
        *("--max-examples", str(run.max_examples)),
        *("--seed", SEED),
        *("--workers", WORKERS),
        *("--request-timeout", REQUEST_TIMEOUT_S),
        *("--generation-database", "none"),
        *("--suppress-health-check", "all"),  # about data generation, not the target
        "--no-color",
        *("--report", "json,ndjson"),
        *("--report-json-path", str(summary)),
        *("--report-ndjson-path", str(events)),
    ]


async def scan_schemathesis(ctx: StepContext, run: SchemathesisRun) -> ToolReport:
    run.scratch.mkdir(parents=True, exist_ok=True)
    summary, events = run.scratch / "schemathesis.json", run.scratch / "schemathesis.ndjson"
    for stale in (summary, events):
        stale.unlink(missing_ok=True)
    tool_ctx = dataclasses.replace(
        ctx, env={**ctx.env, "HOME": str(run.scratch)}, timeout=run.time_limit
    )
    ctx.say(f"schemathesis: {run.openapi_url}, {run.max_examples} examples per operation")
    # Its cwd is the scratch folder: hypothesis keeps a .hypothesis folder in the cwd.
    ran = await tool_ctx.run_tool(schemathesis_argv(run, summary, events), cwd=run.scratch)
    finished = ran.result.failure in (None, FailureClass.EXIT_CODE)
    if not finished or ran.result.exit_code not in (EXIT_PASSED, EXIT_FAILURES):
        raise tool_failed(SCHEMATHESIS, ran)
    document = read_json_report(SCHEMATHESIS, ran, summary)
    try:
        version, tested, notes = read_run_summary(document)
        with events.open(encoding="utf-8") as lines:
            findings = read_failures(lines)
    except (OSError, ValueError) as error:  # GarbledReport is a ValueError too
        detail = f"schemathesis wrote a report Conveyor cannot read: {error}"
        raise tool_failed(SCHEMATHESIS, ran, detail) from None
    if tested == 0:
        raise tool_failed(
            SCHEMATHESIS, ran, f"schemathesis tested no operation of {run.openapi_url}"
        )
    if ran.result.exit_code == EXIT_FAILURES and not findings and not notes:
        raise tool_failed(SCHEMATHESIS, ran, "schemathesis failed but reported no failure")
    return ToolReport(DastTool.SCHEMATHESIS, version, findings, tested, "operations", notes)


def read_run_summary(document: dict[str, Any]) -> tuple[str, int, list[str]]:
    """(schemathesis's version, operations tested, notes on errors) from its JSON report."""
    operations = document.get("operations")
    if not isinstance(operations, dict):
        raise GarbledReport("no `operations` in the JSON report")
    notes = [f"schemathesis: {_error_text(error)}" for error in document.get("errors") or []]
    skipped = int(operations.get("skipped") or 0)
    if skipped:
        notes.append(f"schemathesis: {skipped} operations skipped")
    version = str(document.get("schemathesis_version") or "unknown")
    return version, int(operations.get("tested") or 0), notes


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        parts = [error.get(key) for key in ("operation", "title", "message")]
        text = ": ".join(str(part) for part in parts if part)
        return " ".join(text.split())[:300] or json.dumps(error)[:300]
    return " ".join(str(error).split())[:300]


def read_failures(lines: Iterable[str]) -> list[Finding]:
    """Findings from schemathesis's NDJSON event stream: one per (check, operation)."""
    try:
        findings = [_finding(check, case) for check, case in _failed_checks(lines)]
    except (AttributeError, TypeError) as error:  # a check or interaction of another shape
        raise GarbledReport(f"NDJSON: {error}") from None
    return unique(findings)


def _failed_checks(lines: Iterable[str]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(failed check, the interaction that failed it) from every finished scenario."""
    for number, line in enumerate(lines, start=1):
        if '"ScenarioFinished"' not in line:
            continue  # most events are not about results; skip parsing them
        try:
            recorder = json.loads(line)["ScenarioFinished"]["recorder"]
        except (ValueError, KeyError, TypeError) as error:
            raise GarbledReport(f"NDJSON line {number}: {error}") from None
        interactions = recorder.get("interactions") or {}
        for case_id, checks in (recorder.get("checks") or {}).items():
            for check in checks:
                if check.get("status") == "failure":
                    yield check, interactions.get(case_id) or {}


def _finding(check: dict[str, Any], interaction: dict[str, Any]) -> Finding:
    failure = (check.get("failure_info") or {}).get("failure") or {}
    name = str(check.get("name") or failure.get("code") or "unknown")
    endpoint = operation_endpoint(str(failure.get("operation") or ""))
    title = str(failure.get("title") or name)
    detail = " ".join(str(failure.get("message") or "").split())
    sent = _sent(interaction)
    message = f"{endpoint.describe()}: {title}" + (f": {detail}" if detail else "") + sent
    return dast_finding(
        DastTool.SCHEMATHESIS,
        name,
        SEVERITY_LEVELS.get(str(failure.get("severity")), Level.WARNING),
        endpoint,
        message,
        rule_name=title,
        properties={"code": failure.get("code"), "severity": failure.get("severity")},
    )


def operation_endpoint(operation: str) -> Endpoint:
    """`GET /api/products/{product_id}` as an endpoint (the path is already a template)."""
    method, _, path = operation.partition(" ")
    if not path.startswith("/"):
        return Endpoint("", ROOT_PATH)  # e.g. "Stateful tests": no single operation
    return Endpoint(method.upper(), path.strip("/") or ROOT_PATH)


def _sent(interaction: dict[str, Any]) -> str:
    request = interaction.get("request") or {}
    if not request.get("uri"):
        return ""
    status = (interaction.get("response") or {}).get("status_code")
    answer = f" answered {status}" if status is not None else " got no answer"
    return f"; e.g. {request.get('method', '')} {request['uri']}{answer}"
