"""The `quality` step with the real lizard and jscpd, on small fixture repositories:
existing offences baselined, new ones blocking with file, line and rule, waivers that
expire, thresholds read at decision time, the duplication ratio and its baseline."""

from __future__ import annotations

from datetime import date, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from conveyor.findings.model import Disposition
from conveyor.findings.reports import QualityReport
from conveyor.spec.gates import Gates, QualityGate
from conveyor.steps.quality import QualityStep
from steps.conftest import BaselineEvidence, Outcome, run_step, tools_env, write_files
from steps.quality_code import CHANGE, EXISTING, NEW_OFFENCES, OLD_OFFENCES


def measure(
    root: Path,
    *,
    baseline: list[dict[str, Any]] | None = None,
    quality: QualityGate | None = None,
    kind: str = "sarif",
) -> Outcome:
    gates = Gates(quality=quality or QualityGate())
    evidence = BaselineEvidence(baseline or [], gates, kind=kind)
    return run_step(QualityStep(), {"paths": ["app"]}, root, evidence=evidence)


def test_without_a_baseline_the_existing_offences_are_new_and_block(tmp_path: Path) -> None:
    write_files(tmp_path, EXISTING)

    outcome = measure(tmp_path)

    assert outcome.ran.ok, outcome.log.text
    assert outcome.locations == OLD_OFFENCES
    assert not outcome.final.ok
    reasons = outcome.gate_reasons
    assert any(
        r.startswith(
            "app/legacy.py:1: error quality/complexity [lizard] tangled has a "
            "cyclomatic complexity of 11 (max 10)"
        )
        for r in reasons
    ), reasons
    assert any(
        r.startswith("app/orders.py:1: error quality/duplication [jscpd] 7 lines")
        and "copied from app/invoices.py:4-10" in r
        for r in reasons
    ), reasons
    assert "conveyor baseline accept" in outcome.log.text


def test_existing_code_is_baselined_and_a_change_adding_offences_blocks(tmp_path: Path) -> None:
    write_files(tmp_path, EXISTING)
    main = measure(tmp_path).sarif  # the target branch's run: its findings are the baseline

    unchanged = measure(tmp_path, baseline=[main])
    write_files(tmp_path, CHANGE)
    changed = measure(tmp_path, baseline=[main])

    assert unchanged.final.ok, unchanged.log.text
    assert {f.disposition for f in unchanged.findings} == {Disposition.UNCHANGED}
    assert not changed.final.ok
    assert changed.locations == OLD_OFFENCES | NEW_OFFENCES
    new = {(f.tool, f.rule_id, f.location) for f in changed.findings if f.disposition == "new"}
    assert new == NEW_OFFENCES
    reasons = changed.gate_reasons
    assert len(reasons) == 2
    assert any(
        r.startswith("app/refunds.py:13: error quality/complexity [lizard] refundable")
        for r in reasons
    ), reasons
    assert any(
        r.startswith("app/refunds.py:4: error quality/duplication [jscpd]")
        and "copied from app/invoices.py:4-10" in r
        for r in reasons
    ), reasons


def test_an_offence_keeps_its_identity_when_lines_are_added_above_it(tmp_path: Path) -> None:
    write_files(tmp_path, EXISTING)
    before = {f.fingerprint for f in measure(tmp_path).findings}
    for name, text in EXISTING.items():
        write_files(tmp_path, {name: "# a comment\n\n" + text})

    after = measure(tmp_path).findings

    assert {f.fingerprint for f in after} == before
    assert {f.location for f in after} == {"app/legacy.py:3", "app/orders.py:3"}


def test_a_waiver_lets_a_new_offence_pass_until_it_expires(tmp_path: Path) -> None:
    write_files(tmp_path, {**EXISTING, **CHANGE})
    blocked = measure(tmp_path)
    lines = _waivers(blocked, date.today() + timedelta(days=7))

    write_files(tmp_path, {".conveyor/exceptions.yml": lines})
    waived = measure(tmp_path)
    write_files(
        tmp_path, {".conveyor/exceptions.yml": _waivers(blocked, date.today() - timedelta(days=1))}
    )
    expired = measure(tmp_path)

    assert waived.final.ok, waived.log.text
    assert {f.disposition for f in waived.findings} == {Disposition.WAIVED}
    assert not expired.final.ok
    assert {f.disposition for f in expired.findings} == {Disposition.EXPIRED_WAIVER}
    assert all("waiver expired" in reason for reason in expired.gate_reasons)


