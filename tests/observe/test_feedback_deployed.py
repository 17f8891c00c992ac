"""Feedback posted through a real environment's router during a paused canary: each user's
post is stamped with the release that serves that user, and with the flag variants the
page was served (checked against the environment's flags), then summarised per release
and per variant."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from conftest import wait_until
from conveyor.deploy.rollout import DeployOutcome, release_name
from conveyor.deploy.routers.feedback_intake import FEEDBACK_PATH
from conveyor.flags import Flag, FlagLedger
from conveyor.observe import feedback
from conveyor.service import environments
from conveyor.service.project import Project
from conveyor.service.releases import release_status, send_command
from conveyor.states import DeployState
from conveyor.store.records import EventKind
from deploy.apps import build_app, make_project

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]

PAUSED = """\
      canary:
        analysis: {interval: 0.3s, min_duration: 1s, max_duration: 30s}
        steps:
          - weight: 50
          - pause: until-promoted
"""
BANNER = Flag.model_validate(
    {
        "name": "new-banner",
        "enabled": True,
        "variants": [{"name": "on", "weight": 1}, {"name": "control", "weight": 1}],
    }
)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = make_project(tmp_path / "p", replicas=1, strategy=PAUSED)
    yield project
    with project.open_store() as store:
        environments.stop_environment(project, store, "staging")


def deploy(project: Project, image: str) -> DeployOutcome:
    with project.open_store() as store:
        return environments.deploy(project, store, "staging", image, actor="tester")


def user_served_by(url: str, version: str) -> httpx.Client:
    """A browser-like client whose sticky cookie holds it on `version`."""
    for _ in range(200):
        client = httpx.Client(base_url=url, timeout=5)
        if client.get("/").text == version:
            return client
        client.close()
    raise AssertionError(f"no client was routed to {version}")


def send(user: httpx.Client, rating: int, text: str, variants: dict[str, str]) -> str | None:
    origin = str(user.base_url).rstrip("/")
    answer = user.post(
        FEEDBACK_PATH,
        json={"rating": rating, "text": text, "variants": variants},
        headers={"Origin": origin},
    )
    assert answer.status_code == 202, answer.text
    release: str | None = answer.json()["release"]
    return release


def test_feedback_during_a_canary_is_stamped_per_user_release_and_variant(
    project: Project, tmp_path: Path
) -> None:
    v1, v2 = build_app(project, tmp_path, "v1"), build_app(project, tmp_path, "v2")
    stable, canary = (release_name("staging", *image.split("@")) for image in (v1, v2))
    assert deploy(project, v1).state is DeployState.SUCCEEDED
    with project.open_store() as store:
        FlagLedger(store.engine).define("staging", BANNER)
        url = f"http://127.0.0.1:{store.ledger.environments.get('staging').port}"  # type: ignore[union-attr]
    outcomes: list[DeployOutcome] = []
    worker = threading.Thread(target=lambda: outcomes.append(deploy(project, v2)))
    worker.start()

    def paused() -> bool:
        with project.open_store() as store:
            status = release_status(project, store, "staging")
        return status.in_progress and status.progress is not None and status.progress.step == 1

    try:
        wait_until(paused, "the canary to reach its pause")
        with (
            closing(user_served_by(url, "v2")) as canary_user,
            closing(user_served_by(url, "v1")) as stable_user,
        ):
            assert send(canary_user, 1, "checkout broken", {"new-banner": "on"}) == canary
            # A variant of a flag the environment does not have is not kept.
            assert send(canary_user, 2, "broken again", {"ghost": "on"}) == canary
            # The stable code also runs afresh as the canary's baseline: either serves it.
            served = send(stable_user, 5, "works", {"new-banner": "control"})
            assert served in {stable, f"{stable}-baseline"}
            bad = stable_user.post(FEEDBACK_PATH, json={"rating": 9}, headers={"Origin": url})
            assert bad.status_code == 400
    finally:
        with project.open_store() as store:
            send_command(project, store, "staging", "abort", "tester")
        worker.join(timeout=30)
    assert outcomes and outcomes[0].state is DeployState.ROLLED_BACK

    with project.open_store() as store:
        summary = feedback.environment_feedback(project, store, "staging")
        again = feedback.ingest(store, "staging")  # the spool is ingested once
        received = store.ledger.history.events("staging", (EventKind.FEEDBACK_RECEIVED,))
        items = feedback.feedback_items(store, "staging")
    assert again == 0
    assert summary.count == 3
    per_release = {s.release_id: (s.count, s.mean) for s in summary.releases}
    assert per_release == {stable: (1, 5.0), canary: (2, 1.5)}
    per_variant = {(s.flag, s.variant): (s.count, s.mean) for s in summary.variants}
    assert per_variant == {("new-banner", "on"): (1, 1.0), ("new-banner", "control"): (1, 5.0)}
    assert [item.variants for item in items if item.text == "broken again"] == [{}]
    assert received and received[-1].data["count"] == 3
    assert summary.router_answers == {"202": 3, "400": 1}  # a refusal is recorded too
