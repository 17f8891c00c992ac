"""`.conveyor/exceptions.yml` on real scans: waivers, expiry, and mistakes in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import SpecError
from conveyor.steps.lint import LintStep
from steps.conftest import Outcome, run_step, write_files

APP = "import os\n\n\ndef greet(name):\n    return f'hello {name}' + suffix\n"
EXCEPTIONS = ".conveyor/exceptions.yml"


def lint_with_exceptions(root: Path, exceptions: str) -> Outcome:
    write_files(root, {"app/greet.py": APP, EXCEPTIONS: exceptions})
    return run_step(LintStep(), {}, root)


def fingerprint_of(root: Path, rule: str) -> str:
    write_files(root, {"app/greet.py": APP})
    findings = run_step(LintStep(), {}, root).findings
    return next(f.fingerprint for f in findings if f.rule_id == rule)


def test_waived_findings_are_suppressed_in_the_sarif_and_do_not_block(tmp_path: Path) -> None:
    unused_import = fingerprint_of(tmp_path, "F401")
    outcome = lint_with_exceptions(
        tmp_path,
        f"""\
exceptions:
  - fingerprint: {unused_import}
    reason: re-exported for the plugin loader
    owner: dana@example.com
    expires: 2099-12-31
  - rule: F821
    path: "app/**"
    reason: defined by the template engine at run time
    owner: lee@example.com
    expires: 2099-06-30
""",
    )

    assert outcome.final.ok, outcome.log.text
    assert "gate lint: passed (2 waived)" in outcome.final.detail
    suppressions = {
        result["ruleId"]: result["suppressions"] for result in outcome.sarif["runs"][0]["results"]
    }
    assert suppressions["F401"] == [
        {
            "kind": "external",
            "status": "accepted",
            "justification": "re-exported for the plugin loader",
            "location": {"physicalLocation": {"artifactLocation": {"uri": EXCEPTIONS}}},
            "properties": {
                "owner": "dana@example.com",
                "expires": "2099-12-31",
                "source": f"{EXCEPTIONS}:2",
            },
        }
    ]
    assert suppressions["F821"][0]["status"] == "accepted"
    assert suppressions["F821"][0]["properties"]["source"] == f"{EXCEPTIONS}:6"


def test_a_rule_waiver_for_another_path_does_not_apply(tmp_path: Path) -> None:
    outcome = lint_with_exceptions(
        tmp_path,
        """\
exceptions:
  - rule: F821
    path: "legacy/**"
    reason: old code, rewritten in SHOP-7
    owner: lee@example.com
    expires: 2099-06-30
""",
    )

    assert not outcome.final.ok
    assert {f.disposition.value for f in outcome.findings} == {"new"}


def test_an_expired_waiver_blocks_and_says_so(tmp_path: Path) -> None:
    outcome = lint_with_exceptions(
        tmp_path,
        """\
exceptions:
  - rule: F401
    reason: re-exported for the plugin loader
    owner: dana@example.com
    expires: 2024-01-31
  - rule: F821
    reason: defined by the template engine at run time
    owner: lee@example.com
    expires: 2099-06-30
""",
    )

    assert not outcome.final.ok
    expired = next(f for f in outcome.findings if f.rule_id == "F401")
    assert outcome.gate_reasons == [
        "app/greet.py:1: error F401 [ruff] `os` imported but unused "
        f"(waiver expired 2024-01-31 ({EXCEPTIONS}:2), fingerprint {expired.fingerprint[:16]})"
    ]
    assert "waiver expired" in outcome.final.detail
    results = {r["ruleId"]: r for r in outcome.sarif["runs"][0]["results"]}
    assert results["F401"]["suppressions"][0]["status"] == "rejected"
    assert results["F821"]["suppressions"][0]["status"] == "accepted"


@pytest.mark.parametrize(
    ("entry", "line", "message"),
    [
        (
            "  - rule: F401\n    reason: kept on purpose\n    expires: 2099-12-31\n",
            2,
            "owner",
        ),
        (
            "  - rule: F401\n    reason: kept on purpose\n    owner: dana@example.com\n"
            "    expires: 31/12/2026\n",
            5,
            "expected a date as YYYY-MM-DD, got '31/12/2026'",
        ),
    ],
    ids=["missing-owner", "day-first-date"],
)
def test_a_bad_entry_is_a_spec_error_at_its_line(
    tmp_path: Path, entry: str, line: int, message: str
) -> None:
    with pytest.raises(SpecError) as raised:
        lint_with_exceptions(tmp_path, "exceptions:\n" + entry)

    error = raised.value
    assert (error.file, error.line) == (EXCEPTIONS, line)
    assert message in str(error)
    assert str(error).startswith(f"{EXCEPTIONS}:{line}")
