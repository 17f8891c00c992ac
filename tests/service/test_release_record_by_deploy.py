"""The release record is a deploy's, not a digest's: after a rollback, a digest deployed
again by hand carries the approval it was made under, the evidence of the run behind it
and the release it actually replaced.

The environment runs on the in-memory runtime and router of tests/deploy/fakes.py behind
the real service, controller, approvals and store: no process is started.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import run_cli
from conveyor.approvals.model import Verdict
from conveyor.approvals.users import add_user, issue_token
from conveyor.deploy.rollout import release_name
from conveyor.errors import ConveyorError
from conveyor.findings.reports import GateReport
from conveyor.service import approvals
from conveyor.service import environments as envs
from conveyor.service.project import Project
from conveyor.service.release_record import release_record, to_markdown
from conveyor.spec.environments import Approval
from conveyor.store.records import NewRun
from conveyor.store.store import Store
from deploy.apps import build_app, project_with_spec
from deploy.fake_plane import use_fake_plane

SPEC = """\
version: 1
jobs:
  noop: {run: 'true'}
environments:
  production:
    replicas: 1
    drain: 10ms
    health:
      readiness: {path: /healthz, interval: 100ms}
    approval:
      required: 1
      roles: [reviewer]
"""
AUTHOR = "Ada <ada@example.org>"


@dataclass(frozen=True)
class Production:
    project: Project
    store: Store
    users_file: Path
    token: str  # bob's, a reviewer

    def commit(self, message: str) -> str:
        git = ["git", "-C", str(self.project.directory), "-c", "user.name=Ada"]
        git += ["-c", "user.email=ada@example.org"]
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", message], check=True)
        head = subprocess.run(
            [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        )
        return head.stdout.strip()

    def run_that_built(self, image: str, commit: str, passed: bool = True) -> int:
        """A pipeline run at `commit` that built `image` and published a gate decision."""
        meta = NewRun(pipeline="shop", commit_sha=commit, branch="main", author=AUTHOR, actor="tom")
        run_id = self.store.create_run(meta, [])
        repository, digest = image.split("@")
        blob = self.store.blobs.put_report(b"{}")
        summary = {"repository": repository, "digest": digest, "tags": []}
        self.store.add_report(run_id, "image", "image", blob, summary)
        gate = GateReport(job="lint", gate="sast", passed=passed, reasons=[f"run at {commit}"])
        self.store.add_report(
            run_id, "lint", "gate", self.store.blobs.put_report(gate.to_bytes()), {}
        )
        return run_id

    def ask(self, run_id: int, image: str) -> None:
        repository, digest = image.split("@")
        approvals.request_approval(
            self.store,
            run_id=run_id,
            environment="production",
            repository=repository,
            digest=digest,
            approval=Approval.model_validate({"roles": ["reviewer"]}),
        )

    def decide(self, run_id: int, verdict: Verdict = Verdict.APPROVE) -> None:
        credentials = approvals.Credentials.fresh(self.token)
        approvals.decide(self.store, self.users_file, run_id, verdict, credentials)

    def deploy(self, image: str, run_id: int | None, actor: str = "tom") -> str:
        outcome = envs.deploy(
            self.project, self.store, "production", image, actor=actor, run_id=run_id
        )
        assert outcome.state.value == "succeeded", outcome.reason
        return outcome.release_id


@pytest.fixture
def production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Production]:
    project = project_with_spec(tmp_path / "project", SPEC)
    subprocess.run(["git", "init", "-q", str(project.directory)], check=True)
    use_fake_plane(monkeypatch)
    users_file = tmp_path / "users.yml"
    add_user(users_file, "bob", "bob@example.org", ["reviewer"], [])
    token = issue_token(users_file, "bob", None, datetime.now(UTC)).token
    with project.open_store() as store:
        yield Production(project, store, users_file, token)


def release_of(image: str) -> str:
    repository, digest = image.split("@")
    return release_name("production", repository, digest)


def test_a_redeploy_after_a_rollback_carries_its_approval_run_and_replaced_release(
    production: Production, tmp_path: Path
) -> None:
    """The reported sequence: deploy approved A, deploy approved B, roll back to A, deploy
    B again by hand."""
    image_a = build_app(production.project, tmp_path, "v1")
    image_b = build_app(production.project, tmp_path, "v2")
    first, second = production.commit("first"), production.commit("second")
    run_a = production.run_that_built(image_a, first)
    run_b = production.run_that_built(image_b, second)
    for run_id, image in ((run_a, image_a), (run_b, image_b)):
        production.ask(run_id, image)
        production.decide(run_id)
    production.deploy(image_a, run_a)
    production.deploy(image_b, run_b)
    envs.rollback(production.project, production.store, "production", actor="ops")

    production.deploy(image_b, None, actor="ops")
    record = release_record(production.project, production.store, "production")

    release = record["release"]
    assert (release["id"], release["deployed_by"], release["deployed_from_run"]) == (
        release_of(image_b),
        "ops",
        None,
    )
    assert record["previous_release"] == release_of(image_a)  # what it replaced, not itself
    assert record["run"]["id"] == run_b
    assert record["run"]["source"] == "asked for the approval it was deployed under"
    assert [commit["sha"] for commit in record["commits"]] == [second]
    assert [gate["reasons"] for gate in record["gates"]] == [[f"run at {second}"]]
    assert record["approval_required"] is True
    approval = record["approval"]
    assert (approval["run_id"], approval["approved_by"], approval["reused"]) == (
        run_b,
        ["bob"],
        True,
    )
    kinds = [event["kind"] for event in record["approvals"]]
    assert kinds == ["approval.requested", "approval.granted"]
    markdown = to_markdown(record)
    assert "no approval was required" not in markdown
    assert f"deployed under the approval of run {run_b}'s request, by bob" in markdown
    assert "(reused:" in markdown
    assert f"- **Previous release:** {release_of(image_a)}" in markdown


def test_each_deploy_of_a_digest_has_its_own_record(production: Production, tmp_path: Path) -> None:
    image_a = build_app(production.project, tmp_path, "v1")
    image_b = build_app(production.project, tmp_path, "v2")
    first, second = production.commit("first"), production.commit("second")
    run_a = production.run_that_built(image_a, first)
    run_b = production.run_that_built(image_b, second)
    for run_id, image in ((run_a, image_a), (run_b, image_b)):
        production.ask(run_id, image)
        production.decide(run_id)
    production.deploy(image_a, run_a)
    production.deploy(image_b, run_b)
    envs.rollback(production.project, production.store, "production", actor="ops")
    production.deploy(image_b, None, actor="ops")
    deploys = production.store.ledger.deploys.of_environment("production")

    records = [
        release_record(production.project, production.store, "production", deploy_id=d.id)
        for d in deploys
    ]

    assert [r["release"]["deploy_id"] for r in records] == [d.id for d in deploys]
    assert [r["previous_release"] for r in records] == [
        None,
        release_of(image_a),
        release_of(image_a),
    ]
    assert [r["run"]["id"] for r in records] == [run_a, run_b, run_b]
    assert [r["approval"]["reused"] for r in records] == [False, False, True]
    # The first deploy brings every commit up to its own (nothing was live before it).
    assert [c["sha"] for c in records[0]["commits"]] == [first]
    # A release id alone names its latest deploy.
    latest = release_record(production.project, production.store, "production", release_of(image_b))
    assert latest["release"]["deploy_id"] == deploys[-1].id


def test_a_redeploy_is_refused_once_a_newer_request_for_the_digest_was_rejected(
    production: Production, tmp_path: Path
) -> None:
    """An approval is for one digest and one environment, and holds for its redeploys
    until someone rejects that digest there again."""
    image_a = build_app(production.project, tmp_path, "v1")
    image_b = build_app(production.project, tmp_path, "v2")
    commit = production.commit("first")
    run_a = production.run_that_built(image_a, commit)
    run_b = production.run_that_built(image_b, commit)
    for run_id, image in ((run_a, image_a), (run_b, image_b)):
        production.ask(run_id, image)
        production.decide(run_id)
    production.deploy(image_a, run_a)
    production.deploy(image_b, run_b)
    envs.rollback(production.project, production.store, "production", actor="ops")
    run_again = production.run_that_built(image_b, commit)
    production.ask(run_again, image_b)
    production.decide(run_again, Verdict.REJECT)

    with pytest.raises(ConveyorError, match="was rejected by bob"):
        production.deploy(image_b, None, actor="ops")

    live = production.store.ledger.environments.get("production")
    assert live is not None and live.live_release == release_of(image_a)


def test_a_hand_deploy_without_an_approval_run_takes_the_run_that_built_its_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staging has no approval: the evidence of a hand deploy is the newest run that
    published its image."""
    staging_spec = SPEC.replace("production", "staging").split("    approval:")[0]
    project = project_with_spec(tmp_path / "project", staging_spec)
    subprocess.run(["git", "init", "-q", str(project.directory)], check=True)
    use_fake_plane(monkeypatch)
    image = build_app(project, tmp_path, "v1")
    with project.open_store() as store:
        staging = Production(project, store, tmp_path / "none.yml", "")
        commit = staging.commit("first")
        run_id = staging.run_that_built(image, commit)
        envs.deploy(project, store, "staging", image, actor="ops")

        record = release_record(project, store, "staging")

    assert record["run"]["id"] == run_id
    assert record["run"]["source"] == "built its image"
    assert record["approval"] is None and record["approval_required"] is False
    assert "- none: no approval was required" in to_markdown(record)


def test_the_cli_exports_one_deploy_and_refuses_an_unknown_one(
    production: Production, tmp_path: Path
) -> None:
    image = build_app(production.project, tmp_path, "v1")
    run_id = production.run_that_built(image, production.commit("first"))
    production.ask(run_id, image)
    production.decide(run_id)
    production.deploy(image, run_id)
    [deploy] = production.store.ledger.deploys.of_environment("production")

    found = run_cli(
        ["release", "record", "production", "--deploy", str(deploy.id), "--format", "json"],
        production.project.directory,
    )
    unknown = run_cli(
        ["release", "record", "production", "--deploy", "999"], production.project.directory
    )

    assert found.exit_code == 0, found.stderr
    assert found.json()["release"]["deploy_id"] == deploy.id
    assert unknown.exit_code != 0
    assert "production has no deploy 999" in unknown.stderr
    assert "Traceback" not in unknown.stderr