def _waivers(outcome: Outcome, expires: date) -> str:
    entries = [
        f"  - {{fingerprint: {f.fingerprint[:16]}, reason: refunds land this week, "
        f"owner: dana@example.com, expires: {expires.isoformat()}}}\n"
        for f in outcome.findings
    ]
    return "exceptions:\n" + "".join(entries)


def test_the_thresholds_are_read_when_deciding_not_when_measuring(tmp_path: Path) -> None:
    """conveyor.yml is not in the cache key: a cached scan is judged by today's gates."""
    write_files(tmp_path, {**EXISTING, **CHANGE})
    lenient = QualityGate(max_complexity=11, min_duplicate_lines=8)

    outcome = measure(tmp_path, quality=lenient)

    assert outcome.final.ok, outcome.log.text
    assert outcome.findings == []
    report = QualityReport.model_validate(outcome.report("quality"))
    assert (report.complexity.threshold, report.complexity.over_threshold) == (11, 0)
    assert (report.duplication.min_lines, report.duplication.blocks) == (8, 0)


def test_the_quality_report_has_the_figures_of_every_function(tmp_path: Path) -> None:
    write_files(tmp_path, {**EXISTING, **CHANGE})

    outcome = measure(tmp_path)

    report = QualityReport.model_validate(outcome.report("quality"))
    assert report.job == "scan"
    assert report.tools == {"lizard": version("lizard"), "jscpd": version("jscpd")}
    complexity = report.complexity
    # tangled 11, refundable 11, three totals of 3 and greet 1
    assert (complexity.functions, complexity.max, complexity.over_threshold) == (6, 11, 2)
    assert complexity.mean == round((11 + 11 + 3 * 3 + 1) / 6, 2)
    duplication = report.duplication
    assert (duplication.files, duplication.blocks) == (5, 2)
    assert duplication.duplicated_lines == 21  # three copies of 7 lines
    assert duplication.ratio == round(100 * 21 / duplication.lines, 2)
    assert not report.passed and len(report.reasons) == 4  # no baseline: all four are new


def test_the_duplication_ratio_blocks_only_when_it_rises_over_the_maximum(
    tmp_path: Path,
) -> None:
    write_files(tmp_path, EXISTING)
    capped = QualityGate(max_duplication_ratio=10)
    main = measure(tmp_path).sarif

    alone = measure(tmp_path, baseline=[main], quality=capped)
    ratio = QualityReport.model_validate(alone.report("quality")).duplication.ratio
    higher_on_main = QualityReport(job="scan").model_dump(mode="json")
    higher_on_main["duplication"] = {"ratio": 60.0}
    with_main = measure(tmp_path, baseline=[higher_on_main], quality=capped, kind="quality")

    assert not alone.final.ok  # over 10% and no quality report of main to compare with
    assert alone.gate_reasons == [
        f"duplication ratio {ratio}% is over gates.quality.max_duplication_ratio 10.0% "
        "(no baseline)"
    ]
    # main's ratio was higher: the existing duplication is baselined. (The offences are
    # still new findings here: this evidence has main's quality report but no SARIF.)
    assert sorted(r.split(": ")[0] for r in with_main.gate_reasons) == [
        "app/legacy.py:1",
        "app/orders.py:1",
    ]


def test_no_python_file_under_the_paths_fails_the_job(tmp_path: Path) -> None:
    write_files(tmp_path, {"docs/readme.md": "# nothing to measure\n"})

    outcome = run_step(QualityStep(), {"paths": ["docs"]}, tmp_path)

    assert not outcome.ran.ok
    assert "scanned no files" in outcome.ran.detail
    assert outcome.evidence.published == []


def test_excluded_files_are_not_measured(tmp_path: Path) -> None:
    write_files(tmp_path, EXISTING)

    outcome = run_step(
        QualityStep(), {"paths": ["app"], "exclude": ["app/legacy.py", "app/orders.py"]}, tmp_path
    )

    assert outcome.final.ok, outcome.log.text
    assert "quality: 2 files scanned" in outcome.log.text


def test_tools_from_path_without_the_tools_fails_with_the_install_hint(tmp_path: Path) -> None:
    write_files(tmp_path, EXISTING)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()

    outcome = run_step(
        QualityStep(), {"tools_from": "path"}, tmp_path, env=tools_env(str(empty_bin))
    )

    assert not outcome.ran.ok
    assert "lizard is not installed on the job's PATH" in outcome.ran.detail
    assert "pip install 'conveyor[scanners]'" in outcome.ran.detail
