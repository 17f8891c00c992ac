"""The gate in front of a deploy: nothing reaches an environment with `approval:` unless
an allowed person approved that digest; the pipeline's deploy step waits for them.

Real replicas and a real builtin router, stopped at teardown; the step runs by hand with
the environments a pipeline run lends it.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from approvals.conftest import Roster
from conftest import run_cli, wait_until
from conveyor.approvals.model import Refusal, Verdict
from conveyor.engine.executors.base import ExecResult
from conveyor.engine.executors.local import LocalExecutor
from conveyor.engine.step import StepContext
from conveyor.service import approvals as service
from conveyor.service import environments as envs
from conveyor.service.project import Project
from conveyor.service.step_environments import ProjectEnvironments
from conveyor.steps.deploy import DeployParams, DeployStep
from conveyor.store.records import EventKind, NewRun
from conveyor.store.store import Store
from deploy.apps import build_app
from steps.conftest import Lines

SPEC = """\
version: 1
jobs:
  noop: {{run: 'true'}}
environments:
  production:
    replicas: 1
    health:
      readiness: {{path: /healthz, interval: 100ms}}
    drain: 0.2s
    approval:
      required: 1
      roles: [reviewer]
      timeout: {timeout}
"""


@dataclass(frozen=True)
class Pipeline:
    project: Project
    store: Store
    roster: Roster
    image: str  # app@sha256:...
    workspace: Path

    def run(self) -> int:
        meta = NewRun(pipeline="shop", author="ada <ada@example.org>", actor="tom")
        return self.store.create_run(meta, [])

    def deploy_step(self, run_id: int, log: Lines) -> ExecResult:
        """The deploy job's never-cached phase, as the engine runs it for run `run_id`."""
        ctx = StepContext(
            job_id="deploy-production",
            workspace=self.workspace,
            env={"CONVEYOR_PROJECT_DIR": str(self.project.directory)},
            timeout=60,
            executor=LocalExecutor(),
            log=log,
            environments=ProjectEnvironments(self.project, run_id=run_id, actor="tom"),
        )
        params = DeployParams(environment="production")
        return asyncio.run(DeployStep().finalize(params, ctx, None))

    def decide_when_asked(
        self, run_id: int, who: str, verdict: Verdict, comment: str = ""
    ) -> threading.Thread:
        """Another person, elsewhere: once the run asks, they decide (from their own store)."""

        def decide() -> None:
            with Store(self.project.state_dir) as store:
                ledger = service.ledger_of(store)
                wait_until(lambda: ledger.requests(run_id=run_id), f"run {run_id}'s request")
                service.decide(
                    store,
                    self.roster.users_file,
                    run_id,
                    verdict,
                    service.Credentials.fresh(self.roster.tokens[who]),
                    comment=comment,
                )

        thread = threading.Thread(target=decide)
        thread.start()
        return thread

    def deploy_events(self) -> list[str]:
        kinds = (EventKind.DEPLOY_STARTED.value, EventKind.DEPLOY_FINISHED.value)
        return [event.kind for event in self.store.events() if event.kind in kinds]


def make_pipeline(tmp_path: Path, roster: Roster, timeout: str) -> Iterator[Pipeline]:
    root = tmp_path / "project"
    root.mkdir()
    (root / "conveyor.yml").write_text(textwrap.dedent(SPEC.format(timeout=timeout)))
    project = Project.locate(root / "conveyor.yml")
    project.ensure_state_dir()
    image = build_app(project, tmp_path, "v1")
    repository, digest = image.split("@")
    workspace = tmp_path / "workspace"
    record = workspace / ".conveyor-out" / "build" / "image.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"repository": repository, "digest": digest, "tags": []}))
    with project.open_store() as store:
        try:
            yield Pipeline(project, store, roster, image, workspace)
        finally:
            envs.stop_environment(project, store, "production")


@pytest.fixture
def pipeline(tmp_path: Path, roster: Roster) -> Iterator[Pipeline]:
    yield from make_pipeline(tmp_path, roster, "20s")  # a lost approver fails, not hangs


@pytest.fixture
def hasty(tmp_path: Path, roster: Roster) -> Iterator[Pipeline]:
    """A pipeline whose approvals time out after 300 ms."""
    yield from make_pipeline(tmp_path, roster, "300ms")


def test_a_deploy_to_a_gated_environment_without_approval_is_refused(pipeline: Pipeline) -> None:
    deployed = run_cli(["deploy", "production", pipeline.image], pipeline.project.directory)

    assert deployed.exit_code == 2
    assert "error: production needs an approval before a deploy" in deployed.stderr
    assert "it has no approved request" in deployed.stderr
    assert "conveyor approve RUN" in deployed.stderr
    assert pipeline.deploy_events() == []
    assert pipeline.store.ledger.environments.get("production") is None


@pytest.mark.real
def test_the_deploy_step_waits_for_an_approval_then_deploys(pipeline: Pipeline) -> None:
    run = pipeline.run()
    log = Lines()
    approver = pipeline.decide_when_asked(run, "bob", Verdict.APPROVE, "tested on staging")

    result = pipeline.deploy_step(run, log)
    approver.join()

    assert result.ok, result.detail
    assert f"waiting for 1 more approval by role reviewer: `conveyor approve {run}`" in log.text
    assert "approved by bob (1 of 1): tested on staging" in log.text
    assert pipeline.deploy_events() == ["deploy.started", "deploy.finished"]
    environment = pipeline.store.ledger.environments.get("production")
    assert environment is not None
    answer = httpx.get(f"http://127.0.0.1:{environment.port}/", timeout=5)
    assert answer.text == "v1"
    kinds = [entry.kind for entry in pipeline.store.audit_entries()]
    assert kinds[:2] == ["approval.requested", "approval.granted"]
    assert pipeline.store.audit_verify() == []


def test_a_rejection_fails_the_deploy_job_with_who_and_why(pipeline: Pipeline) -> None:
    run = pipeline.run()
    rejecter = pipeline.decide_when_asked(run, "bob", Verdict.REJECT, "not during the sale")

    result = pipeline.deploy_step(run, Lines())
    rejecter.join()

    assert not result.ok
    assert result.detail == "deploy to production rejected by bob: not during the sale"
    assert pipeline.deploy_events() == []


def test_no_approval_in_time_fails_the_job_and_a_late_approval_is_refused(hasty: Pipeline) -> None:
    run = hasty.run()

    result = hasty.deploy_step(run, Lines())

    assert not result.ok
    assert result.detail == "deploy to production rejected: no approval within 300ms"
    assert [e.run_id for e in hasty.store.events() if e.kind == "approval.expired"] == [run]
    with pytest.raises(service.ApprovalRefused) as late:
        service.decide(
            hasty.store,
            hasty.roster.users_file,
            run,
            Verdict.APPROVE,
            service.Credentials.fresh(hasty.roster.tokens["bob"]),
        )
    assert late.value.code is Refusal.TIMED_OUT
    assert hasty.deploy_events() == []
