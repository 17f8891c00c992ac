"""`conveyor vulndb status` says how old the advisories are, not only when they arrived."""

from __future__ import annotations

from datetime import UTC, datetime

from conftest import MakeProject, run_cli

SPEC = "version: 1\njobs:\n  hello:\n    run: echo hello\n"
ADVISORY = """\
id: TEST-1
modified: 2024-01-03T22:31:36Z
affected:
- package: {ecosystem: PyPI, name: some-package}
  versions: ["1.0"]
"""


def test_status_shows_the_newest_advisory_and_the_age_it_gives_the_database(
    git_project: MakeProject,
) -> None:
    project = git_project(SPEC)
    advisory = project.root.parent / "TEST-1.yaml"
    advisory.write_text(ADVISORY)
    assert run_cli(["vulndb", "import", str(advisory)], project.root).exit_code == 0

    text = run_cli(["vulndb", "status"], project.root)
    status = run_cli(["vulndb", "status", "-o", "json"], project.root).json()

    assert status["newest_advisory"] == "2024-01-03T22:31:36+00:00"
    days = (datetime.now(UTC) - datetime(2024, 1, 3, 22, 31, 36, tzinfo=UTC)).days
    assert (
        f"newest advisory 2024-01-03T22:31:36+00:00 ({days} days old: the database's age)"
        in text.stdout
    )
