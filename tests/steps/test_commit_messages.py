"""The `commit-messages` gate in real pipeline runs on a real git repository: it checks the
commits a run brings in since the branch's last successful run, names each one that is
not Conventional or links no requirement, and records its decision as a gate report."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import GitProject, MakeProject
from conveyor.findings.reports import GateReport, load
from conveyor.states import JobState, RunState

SPEC = """\
version: 1
jobs:
  commit-messages:
    uses: commit-messages
"""
LENIENT = """\
version: 1
jobs:
  commit-messages:
    uses: commit-messages
    with: {require_link: false, types: [feat, fix, chore]}
"""


def gate_of(repo: GitProject, run_id: int) -> GateReport:
    with repo.store() as store:
        [record] = store.reports(run_id, "gate")
        return load(GateReport, store.blobs.get_bytes(record.digest), record.job_id)


def test_a_linked_conventional_commit_passes(git_project: MakeProject) -> None:
    repo = git_project(SPEC)
    repo.commit(message="feat(cart): add a checkout\n\nRefs PROJ-45")

    outcome = repo.run()

    assert outcome.state is RunState.SUCCESS
    gate = gate_of(repo, outcome.run_id)
    assert (gate.gate, gate.passed, gate.counts["commits"]) == ("commit-messages", True, 1)


def test_each_failing_commit_since_the_last_successful_run_is_named(
    git_project: MakeProject,
) -> None:
    repo = git_project(SPEC)
    repo.commit(message="chore: start\n\nRefs REQ-1")
    assert repo.run().state is RunState.SUCCESS
    unlinked = repo.commit(message="fix: a crash")
    prose = repo.commit(message="Update things\n\nFixes #12")
    repo.commit(message="feat: fine\n\nCloses #13")

    outcome = repo.run()

    assert outcome.state is RunState.FAILED
    job = repo.jobs(outcome.run_id)["commit-messages"]
    assert job.state is JobState.FAILED
    gate = gate_of(repo, outcome.run_id)
    assert not gate.passed
    assert gate.counts == {"commits": 3, "not_conventional": 1, "unlinked": 1}
    assert [reason[:12] for reason in gate.reasons] == [prose[:12], unlinked[:12]]
    assert "'Update things': not a Conventional Commits header" in gate.reasons[0]
    assert "'fix: a crash': links no requirement or defect" in gate.reasons[1]
    log = repo.log(outcome.run_id, "commit-messages")
    assert "commit-messages: 1/3 commits pass" in log
    assert f"✗ {unlinked[:12]}" in log


def test_types_and_the_link_rule_are_configurable(git_project: MakeProject) -> None:
    repo = git_project(LENIENT)
    repo.commit(message="docs: a type not allowed here")

    outcome = repo.run()

    gate = gate_of(repo, outcome.run_id)
    assert not gate.passed
    assert gate.reasons[0].endswith(
        "type 'docs' is not one of chore, feat, fix (Conventional Commits)"
    )


def test_merge_commits_git_wrote_are_not_checked(git_project: MakeProject) -> None:
    repo = git_project(SPEC)
    repo.commit(message="chore: start\n\nRefs REQ-1")
    assert repo.run().state is RunState.SUCCESS
    repo.git("checkout", "-q", "-b", "topic")
    repo.commit({"a.txt": "a"}, message="feat: topic work\n\nRefs REQ-2")
    repo.git("checkout", "-q", "main")
    repo.commit({"b.txt": "b"}, message="fix: main work\n\nFixes #3")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge branch 'topic'", "topic")

    outcome = repo.run()

    gate = gate_of(repo, outcome.run_id)
    assert gate.passed, gate.reasons
    assert gate.counts["commits"] == 2


def test_a_hostile_message_is_one_clear_reason(git_project: MakeProject, tmp_path: Path) -> None:
    repo = git_project(SPEC)
    message = tmp_path / "message.txt"
    message.write_text("(" * 300_000 + "\n\n" + "Fixes " * 100_000)
    repo.git("commit", "-q", "--allow-empty", "-F", str(message))

    outcome = repo.run()

    gate = gate_of(repo, outcome.run_id)
    assert not gate.passed and len(gate.reasons) == 1
    assert len(json.dumps(gate.reasons)) < 1_000
