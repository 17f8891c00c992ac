"""Which version of a service runs where, and which runs a version names: what contracts
are checked against. A service's version is the commit its pipeline ran; a release runs an
image digest, which the runs that built it (their "image" report) tie to commits.

Partners (the services of `contracts:` in conveyor.yml) are other Conveyor projects:
their records are read from their own state folders."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from conveyor.errors import ConveyorError
from conveyor.spec.contracts import Partner
from conveyor.store.db import read_transaction
from conveyor.store.schema import runs
from conveyor.store.store import Store

_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Version:
    """A version of a service: the runs of its pipeline that made it, and their commits."""

    service: str
    label: str  # as asked for, or the digest that runs
    run_ids: tuple[int, ...]
    commits: tuple[str, ...]

    @property
    def title(self) -> str:
        short = self.label[:19] if self.label.startswith("sha256:") else self.label[:12]
        return f"{self.service}@{short}"


@dataclass(frozen=True)
class Deployed:
    environment: str
    release_id: str
    digest: str
    version: Version  # no runs: a digest this service's records do not know


def partner_state_dir(spec_dir: Path, name: str, partner: Partner) -> Path:
    if partner.state is not None:
        return (spec_dir / partner.state).resolve()
    return (spec_dir / partner.project).resolve() / ".conveyor"


def open_partner(spec_dir: Path, name: str, partner: Partner) -> Store:
    """The partner's store; refused when it has none (it never ran its pipeline)."""
    state = partner_state_dir(spec_dir, name, partner)
    if not (state / "conveyor.db").is_file():
        raise ConveyorError(
            f"no Conveyor records for {name} in {state}: nothing says which {name} versions "
            "run where or what they verified",
            hint=f"run {name}'s pipeline (`conveyor run` in {partner.project}), or fix "
            f"`contracts:` in conveyor.yml",
        )
    return Store(state)


def version_of(store: Store, service: str, label: str) -> Version:
    """The runs that name `label`: a commit (7 to 40 hex digits) or an image digest.
    Refused when none does: an unknown version is never a verified one."""
    if _DIGEST.match(label):
        run_ids = tuple(store.runs_that_built(label))
    elif _COMMIT.match(label):
        run_ids = _runs_of_commit(store, label)
    else:
        raise ConveyorError(
            f"{service}@{label}: a version is a commit (7 to 40 hex digits) or an image "
            "digest (sha256:...)"
        )
    if not run_ids:
        raise ConveyorError(
            f"{service}@{label} is an unknown version: no run of {service}'s pipeline "
            f"{'built that image' if label.startswith('sha256:') else 'ran that commit'}",
            hint="`conveyor history` lists the runs and their commits",
        )
    return Version(service, label, run_ids, _commits(store, run_ids))


def deployed(store: Store, service: str, environment: str) -> Deployed | None:
    """What `service` (whose store this is) runs live in `environment`, or None. A digest
    no recorded run built comes back with no runs: an unknown version."""
    record = store.ledger.environments.get(environment)
    if record is None or record.live_release is None:
        return None
    release = store.ledger.releases.get(record.live_release, environment)
    if release is None:
        return None
    run_ids = tuple(store.runs_that_built(release.digest))
    version = Version(service, release.digest, run_ids, _commits(store, run_ids))
    return Deployed(environment, release.release_id, release.digest, version)


def deployed_everywhere(store: Store, service: str) -> list[Deployed]:
    """The live release of every environment this store has deployed to."""
    names = [record.name for record in store.ledger.environments.all()]
    found = (deployed(store, service, name) for name in names)
    return [item for item in found if item is not None]


def _runs_of_commit(store: Store, prefix: str) -> tuple[int, ...]:
    query = sa.select(runs.c.id).where(runs.c.commit_sha.startswith(prefix)).order_by(runs.c.id)
    with read_transaction(store.engine) as conn:
        return tuple(row.id for row in conn.execute(query))


def _commits(store: Store, run_ids: tuple[int, ...]) -> tuple[str, ...]:
    if not run_ids:
        return ()
    query = sa.select(runs.c.commit_sha).where(runs.c.id.in_(run_ids)).order_by(runs.c.id)
    with read_transaction(store.engine) as conn:
        found = [row.commit_sha for row in conn.execute(query) if row.commit_sha]
    return tuple(dict.fromkeys(found))
