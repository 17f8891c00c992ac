"""What changed between two deploys of an environment, for the UI's release diff: the
commits between their runs, the image and its configuration, the flags changed in
between, the SBOM's packages and the vulnerabilities their runs' scans found.

Read only; each part says when it cannot tell (a deploy by hand has no run, an image
gone from the store has no SBOM) instead of failing the whole comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.findings.reports import ReportKind, VulnScanReport
from conveyor.flags.store import FlagLedger
from conveyor.service.images import image_store, inspect_image
from conveyor.service.project import Project
from conveyor.store.ledger import DeployRecord
from conveyor.store.records import EventRecord
from conveyor.store.store import Store
from conveyor.supply.attest import CYCLONEDX_BOM, Envelope, Statement
from conveyor.supply.oci.model import ImageRef
from conveyor.supply.referrers import attestations
from conveyor.vcs.commits import Commit, log_commits

COMMITS_SHOWN = 200


@dataclass(frozen=True)
class Changed:
    """A set's difference: in `to` only, in `from` only."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReleaseComparison:
    environment: str
    before: DeployRecord
    after: DeployRecord
    commits: list[Commit]
    commits_note: str | None
    configuration: list[tuple[str, str, str]]  # (key, before, after) that differ
    flags: list[EventRecord]  # flag changes between the two deploys
    packages: Changed
    packages_note: str | None
    vulnerabilities: Changed


def compare(
    project: Project, store: Store, environment: str, before: int, after: int
) -> ReleaseComparison:
    old, new = _deploy(store, environment, before), _deploy(store, environment, after)
    commits, note = _commits(project, store, old, new)
    packages_before, missing_before = _packages(project, old)
    packages_after, missing_after = _packages(project, new)
    missing = missing_before or missing_after
    return ReleaseComparison(
        environment=environment,
        before=old,
        after=new,
        commits=commits,
        commits_note=note,
        configuration=_configuration(project, old, new),
        flags=_flag_changes(store, environment, old, new),
        packages=_changed(packages_before, packages_after),
        packages_note=missing,
        vulnerabilities=_changed(_vulnerabilities(store, old), _vulnerabilities(store, new)),
    )


def _deploy(store: Store, environment: str, deploy_id: int) -> DeployRecord:
    deploy = store.ledger.deploys.get(deploy_id)
    if deploy.environment != environment:
        raise NotFoundError(f"no deploy {deploy_id} in {environment}")
    return deploy


def _commit_of(store: Store, deploy: DeployRecord) -> str | None:
    """The commit of the run the deploy came from (its own, else its approval's)."""
    run_id = deploy.run_id
    if run_id is None:
        started = store.ledger.deploys.started(deploy.id)
        approval = (started.data.get("approval") if started else None) or {}
        run_id = approval.get("run_id")
    if run_id is None:
        return None
    try:
        return store.get_run(int(run_id)).commit_sha
    except NotFoundError:
        return None


def _commits(
    project: Project, store: Store, old: DeployRecord, new: DeployRecord
) -> tuple[list[Commit], str | None]:
    since, until = _commit_of(store, old), _commit_of(store, new)
    if until is None:
        return [], "the newer deploy came from no run with a commit"
    if since is None:
        return [], "the older deploy came from no run with a commit"
    try:
        return log_commits(project.directory, until, since, COMMITS_SHOWN), None
    except ConveyorError as error:
        return [], f"git cannot tell: {error.message}"


def _image(project: Project, deploy: DeployRecord) -> dict[str, Any] | None:
    try:
        return inspect_image(
            image_store(project), ImageRef(name=deploy.repository, digest=deploy.digest)
        )
    except (ConveyorError, OSError):
        return None


def _configuration(
    project: Project, old: DeployRecord, new: DeployRecord
) -> list[tuple[str, str, str]]:
    """The image, and each key of its OCI configuration that differs."""
    rows = []
    if (old.repository, old.digest) != (new.repository, new.digest):
        rows.append(("image", f"{old.repository}@{old.digest}", f"{new.repository}@{new.digest}"))
    before, after = _image(project, old), _image(project, new)
    flat_before = _flat(before.get("config", {})) if before else {}
    flat_after = _flat(after.get("config", {})) if after else {}
    for key in sorted(set(flat_before) | set(flat_after)):
        if flat_before.get(key) != flat_after.get(key):
            rows.append((key, flat_before.get(key, "—"), flat_after.get(key, "—")))
    return rows


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, list) and key == "Env":
            for item in value:
                name, _, setting = str(item).partition("=")
                flat[f"{prefix}Env.{name}"] = setting
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def _flag_changes(
    store: Store, environment: str, old: DeployRecord, new: DeployRecord
) -> list[EventRecord]:
    low, high = sorted((old.started_at, new.started_at))
    return [e for e in FlagLedger(store.engine).history(environment) if low <= e.ts <= high]


def _packages(project: Project, deploy: DeployRecord) -> tuple[set[str], str | None]:
    """`name version` of each component of the image's CycloneDX SBOM (as attached; its
    signature is the admission policy's business, not this display's)."""
    image = f"{deploy.repository}@{deploy.digest[:19]}"
    if _image(project, deploy) is None:
        return set(), f"{image} is not in the image store"
    try:
        found = attestations(image_store(project), deploy.repository, deploy.digest)
    except (ConveyorError, OSError):
        return set(), f"{image}'s attachments cannot be read"
    packages: set[str] = set()
    for stored in found:
        try:
            statement = Statement.from_bytes(Envelope.from_bytes(stored.envelope).payload)
        except ConveyorError:
            continue
        if statement.predicate_type != CYCLONEDX_BOM:
            continue
        for component in statement.predicate.get("components") or []:
            packages.add(f"{component.get('name')} {component.get('version', '')}".strip())
    if not packages:
        return set(), f"{image} has no SBOM attached"
    return packages, None


def _vulnerabilities(store: Store, deploy: DeployRecord) -> set[str]:
    from conveyor.service.reports import typed_documents

    if deploy.run_id is None:
        return set()
    scans = typed_documents(store, deploy.run_id, ReportKind.VULN_SCAN, VulnScanReport)
    return {
        " ".join(str(v.get(key)) for key in ("id", "package") if v.get(key))
        for scan in scans
        for v in scan.vulnerabilities
    }


def _changed(before: set[str], after: set[str]) -> Changed:
    return Changed(added=sorted(after - before), removed=sorted(before - after))
