"""A staging environment with two releases on the in-memory data plane (deploy/fake_plane.py):
v1 deployed, then v2, each image built by a run of its own commit, so v2 is live, v1 warm,
and the store knows their commits. What the alert intake and the incidents are tested on."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import GitProject, MakeProject
from conveyor.observe.alerts import Alert, AlertSource, AlertStatus
from conveyor.service import environments
from conveyor.service.project import Project
from conveyor.store.records import EventKind, EventRecord, NewRun
from conveyor.store.reports import IMAGE_REPORT
from conveyor.store.store import Store
from deploy.apps import REPOSITORY, build_app
from deploy.fake_plane import use_fake_plane

SPEC = """\
version: 1
name: shop
jobs:
  noop: {{run: 'true'}}
environments:
  staging:
    replicas: 1
    drain: 10ms
    health:
      readiness: {{path: /healthz, interval: 100ms}}
    alerts:
      bake: {bake}
"""


@dataclass
class Shipped:
    git: GitProject
    project: Project
    store: Store
    releases: tuple[str, str]  # v1 (warm), v2 (live)
    commits: tuple[str, str]

    def live(self) -> str | None:
        record = self.store.ledger.environments.get("staging")
        return record.live_release if record else None

    def events(self, kind: EventKind) -> list[EventRecord]:
        return [e for e in self.store.events() if e.kind == kind.value]


Ship = Callable[..., Shipped]


def _build(git: GitProject, project: Project, store: Store, tmp: Path, version: str) -> str:
    """An image built by a run of a new commit; returns its reference."""
    sha = git.commit({"version.txt": version}, message=f"ship {version}")
    image = build_app(project, tmp / version, version)
    run_id = store.create_run(NewRun(pipeline="shop", commit_sha=sha, branch="main"), [])
    digest = image.split("@", 1)[1]
    blob = store.blobs.put_bytes(json.dumps({"repository": REPOSITORY, "digest": digest}).encode())
    store.add_report(run_id, "image", IMAGE_REPORT, blob, {"digest": digest})
    return image


def deploy_two(git: GitProject, project: Project, store: Store, tmp: Path) -> Shipped:
    """v1 then v2 deployed to staging, each built by a run of its own commit."""
    releases, commits = [], []
    for version in ("v1", "v2"):
        image = _build(git, project, store, tmp, version)
        commits.append(git.git("rev-parse", "HEAD"))
        outcome = environments.deploy(project, store, "staging", image, actor="dana")
        releases.append(outcome.release_id)
    return Shipped(git, project, store, (releases[0], releases[1]), (commits[0], commits[1]))


@pytest.fixture
def ship(
    git_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Ship]:
    """`ship(bake="1h")`: v1 then v2 deployed to staging."""
    use_fake_plane(monkeypatch)
    stores: list[Store] = []

    def make(bake: str = "1h") -> Shipped:
        git = git_project(SPEC.format(bake=bake))
        project = git.project()
        project.ensure_state_dir()
        store = project.open_store()
        stores.append(store)
        return deploy_two(git, project, store, tmp_path)

    yield make
    for store in stores:
        store.close()


def firing(fingerprint: str = "f1", **labels: str) -> Alert:
    return Alert(
        source=AlertSource.ALERTMANAGER,
        status=AlertStatus.FIRING,
        fingerprint=fingerprint,
        labels={"alertname": "HighErrorRate", "environment": "staging", **labels},
        annotations={"summary": "5xx above 5 %"},
    )
