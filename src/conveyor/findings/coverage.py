"""Line coverage: coverage.py's JSON report (`coverage json`, `--cov-report=json`) read
into totals and per-file percentages, and the smaller report Conveyor publishes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.spec.gates import CoverageGate


class CoverageError(ValueError):
    """The file is not a coverage.py JSON report."""


@dataclass(frozen=True)
class CoverageReport:
    total_percent: float
    files: dict[str, float] = field(default_factory=dict)  # path -> percent covered

    def below(self, floor: float) -> dict[str, float]:
        """The files under `floor`, lowest first."""
        low = [(path, pct) for path, pct in self.files.items() if pct < floor]
        return dict(sorted(low, key=lambda item: (item[1], item[0])))

    def to_json(self) -> dict[str, Any]:
        return {"total_percent": self.total_percent, "files": dict(sorted(self.files.items()))}


def gate_reasons(
    coverage: CoverageReport, baseline: CoverageReport | None, policy: CoverageGate
) -> list[str]:
    """Why `coverage` fails the policy: under the floor, or dropped too far from the
    baseline (the target branch's last successful run; no baseline, no drop check)."""
    reasons: list[str] = []
    total = coverage.total_percent
    if policy.min is not None and total < policy.min:
        reasons.append(f"coverage {total:.1f}% is below the floor of {policy.min:g}%")
    if policy.max_drop is not None and baseline is not None:
        drop = baseline.total_percent - total
        if drop > policy.max_drop:
            reasons.append(
                f"coverage dropped {drop:.1f} points "
                f"({baseline.total_percent:.1f}% -> {total:.1f}%), "
                f"more than max_drop {policy.max_drop:g}"
            )
    return reasons


def parse_coverage_py(content: bytes) -> CoverageReport:
    """The totals and per-file `percent_covered` of a coverage.py JSON report."""
    data = _load(content)
    try:
        total = float(data["totals"]["percent_covered"])
        files = {
            str(path): float(entry["summary"]["percent_covered"])
            for path, entry in data.get("files", {}).items()
        }
    except (KeyError, TypeError, ValueError) as error:
        raise CoverageError(f"not a coverage.py JSON report (no {error})") from None
    return CoverageReport(total_percent=total, files=files)


def report_from_json(content: bytes) -> CoverageReport:
    """Read back a report written by `CoverageReport.to_json` (e.g. a baseline's)."""
    data = _load(content)
    try:
        files = {str(path): float(pct) for path, pct in data.get("files", {}).items()}
        return CoverageReport(total_percent=float(data["total_percent"]), files=files)
    except (KeyError, TypeError, ValueError) as error:
        raise CoverageError(f"not a coverage report (no {error})") from None


def _load(content: bytes) -> Mapping[str, Any]:
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError) as error:
        raise CoverageError(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise CoverageError("not a coverage report: expected a JSON object")
    return data
