"""What changed between two releases of an environment: the commits between them, the
image's configuration, the flags changed between the two deploys, the dependencies (the
SBOMs' package sets) and the vulnerabilities (the scans' findings). The UI's "diff between
any two releases" page and `GET /api/v1/environments/{name}/diff` show it.

`from` and `to` are deploy ids (`conveyor env history`); either order works, and each
part says what `to` has that `from` had not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.flags.store import FLAG_EVENTS
from conveyor.service.environments import environment_spec
from conveyor.service.image_evidence import ImageEvidence, image_evidence
from conveyor.service.images import image_store, inspect_image
from conveyor.service.project import Project
from conveyor.service.release_record import source_run
from conveyor.service.release_views import deploy_of
from conveyor.store.ledger import DeployRecord
from conveyor.store.store import Store
from conveyor.supply.oci.model import ImageRef
from conveyor.vcs.commits import log_commits

COMMIT_LIMIT = 500  # a diff across years of history shows the newest ones


@dataclass(frozen=True)
class Side:
    deploy_id: int
    release_id: str
    image: str  # repository@digest
    started_at: float
    commit: str | None  # the source run's commit, when known
    run_id: int | None


@dataclass(frozen=True)
class Changed:
    added: dict[str, Any] = field(default_factory=dict)
    removed: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {from, to}


@dataclass(frozen=True)
class VulnerabilityDiff:
    added: list[str]  # findings `to` has that `from` had not
    removed: list[str]  # fixed
    unchanged: list[str]
    counts_from: dict[str, int]
    counts_to: dict[str, int]
    scanned: bool  # both images carry a scan


@dataclass(frozen=True)
class ReleaseDiff:
    environment: str
    source: Side  # "from"
    target: Side  # "to"
    commits: list[dict[str, Any]]
    commits_note: str | None
    configuration: dict[str, Changed]  # "env" (variables), "config" (other image fields)
    flags: list[dict[str, Any]]  # flag events between the two deploys
    dependencies: Changed  # package name -> version
    vulnerabilities: VulnerabilityDiff


def release_diff(
    project: Project, store: Store, environment: str, from_id: int, to_id: int
) -> ReleaseDiff:
    environment_spec(project, environment)
    older, newer = deploy_of(store, environment, from_id), deploy_of(store, environment, to_id)
    source, target = _side(store, older), _side(store, newer)
    commits, note = _commits(project, source, target)
    before = image_evidence(project, older.repository, older.digest)
    after = image_evidence(project, newer.repository, newer.digest)
    return ReleaseDiff(
        environment=environment,
        source=source,
        target=target,
        commits=commits,
        commits_note=note,
        configuration=_configuration(project, older, newer),
        flags=_flags(store, environment, source.started_at, target.started_at),
        dependencies=_dependencies(before, after),
        vulnerabilities=_vulnerabilities(before, after),
    )


def _side(store: Store, deploy: DeployRecord) -> Side:
    run = source_run(store, deploy)
    return Side(
        deploy_id=deploy.id,
        release_id=deploy.release_id,
        image=f"{deploy.repository}@{deploy.digest}",
        started_at=deploy.started_at,
        commit=run.commit_sha if run is not None else None,
        run_id=run.id if run is not None else None,
    )


def _commits(
    project: Project, source: Side, target: Side
) -> tuple[list[dict[str, Any]], str | None]:
    if source.commit is None or target.commit is None:
        return [], "a release's commit is unknown (deployed by hand, from no run)"
    if source.commit == target.commit:
        return [], None
    try:
        found = log_commits(project.directory, target.commit, source.commit, limit=COMMIT_LIMIT)
    except ConveyorError as error:
        return [], f"not in the repository any more: {error.message}"
    note = None
    if not found:  # `to` is older than `from`: what going back removes
        found = log_commits(project.directory, source.commit, target.commit, limit=COMMIT_LIMIT)
        note = "`to` is older than `from`: these commits are the ones it goes back over"
    commits = [
        {"sha": c.sha, "author": c.author, "committed_at": c.committed_at, "subject": c.subject}
        for c in found
    ]
    return commits, note


def _configuration(
    project: Project, older: DeployRecord, newer: DeployRecord
) -> dict[str, Changed]:
    before, after = _image_config(project, older), _image_config(project, newer)
    env_before = _env(before.pop("Env", None) or [])
    env_after = _env(after.pop("Env", None) or [])
    return {"env": _changed(env_before, env_after), "config": _changed(before, after)}


def _image_config(project: Project, deploy: DeployRecord) -> dict[str, Any]:
    store = image_store(project)
    try:
        found = inspect_image(store, ImageRef(name=deploy.repository, digest=deploy.digest))
    except ConveyorError:
        return {}  # the image left the store: nothing to compare
    return dict(found.get("config") or {})


def _env(pairs: list[str]) -> dict[str, str]:
    return dict(pair.partition("=")[::2] for pair in pairs)


def _changed(before: dict[str, Any], after: dict[str, Any]) -> Changed:
    return Changed(
        added={k: v for k, v in after.items() if k not in before},
        removed={k: v for k, v in before.items() if k not in after},
        changed={
            k: {"from": before[k], "to": v}
            for k, v in after.items()
            if k in before and before[k] != v
        },
    )


def _flags(store: Store, environment: str, start: float, end: float) -> list[dict[str, Any]]:
    low, high = min(start, end), max(start, end)
    return [
        {"ts": event.ts, "kind": event.kind, "actor": event.actor, **dict(event.data)}
        for event in store.ledger.history.events(environment, FLAG_EVENTS)
        if low <= event.ts < high
    ]


def _dependencies(before: ImageEvidence, after: ImageEvidence) -> Changed:
    return _changed(
        {p.name: p.version for p in before.packages}, {p.name: p.version for p in after.packages}
    )


def _vulnerabilities(before: ImageEvidence, after: ImageEvidence) -> VulnerabilityDiff:
    old = set(before.scan.findings) if before.scan else set()
    new = set(after.scan.findings) if after.scan else set()
    return VulnerabilityDiff(
        added=sorted(new - old),
        removed=sorted(old - new),
        unchanged=sorted(old & new),
        counts_from=dict(before.scan.counts) if before.scan else {},
        counts_to=dict(after.scan.counts) if after.scan else {},
        scanned=before.scan is not None and after.scan is not None,
    )
