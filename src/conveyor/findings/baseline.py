"""Baselines: which findings the target branch already had, so only new ones block."""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.findings.model import Disposition, Finding


def classify(findings: Iterable[Finding], baseline: set[str] | None) -> list[Finding]:
    """Findings whose fingerprint is in the baseline become `unchanged`; others stay `new`.

    With no baseline (no successful run of the target branch yet) everything is new.
    """
    if not baseline:
        return list(findings)
    return [
        f.with_disposition(Disposition.UNCHANGED) if f.fingerprint in baseline else f
        for f in findings
    ]
