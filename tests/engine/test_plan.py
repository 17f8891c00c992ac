"""Planner golden cases: each tests/engine/golden/*.yml is a spec, a git context and the plan.

A case holds `spec:` (a pipeline), `git:` (branch, tag, changed_files or null, optional
sha), optional `options:` (only, rerun), and either `expect:` (the plan in order, each
entry `id status` or `id status: reason fragment`) or `error:` (a fragment of the user
error). Optional `needs:`, `commands:`, `groups:` and `env:` map job ids to what the
planned job must carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.engine.plan import Plan, PlannedJob, PlanOptions, build_plan
from conveyor.engine.shell import ShellParams
from conveyor.errors import ConveyorError
from conveyor.spec.loader import parse_pipeline
from conveyor.steps.registry import STEP_PARAMS, STEPS
from conveyor.vcs.git import GitContext

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*.yml"))
_EXPECTED_LINE = re.compile(r"^(?P<id>\S+) (?P<status>[a-z]+)(?:: (?P<reason>.+))?$")


@dataclass(frozen=True)
class Expected:
    id: str
    status: str
    reason: str | None


def _git(data: dict[str, Any]) -> GitContext:
    changed = data.get("changed_files")
    return GitContext(
        root=Path("/nonexistent"),
        sha=data.get("sha", "c0ffee" * 6 + "c0ff"),
        branch=data.get("branch"),
        tag=data.get("tag"),
        author_name="Ada Lovelace",
        author_email="ada@example.org",
        message="a commit",
        committed_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        dirty=False,
        changed_files=None if changed is None else tuple(changed),
    )


def _options(data: dict[str, Any]) -> PlanOptions:
    rerun = data.get("rerun")
    return PlanOptions(
        only=tuple(data.get("only", ())),
        rerun=None if rerun is None else frozenset(rerun),
    )


def _plan(case: dict[str, Any], path: Path) -> Plan:
    loaded = parse_pipeline(
        yaml.safe_dump(case["spec"], sort_keys=False), str(path), steps=STEP_PARAMS
    )
    return build_plan(
        loaded.pipeline,
        loaded.step_params,
        _git(case["git"]),
        name=path.stem,
        steps=STEPS,
        options=_options(case.get("options", {})),
    )


def _expected(line: str) -> Expected:
    match = _EXPECTED_LINE.match(line)
    assert match is not None, f"bad expect line {line!r}"
    return Expected(match["id"], match["status"], match["reason"])


def _commands(job: PlannedJob) -> list[str]:
    assert isinstance(job.params, ShellParams)
    return list(job.params.commands)


@pytest.mark.parametrize("path", CASES, ids=[case.stem for case in CASES])
def test_golden_plan(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    if "error" in case:
        with pytest.raises(ConveyorError) as raised:
            _plan(case, path)
        assert case["error"] in str(raised.value)
        return
    plan = _plan(case, path)
    expected = [_expected(line) for line in case["expect"]]
    assert [(job.id, job.status.value) for job in plan.jobs] == [(e.id, e.status) for e in expected]
    for job, want in zip(plan.jobs, expected, strict=True):
        if want.reason is not None:
            assert want.reason in job.reason, f"{job.id}: {job.reason!r}"
    jobs = plan.by_id()
    for job_id, needs in case.get("needs", {}).items():
        assert list(jobs[job_id].needs) == needs
    for job_id, commands in case.get("commands", {}).items():
        assert _commands(jobs[job_id]) == commands
    for job_id, group in case.get("groups", {}).items():
        assert jobs[job_id].concurrency_group == group
    for job_id, env in case.get("env", {}).items():
        assert {key: jobs[job_id].env.get(key) for key in env} == env


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 10


def test_dependants_include_everything_downstream() -> None:
    case = yaml.safe_load((GOLDEN / "blocked_dependants.yml").read_text())
    plan = _plan(case, GOLDEN / "blocked_dependants.yml")
    assert plan.dependants({"docs"}) == {"docs", "publish-docs", "announce"}
    assert plan.dependants({"build"}) == {"build", "publish-docs", "announce", "test"}
