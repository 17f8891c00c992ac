"""Quality trends of a release: complexity and duplication (the `quality` step's "quality"
reports) and line coverage (the `test` step's "coverage" reports) of the run behind it,
beside the same figures of the release it replaced. The release record carries them
(`quality`), so `conveyor release record` and the API show them the same way.

Nothing is derived again: the figures are the reports the run stored. A run with no
quality or coverage report shows empty lists, never zeros ("no data" is not "passed").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.findings.reports import CoverageDocument, QualityReport, ReportKind
from conveyor.store.records import RunRecord
from conveyor.store.store import Store


def run_quality(store: Store, run: RunRecord | None) -> dict[str, Any]:
    """The quality figures one run recorded, by job."""
    from conveyor.service.reports import typed_documents

    if run is None:
        return {"run": None, "jobs": [], "coverage": []}
    reports = typed_documents(store, run.id, ReportKind.QUALITY, QualityReport)
    coverage = typed_documents(store, run.id, ReportKind.COVERAGE, CoverageDocument)
    return {
        "run": run.id,
        "jobs": [
            {
                "job": report.job,
                "passed": report.passed,
                "tools": dict(report.tools),
                "complexity": report.complexity.model_dump(mode="json"),
                "duplication": report.duplication.model_dump(mode="json"),
            }
            for report in reports
        ],
        "coverage": [
            {"job": doc.job, "total_percent": round(doc.total_percent, 2)} for doc in coverage
        ],
    }


def release_quality(
    store: Store,
    run: RunRecord | None,
    previous_release: str | None,
    previous_run: RunRecord | None,
) -> dict[str, Any]:
    """This release's figures and, for comparison, those of the release it replaced."""
    previous = None
    if previous_release is not None:
        previous = {"release": previous_release, **run_quality(store, previous_run)}
    return {**run_quality(store, run), "previous": previous}


# --- Markdown --------------------------------------------------------------------------


def quality_markdown(quality: Mapping[str, Any] | None) -> list[str]:
    """The trends as a table: each figure of this release beside the previous one's."""
    lines = ["", "## Quality", ""]
    if not quality or not (quality.get("jobs") or quality.get("coverage")):
        return [*lines, "- none recorded"]
    previous = quality.get("previous") or {}
    then = f"previous ({previous['release']})" if previous else "previous"
    lines += [f"| figure | this release | {then} |", "|---|---|---|"]
    for label, now, before in _rows(quality, previous):
        lines.append(f"| {label} | {now} | {before} |")
    return lines


def _rows(quality: Mapping[str, Any], previous: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    before_jobs = {job["job"]: job for job in previous.get("jobs", [])}
    rows = []
    for job in quality.get("jobs", []):
        earlier = before_jobs.get(job["job"], {})
        for label, figure in _figures(job).items():
            rows.append((f"{job['job']}: {label}", figure, _figures(earlier).get(label, "-")))
    before_coverage = {doc["job"]: doc for doc in previous.get("coverage", [])}
    for doc in quality.get("coverage", []):
        earlier = before_coverage.get(doc["job"])
        shown = f"{earlier['total_percent']}%" if earlier else "-"
        rows.append((f"{doc['job']}: line coverage", f"{doc['total_percent']}%", shown))
    return rows


def _figures(job: Mapping[str, Any]) -> dict[str, str]:
    if not job:
        return {}
    complexity, duplication = job.get("complexity", {}), job.get("duplication", {})
    ratio = duplication.get("ratio")
    return {
        "complexity mean / max": f"{complexity.get('mean')} / {complexity.get('max')}",
        "functions over the threshold": (
            f"{complexity.get('over_threshold')} over {complexity.get('threshold')}"
        ),
        "duplicated lines": (
            f"{ratio}% ({duplication.get('duplicated_lines')} of {duplication.get('lines')})"
            if ratio is not None
            else "none measured"
        ),
    }
