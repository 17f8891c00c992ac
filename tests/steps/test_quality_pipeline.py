"""The quality gate through `conveyor run`: a project adopts it on code that already has a
complex function and a copied block (`conveyor baseline accept`), then a change adding
one of each is stopped, with file, line and rule, until a waiver lets it through."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

from conftest import GitProject, MakeProject, run_cli
from steps.quality_code import CHANGE, EXISTING

SPEC = """\
version: 1
gates:
  quality:
    max_complexity: 10
    min_duplicate_lines: 6
jobs:
  quality:
    uses: quality
    with: {paths: [app]}
"""


@pytest.fixture
def project(git_project: MakeProject, monkeypatch: pytest.MonkeyPatch) -> GitProject:
    monkeypatch.setenv("CONVEYOR_ACTOR", "dana@example.com")
    return git_project(SPEC, EXISTING)


def test_existing_code_is_accepted_and_only_the_new_offences_block(project: GitProject) -> None:
    assert run_cli(["run", "-q"], project.root).exit_code == 1  # day one: all is new
    accepted = run_cli(["baseline", "accept", "--reason", "adopting quality"], project.root)
    assert accepted.exit_code == 0, accepted.stderr
    assert "accepted 2 findings of run 1" in accepted.stdout
    project.commit(message="accept the existing complexity and copies")
    assert run_cli(["run", "-q"], project.root).exit_code == 0

    project.commit(CHANGE, "refunds")
    blocked = run_cli(["run", "-q"], project.root)

    assert blocked.exit_code == 1
    log = project.log(3, "quality")
    assert re.search(
        r"✗ app/refunds\.py:13: error quality/complexity \[lizard\] refundable has a "
        r"cyclomatic complexity of 11 \(max 10\) \(new, fingerprint [0-9a-f]{16}\)",
        log,
    ), log
    assert re.search(
        r"✗ app/refunds\.py:4: error quality/duplication \[jscpd\] 7 lines \(\d+ tokens\) "
        r"copied from app/invoices\.py:4-10",
        log,
    ), log
    assert "app/legacy.py" not in log.partition("✗")[2]  # accepted: reported, not blocking

    waivers = re.findall(r"    (- \{fingerprint: [0-9a-f]{16}, .*\})", log)
    assert len(waivers) == 2
    expires = (date.today() + timedelta(days=3)).isoformat()
    dated = [re.sub(r"expires: [0-9-]+", f"expires: {expires}", line) for line in waivers]
    project.commit({".conveyor/exceptions.yml": "exceptions:\n  " + "\n  ".join(dated) + "\n"})
    assert run_cli(["run", "-q"], project.root).exit_code == 0


def test_main_s_last_green_run_is_the_baseline_of_a_branch(project: GitProject) -> None:
    # main measures without blocking (report only), so its run is green with the offences
    project.commit({"conveyor.yml": SPEC.replace("[app]}", "[app], fail_on: never}")}, "report")
    assert run_cli(["run", "-q"], project.root).exit_code == 0
    project.git("switch", "-q", "-c", "feature/refunds")

    project.commit({**CHANGE, "conveyor.yml": SPEC}, "refunds; the gate blocks again")

    assert run_cli(["run", "-q"], project.root).exit_code == 1
    # the same commit again: the measurement comes from the cache, the gate decides anew
    assert run_cli(["run", "-q"], project.root).exit_code == 1
    rerun = project.log(3, "quality")
    assert "cache hit: outputs of run 2 restored" in rerun, rerun  # not measured again
    assert "gate quality: BLOCKED (2 new, 2 unchanged)" in rerun, rerun
    report = run_cli(["report", "-o", "json"], project.root)
    assert report.exit_code == 0, report.stderr
    gates = [g for g in report.json()["gates"] if g["job"] == "quality"]
    blocking = sorted(reason.split(": ")[0] for reason in gates[0]["reasons"])
    assert blocking == ["app/refunds.py:13", "app/refunds.py:4"]  # not legacy, not orders
