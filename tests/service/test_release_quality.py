"""Quality trends in the release record: the complexity, duplication and coverage the run
behind a release recorded, beside the release it replaced, in the JSON (the API returns
the same) and the Markdown of `conveyor release record`.

The environment runs on the in-memory data plane of tests/deploy/fake_plane.py behind the
real service, controller and store: no process is started.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_cli
from conveyor.findings.reports import (
    ComplexitySummary,
    CoverageDocument,
    DuplicationSummary,
    QualityReport,
)
from conveyor.service import environments as envs
from conveyor.service.project import Project
from conveyor.service.release_record import release_record, to_markdown
from conveyor.store.records import NewRun
from conveyor.store.store import Store
from deploy.apps import ONE_REPLICA_STAGING, build_app, project_with_spec
from deploy.fake_plane import use_fake_plane

SPEC = ONE_REPLICA_STAGING


@dataclass(frozen=True)
class Staging:
    project: Project
    store: Store

    def run_with(self, mean: float, ratio: float | None, coverage: float | None) -> int:
        """A run that recorded a quality report (and a coverage report, if given)."""
        meta = NewRun(pipeline="p", commit_sha=None, branch="main", author="a", actor="tom")
        run_id = self.store.create_run(meta, [])
        report = QualityReport(
            job="quality",
            tools={"lizard": "1.24.3", "jscpd": "5.4.2"},
            complexity=ComplexitySummary(
                functions=40, mean=mean, max=9, threshold=10, over_threshold=0
            ),
            duplication=DuplicationSummary(
                files=8, lines=900, duplicated_lines=int(9 * (ratio or 0)), ratio=ratio
            ),
            passed=True,
        )
        self._add(run_id, "quality", "quality", report.to_bytes())
        if coverage is not None:
            document = CoverageDocument(job="unit-tests", total_percent=coverage)
            self._add(run_id, "unit-tests", "coverage", document.to_bytes())
        return run_id

    def _add(self, run_id: int, job: str, kind: str, content: bytes) -> None:
        self.store.add_report(run_id, job, kind, self.store.blobs.put_report(content), {})

    def deploy(self, image: str, run_id: int) -> str:
        outcome = envs.deploy(
            self.project, self.store, "staging", image, actor="tom", run_id=run_id
        )
        assert outcome.state.value == "succeeded", outcome.reason
        return outcome.release_id


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Staging]:
    project = project_with_spec(tmp_path / "project", SPEC)
    subprocess.run(["git", "init", "-q", str(project.directory)], check=True)
    use_fake_plane(monkeypatch)
    with project.open_store() as store:
        yield Staging(project, store)


def test_a_release_shows_its_quality_beside_the_previous_releases(
    staging: Staging, tmp_path: Path
) -> None:
    first = staging.deploy(
        build_app(staging.project, tmp_path, "v1"), staging.run_with(3.1, 1.5, 88.0)
    )
    second_run = staging.run_with(3.4, 2.25, 86.5)
    second = staging.deploy(build_app(staging.project, tmp_path, "v2"), second_run)

    quality = release_record(staging.project, staging.store, "staging")["quality"]

    assert quality["run"] == second_run
    [job] = quality["jobs"]
    assert (job["job"], job["passed"]) == ("quality", True)
    assert (job["complexity"]["mean"], job["complexity"]["max"]) == (3.4, 9)
    assert job["duplication"]["ratio"] == 2.25
    assert quality["coverage"] == [{"job": "unit-tests", "total_percent": 86.5}]
    previous = quality["previous"]
    assert previous["release"] == first
    assert previous["jobs"][0]["complexity"]["mean"] == 3.1
    assert previous["coverage"] == [{"job": "unit-tests", "total_percent": 88.0}]
    markdown = to_markdown(release_record(staging.project, staging.store, "staging"))
    assert f"| figure | this release | previous ({first}) |" in markdown
    assert "| quality: complexity mean / max | 3.4 / 9 | 3.1 / 9 |" in markdown
    assert "| quality: duplicated lines | 2.25% (20 of 900) | 1.5% (13 of 900) |" in markdown
    assert "| unit-tests: line coverage | 86.5% | 88.0% |" in markdown
    assert second != first


def test_a_first_release_without_quality_reports_says_none_were_recorded(
    staging: Staging, tmp_path: Path
) -> None:
    meta = NewRun(pipeline="p", commit_sha=None, branch="main", author="a", actor="tom")
    run_id = staging.store.create_run(meta, [])
    staging.deploy(build_app(staging.project, tmp_path, "v1"), run_id)

    record = release_record(staging.project, staging.store, "staging")

    assert record["quality"] == {"run": run_id, "jobs": [], "coverage": [], "previous": None}
    assert "## Quality\n\n- none recorded" in to_markdown(record)


def test_the_cli_prints_the_trends_as_json(staging: Staging, tmp_path: Path) -> None:
    staging.deploy(build_app(staging.project, tmp_path, "v1"), staging.run_with(2.0, None, None))

    shown = run_cli(["release", "record", "staging", "--format", "json"], staging.project.directory)

    assert shown.exit_code == 0, shown.stderr
    [job] = shown.json()["quality"]["jobs"]
    assert job["duplication"]["ratio"] is None  # nothing measured is not 0%
    assert job["complexity"]["mean"] == 2.0
