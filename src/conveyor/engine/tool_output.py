"""A tool a step ran that failed or wrote nonsense, as one exception the step turns into
its result; shared by the scanner steps and the verification tools they drive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import ToolRun, failed
from conveyor.states import FailureClass


class ScanFailed(Exception):
    """A tool crashed, timed out, was missing or printed something unparsable."""

    def __init__(self, result: ExecResult) -> None:
        super().__init__(result.detail)
        self.result = result


def tool_failed(tool: str, ran: ToolRun, detail: str | None = None) -> ScanFailed:
    result = ran.result
    return ScanFailed(
        failed(
            detail or ran.failure_detail(tool),
            exit_code=result.exit_code,
            failure=result.failure or FailureClass.EXIT_CODE,
        )
    )


def read_json_report(tool: str, ran: ToolRun, output: Path) -> dict[str, Any]:
    """The JSON object a tool wrote to `output` (removed once read), or ScanFailed."""
    try:
        document = json.loads(output.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise tool_failed(
            tool, ran, f"{tool} wrote no readable report ({error}): {ran.failure_detail(tool)}"
        ) from None
    finally:
        output.unlink(missing_ok=True)
    if not isinstance(document, dict):
        raise tool_failed(tool, ran, f"{tool} wrote a report that is not a JSON object")
    return document
