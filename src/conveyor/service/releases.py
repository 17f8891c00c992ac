"""Progressive releases under the CLI: where a release stands, and a person's commands.

A command (promote, abort, pause, resume) is an event for the deploy in progress; the
controller running that deploy reads it at its next interval. Nothing here waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conveyor.deploy.progress import CanaryProgress, load_progress
from conveyor.errors import ConveyorError
from conveyor.service.environments import environment_spec
from conveyor.service.project import Project
from conveyor.states import DeployState
from conveyor.store.ledger import DeployRecord
from conveyor.store.records import EventKind
from conveyor.store.store import Store

COMMANDS = ("promote", "abort", "pause", "resume")


@dataclass(frozen=True)
class ReleaseStatus:
    environment: str
    deploy: DeployRecord | None  # the deploy in progress, else the latest one
    in_progress: bool
    progress: CanaryProgress | None  # None: the deploy recorded none (not progressive)
    decisions: list[dict[str, Any]]  # the judge's recorded verdicts, newest last
    # Each release hook of the deploy as it last stood (running, or its result), in order.
    hooks: list[dict[str, Any]] = field(default_factory=list)


def release_status(project: Project, store: Store, name: str, last: int = 10) -> ReleaseStatus:
    environment_spec(project, name)
    deploys = store.ledger.deploys.of_environment(name)
    running = [d for d in deploys if d.state is DeployState.IN_PROGRESS]
    deploy = running[-1] if running else (deploys[-1] if deploys else None)
    decisions: list[dict[str, Any]] = []
    if deploy is not None:
        events = store.ledger.history.events(name, (EventKind.RELEASE_DECISION,))
        decisions = [
            {"ts": e.ts, **e.data} for e in events if e.data.get("deploy_id") == deploy.id
        ][-last:]
    return ReleaseStatus(
        environment=name,
        deploy=deploy,
        in_progress=bool(running),
        progress=load_progress(deploy.progress) if deploy else None,
        decisions=decisions,
        hooks=hook_runs(store, name, deploy.id) if deploy else [],
    )


def hook_runs(store: Store, name: str, deploy_id: int) -> list[dict[str, Any]]:
    """The release hooks of a deploy from its `release.hook` events: the last word on each
    (a finished run replaces its start), in the order they started."""
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for event in store.ledger.history.events(name, (EventKind.RELEASE_HOOK,)):
        if event.data.get("deploy_id") == deploy_id:
            key = (str(event.data.get("phase")), int(event.data.get("index", -1)))
            runs[key] = {"ts": event.ts, **event.data}
    return list(runs.values())


def send_command(project: Project, store: Store, name: str, command: str, actor: str) -> int:
    """Queue `command` for the deploy in progress in `name`; returns that deploy's id."""
    if command not in COMMANDS:
        raise ConveyorError(f"unknown command {command!r}", hint=", ".join(COMMANDS))
    environment_spec(project, name)
    running = store.ledger.deploys.of_environment(name, DeployState.IN_PROGRESS)
    if not running:
        raise ConveyorError(
            f"no release in progress in {name}",
            hint=f"`conveyor env history {name}` lists what happened; "
            f"`conveyor rollback {name}` switches back after a release",
        )
    deploy = running[-1]
    store.ledger.deploys.add_command(name, deploy.id, command, actor)
    return deploy.id
