"""The `Environments` a pipeline run lends its steps (engine/step.py).

A `deploy` job goes through the same service as `conveyor deploy` (admission policy,
promotion order, approval gate, smoke tests with rollback) and records its run as the
deploy's origin; `e2e`, `perf` and `dast` find what an environment serves in the store.
"""

from __future__ import annotations

import threading

from conveyor.engine.step import LiveRelease, Say
from conveyor.service.project import Project


class ProjectEnvironments:
    """The environments of one project, for the jobs of run `run_id` started by `actor`."""

    def __init__(self, project: Project, *, run_id: int | None, actor: str) -> None:
        self.project = project
        self.run_id = run_id
        self.actor = actor

    def await_approval(
        self, environment: str, *, repository: str, digest: str, say: Say, stop: threading.Event
    ) -> str | None:
        # Imported here: a run without a deploy job never loads the deploy service.
        from conveyor.service.approvals import gate
        from conveyor.service.environments import environment_spec

        approval = environment_spec(self.project, environment).approval
        with self.project.open_store() as store:
            outcome = gate(
                self.project,
                store,
                approval=approval,
                run_id=self.run_id,
                environment=environment,
                repository=repository,
                digest=digest,
                say=say,
                stop=stop,
            )
        if outcome is None:
            return None  # no approval gate
        if outcome.approved:
            say(f"{environment}: {outcome.message}")
            return None
        return f"deploy to {environment} {outcome.message}"

    def deploy(
        self, environment: str, image: str, *, say: Say, command_path: str | None
    ) -> str | None:
        from conveyor.service import environments
        from conveyor.states import DeployState

        with self.project.open_store() as store:
            outcome = environments.deploy(
                self.project,
                store,
                environment,
                image,
                actor=self.actor,
                run_id=self.run_id,
                progress=say,
                command_path=command_path,
            )
        say(f"{environment}: {outcome.release_id} {outcome.state.value} at {outcome.url}")
        if outcome.state is DeployState.SUCCEEDED:
            return None
        return f"deploy to {environment} {outcome.state.value}: {outcome.reason}"

    def live_release(self, environment: str) -> LiveRelease:
        from conveyor.service.environments import environment_spec
        from conveyor.verify.target import TargetUnavailable

        spec = environment_spec(self.project, environment)
        with self.project.open_store() as store:
            record = store.ledger.environments.get(environment)
            if record is None:
                raise TargetUnavailable(
                    f"{environment} has never been deployed, so there is nothing to test",
                    hint=f"a `deploy` job to {environment} must come first (`needs:`)",
                )
            if record.live_release is None:
                raise TargetUnavailable(
                    f"{environment} has no live release, so there is nothing to test"
                )
            release = store.ledger.releases.get(record.live_release)
        return LiveRelease(
            url=f"http://127.0.0.1:{record.port}",
            release_id=record.live_release,
            digest=release.digest if release else None,
            health_path=spec.health.readiness.path or "/",  # no path: any answer to /
        )
