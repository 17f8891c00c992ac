"""The scheduler, through whole runs on real git repositories.

Jobs append `start ID` / `end ID` lines to a shared file ($MARKERS); the order of the
lines, not their timing, shows what overlapped.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliProcess, GitProject, MakeProject, wait_until
from conveyor.errors import NotFoundError
from conveyor.states import FailureClass, JobState, RunState

# `bash mark.sh N`: record the start, wait until N jobs have started, record the end.
MARK_SH = """\
echo "start ${MARK_ID:-$CONVEYOR_JOB}" >> "$MARKERS"
for _ in $(seq 1 600); do
  [ "$(grep -c '^start' "$MARKERS")" -ge "${1:-0}" ] && break
  sleep 0.05
done
echo "end ${MARK_ID:-$CONVEYOR_JOB}" >> "$MARKERS"
"""
# `bash hold.sh`: like mark.sh, but waits for the file $GATE to exist instead.
HOLD_SH = """\
echo "start $CONVEYOR_RUN_ID" >> "$MARKERS"
for _ in $(seq 1 600); do
  [ -f "$GATE" ] && break
  sleep 0.05
done
echo "end $CONVEYOR_RUN_ID" >> "$MARKERS"
"""


@pytest.fixture
def markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "markers.txt"
    path.touch()
    monkeypatch.setenv("MARKERS", str(path))
    return path


def marker_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def max_overlap(lines: list[str]) -> int:
    running = peak = 0
    for line in lines:
        running += 1 if line.startswith("start ") else -1
        peak = max(peak, running)
    return peak


def test_parallelism_bounds_how_many_jobs_run_at_once(
    git_project: MakeProject, markers: Path
) -> None:
    # Each job waits until two jobs have started: with two slots that happens at once.
    jobs = "".join(f"  job{n}:\n    run: bash mark.sh 2\n" for n in range(5))
    project = git_project(f"version: 1\njobs:\n{jobs}", {"mark.sh": MARK_SH})

    outcome = project.run(parallelism=2)

    assert outcome.state is RunState.SUCCESS
    lines = marker_lines(markers)
    assert sorted(lines) == sorted(f"{kind} job{n}" for n in range(5) for kind in ("start", "end"))
    assert max_overlap(lines) == 2


def test_parallelism_of_one_runs_jobs_one_after_another(
    git_project: MakeProject, markers: Path
) -> None:
    jobs = "".join(f"  job{n}:\n    run: bash mark.sh\n" for n in range(3))
    project = git_project(f"version: 1\njobs:\n{jobs}", {"mark.sh": MARK_SH})

    assert project.run(parallelism=1).state is RunState.SUCCESS

    assert max_overlap(marker_lines(markers)) == 1


def test_jobs_start_only_after_everything_they_need_ended(
    git_project: MakeProject, markers: Path
) -> None:
    project = git_project(
        """\
        version: 1
        jobs:
          package:
            needs: [test, lint]
            run: bash mark.sh
          test:
            needs: [build]
            run: bash mark.sh
          build:
            run: bash mark.sh
          lint:
            run: bash mark.sh
        """,
        {"mark.sh": MARK_SH},
    )

    assert project.run(parallelism=4).state is RunState.SUCCESS

    lines = marker_lines(markers)
    assert lines.index("end build") < lines.index("start test")
    assert lines.index("end test") < lines.index("start package")
    assert lines.index("end lint") < lines.index("start package")


def test_a_failing_job_blocks_its_dependants_and_the_rest_still_runs(
    git_project: MakeProject, markers: Path
) -> None:
    project = git_project(
        """\
        version: 1
        jobs:
          broken:
            run: exit 7
          after-broken:
            needs: [broken]
            run: bash mark.sh
          after-that:
            needs: [after-broken]
            run: bash mark.sh
          independent:
            run: bash mark.sh
        """,
        {"mark.sh": MARK_SH},
    )

    outcome = project.run()

    assert outcome.state is RunState.FAILED
    assert outcome.jobs == {
        "broken": JobState.FAILED,
        "after-broken": JobState.BLOCKED,
        "after-that": JobState.BLOCKED,
        "independent": JobState.SUCCESS,
    }
    jobs = project.jobs(outcome.run_id)
    assert (jobs["broken"].exit_code, jobs["broken"].failure) == (7, FailureClass.EXIT_CODE)
    assert jobs["after-broken"].detail == "needs 'broken', which failed"
    assert (jobs["after-that"].detail or "").startswith("needs 'after-broken'")
    assert project.run_record(outcome.run_id).state is RunState.FAILED
    assert marker_lines(markers) == ["start independent", "end independent"]


def test_jobs_blocked_by_a_rule_skip_do_not_fail_the_run(git_project: MakeProject) -> None:
    project = git_project(
        """\
        version: 1
        jobs:
          build:
            run: "true"
          deploy:
            needs: [build]
            if: {tag: ["v*"]}
            run: "true"
          smoke:
            needs: [deploy]
            run: "true"
        """
    )

    outcome = project.run()

    assert outcome.jobs == {
        "build": JobState.SUCCESS,
        "deploy": JobState.SKIPPED,
        "smoke": JobState.BLOCKED,
    }
    assert outcome.state is RunState.SUCCESS


# --- concurrency groups across runs (separate processes) ---------------------------

GROUP_SPEC = """\
version: 1
jobs:
  deploy:
    cache: false
    concurrency: {concurrency}
    run: bash hold.sh
