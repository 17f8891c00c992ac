"""What changed between two releases of an environment: the commits between them, the
image's configuration, the flags changed between the two deploys, the dependencies (the
SBOMs' package sets) and the vulnerabilities (the scans' findings). The UI's "diff between
any two releases" page and `GET /api/v1/environments/{name}/diff` show it.

`from` and `to` are deploy ids (`conveyor env history`); either order works, and each
part says what `to` has that `from` had not. Read only: a part that cannot tell (a deploy
by hand has no run, an image gone from the store has no SBOM) says why in its note
instead of failing the whole diff.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    dependencies_note: str | None = None  # why `dependencies` cannot tell, when so


def release_diff(
    project: Project, store: Store, environment: str, from_id: int, to_id: int
) -> ReleaseDiff:
    environment_spec(project, environment)
    older, newer = deploy_of(store, environment, from_id), deploy_of(store, environment, to_id)
    source, target = _side(store, older), _side(store, newer)
    commits, note = _commits(project, source, target)
    configs = _image_config(project, older), _image_config(project, newer)
    before = _evidence(project, older, configs[0])
    after = _evidence(project, newer, configs[1])
    return ReleaseDiff(
        environment=environment,
        source=source,
        target=target,
        commits=commits,
        commits_note=note,
        configuration=_configuration(configs[0] or {}, configs[1] or {}),
        flags=_flags(store, environment, source.started_at, target.started_at),
        dependencies=_dependencies(before, after),
        vulnerabilities=_vulnerabilities(before, after),
        dependencies_note=_dependencies_note(
            (source, configs[0], before), (target, configs[1], after)
        ),
    )


def configuration_rows(diff: ReleaseDiff) -> list[tuple[str, str, str]]:
    """The configuration for people: (key, from, to) of the image when it differs, then of
    each variable (`Env.NAME`) and each other key of the OCI config (nested ones dotted)
    that differs; "—" where a side has none."""
    rows = []
    if diff.source.image != diff.target.image:
        rows.append(("image", diff.source.image, diff.target.image))
    for prefix, changed in (
        ("Env.", diff.configuration["env"]),
        ("", diff.configuration["config"]),
    ):
        before = _flat(
            prefix, {**changed.removed, **{k: c["from"] for k, c in changed.changed.items()}}
        )
        after = _flat(prefix, {**changed.added, **{k: c["to"] for k, c in changed.changed.items()}})
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                rows.append((key, before.get(key, "—"), after.get(key, "—")))
    return rows


def _flat(prefix: str, values: Mapping[str, Any]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flat(f"{prefix}{key}.", value))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


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
        unknown = [f"#{side.deploy_id}" for side in (source, target) if side.commit is None]
        deploys = " and ".join(unknown)
        return [], f"deploy {deploys} came from no run with a commit (deployed by hand)"
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


def _configuration(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Changed]:
    before, after = dict(before), dict(after)
    env_before = _env(before.pop("Env", None) or [])
    env_after = _env(after.pop("Env", None) or [])
    return {"env": _changed(env_before, env_after), "config": _changed(before, after)}


def _image_config(project: Project, deploy: DeployRecord) -> dict[str, Any] | None:
    """The image's OCI config; None when the image is not in the store (any more)."""
    store = image_store(project)
    try:
        found = inspect_image(store, ImageRef(name=deploy.repository, digest=deploy.digest))
    except (ConveyorError, OSError):
        return None
    return dict(found.get("config") or {})


def _evidence(
    project: Project, deploy: DeployRecord, config: dict[str, Any] | None
) -> ImageEvidence:
    if config is None:  # gone from the store: no attachments to read
        return ImageEvidence(repository=deploy.repository, digest=deploy.digest)
    return image_evidence(project, deploy.repository, deploy.digest)


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


def _dependencies_note(
    *sides: tuple[Side, dict[str, Any] | None, ImageEvidence],
) -> str | None:
    for side, config, evidence in sides:
        if config is None:
            return f"{side.image} is not in the image store"
        if not evidence.packages:
            return f"{side.image} carries no SBOM packages"
    return None


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