"""
StartCli = Callable[..., CliProcess]


def _job_state(project: GitProject, run_id: int, job_id: str) -> JobState | None:
    try:
        return project.jobs(run_id)[job_id].state
    except (NotFoundError, KeyError):
        return None


def _start_run(
    start_cli: StartCli, project: GitProject, gate: Path, run_id: int, until: JobState
) -> CliProcess:
    process = start_cli(["run", "-q"], project.root, {"GATE": str(gate)})
    wait_until(
        lambda: _job_state(project, run_id, "deploy") is until,
        f"deploy of run {run_id} to be {until}",
    )
    return process


def test_concurrency_group_runs_jobs_of_concurrent_runs_one_at_a_time_in_order(
    git_project: MakeProject, start_cli: StartCli, markers: Path, tmp_path: Path
) -> None:
    project = git_project(GROUP_SPEC.format(concurrency="production"), {"hold.sh": HOLD_SH})
    gate = tmp_path / "gate"

    first = _start_run(start_cli, project, gate, 1, JobState.RUNNING)
    second = _start_run(start_cli, project, gate, 2, JobState.WAITING)
    third = _start_run(start_cli, project, gate, 3, JobState.WAITING)
    gate.touch()

    assert [first.finish(), second.finish(), third.finish()] == [0, 0, 0]
    assert marker_lines(markers) == [
        "start 1",
        "end 1",
        "start 2",
        "end 2",
        "start 3",
        "end 3",
    ]


def test_supersede_replaces_a_queued_run_with_the_newest(
    git_project: MakeProject, start_cli: StartCli, markers: Path, tmp_path: Path
) -> None:
    spec = GROUP_SPEC.format(concurrency="{group: production, supersede: true}")
    project = git_project(spec, {"hold.sh": HOLD_SH})
    gate = tmp_path / "gate"

    first = _start_run(start_cli, project, gate, 1, JobState.RUNNING)
    second = _start_run(start_cli, project, gate, 2, JobState.WAITING)
    third = start_cli(["run", "-q"], project.root, {"GATE": str(gate)})
    wait_until(
        lambda: _job_state(project, 2, "deploy") is JobState.SUPERSEDED,
        "run 2 to be superseded",
    )
    gate.touch()

    assert first.finish() == 0
    assert third.finish() == 0
    assert second.finish() != 0
    assert marker_lines(markers) == ["start 1", "end 1", "start 3", "end 3"]
    superseded = project.jobs(2)["deploy"]
    assert "a newer run took its place in concurrency group 'production'" in (
        superseded.detail or ""
    )
    assert project.run_record(2).state is RunState.CANCELLED


def test_a_run_cancelled_while_queued_gives_up_its_place(
    git_project: MakeProject, start_cli: StartCli, markers: Path, tmp_path: Path
) -> None:
    project = git_project(GROUP_SPEC.format(concurrency="production"), {"hold.sh": HOLD_SH})
    gate = tmp_path / "gate"
    first = _start_run(start_cli, project, gate, 1, JobState.RUNNING)
    second = _start_run(start_cli, project, gate, 2, JobState.WAITING)
    third = _start_run(start_cli, project, gate, 3, JobState.WAITING)

    second.popen.send_signal(signal.SIGINT)
    assert second.finish() == 130
    gate.touch()

    assert [first.finish(), third.finish()] == [0, 0]
    assert marker_lines(markers) == ["start 1", "end 1", "start 3", "end 3"]
    assert project.jobs(2)["deploy"].state is JobState.CANCELLED
    assert project.run_record(2).state is RunState.CANCELLED
