"""Business metrics of real releases: scraped from each release's replicas, summed, split
by flag variant, resets and vanished counters recorded; and the business guardrail of a
real canary, which rolls back a release that lowers conversion and promotes a neutral one."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from conftest import run_cli
from conveyor.deploy.rollout import DeployOutcome
from conveyor.observe.business import VariantSource
from conveyor.observe.business_figures import BusinessView, business_view
from conveyor.observe.business_watch import sample_on_watch
from conveyor.service import environments
from conveyor.service.project import Project
from conveyor.states import DeployState
from conveyor.store.records import EventKind
from conveyor.store.schema import business_samples
from conveyor.store.store import Store
from observe.business_app import FLAG, build_checkout_app, checkout_project

pytestmark = [pytest.mark.real, pytest.mark.timeout(180)]

CANARY = """\
      canary:
        analysis:
          interval: 0.5s
          min_duration: 3s
          max_duration: 30s
          min_effect: 2.0
          negligible_rate: 0.1
        steps:
          - weight: 40
          - analysis: {}
"""


@pytest.fixture
def projects(tmp_path: Path) -> Iterator[list[Project]]:
    made: list[Project] = []
    yield made
    for project in made:
        with project.open_store() as store:
            environments.stop_environment(project, store, "staging")


def deploy(project: Project, image: str) -> DeployOutcome:
    with project.open_store() as store:
        return environments.deploy(project, store, "staging", image, actor="tester")


def view(project: Project) -> BusinessView:
    with project.open_store() as store:
        return business_view(project, store, "staging")


def replica_urls(project: Project) -> list[str]:
    with project.open_store() as store:
        record = store.ledger.environments.get("staging")
        assert record is not None and record.live_release is not None
        runtime = environments.make_runtime(
            project, environments.environment_spec(project, "staging")
        )
        return [f"http://{r.address}" for r in runtime.status(record.live_release)]


def variant_source(project: Project) -> VariantSource:
    spec = environments.environment_spec(project, "staging")
    assert spec.business is not None
    with project.open_store() as store:
        record = store.ledger.environments.get("staging")
    assert record is not None
    runtime = environments.make_runtime(project, spec)
    return VariantSource(
        spec.business, runtime, "staging", None, flag=FLAG, release_id=str(record.live_release)
    )


def checkouts(url: str, variant: str, orders: int, left: int) -> None:
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for order in [1] * orders + [0] * left:
            answer = client.get(f"/checkout?order={order}", headers={"X-Variant": variant})
            assert answer.status_code == 200


def test_figures_per_release_and_variant_with_resets_and_vanished_counters(
    tmp_path: Path, projects: list[Project]
) -> None:
    project = checkout_project(tmp_path / "p")
    projects.append(project)
    assert (
        deploy(project, build_checkout_app(project, tmp_path, "v1", 0.0)).state
        is DeployState.SUCCEEDED
    )
    first, second = replica_urls(project)
    checkouts(first, "on", orders=6, left=4)
    checkouts(second, "on", orders=6, left=4)
    checkouts(first, "off", orders=1, left=4)
    checkouts(second, "off", orders=1, left=4)

    shown = view(project)
    (release,) = shown.releases
    assert release.state == "live" and release.metrics == {"orders": 14, "checkouts": 30}
    (conversion,) = release.ratios
    assert conversion.value == pytest.approx(14 / 30)
    assert conversion.interval.low < 14 / 30 < (conversion.interval.high or 1.0)
    by_variant = {(v.flag, v.variant): v.metrics for v in shown.variants}
    assert by_variant == {
        (FLAG, "off"): {"orders": 2, "checkouts": 10},
        (FLAG, "on"): {"orders": 12, "checkouts": 20},
    }
    (compared,) = shown.variant_comparisons
    assert (compared.arm, compared.reference) == (f"{FLAG}:on", f"{FLAG}:off")
    assert compared.difference.low < 12 / 20 - 2 / 10 < (compared.difference.high or 1.0)

    # The CLI: the same figures as JSON (from the stored scrapes), and as a table.
    shown_json = run_cli(["business", "staging", "--no-sample", "-o", "json"], project.directory)
    assert shown_json.exit_code == 0, shown_json.stderr
    assert shown_json.json()["releases"][0]["metrics"] == {"orders": 14, "checkouts": 30}
    table = run_cli(["business", "staging", "--no-sample"], project.directory)
    assert table.exit_code == 0 and "46.7%" in table.stdout and f"{FLAG}: on" in table.stdout
    assert f"conversion of {FLAG}:on against the control variant: ratio [" in table.stdout
    assert run_cli(["business", "nowhere"], project.directory).exit_code == 4

    # A flag release's arms: the flag's users ("on") against the control variant.
    source = variant_source(project)
    source.start(["on", "off"])
    checkouts(first, "on", orders=2, left=1)
    checkouts(second, "off", orders=0, left=3)
    assert source.read().increases == {"on": {"conversion": (2, 3)}, "off": {"conversion": (0, 3)}}

    # A restart the runtime did not see: the counter went down, so it counts from zero.
    httpx.post(f"{first}/reset").raise_for_status()
    checkouts(first, "on", orders=1, left=0)
    # A replica that stops exposing a counter adds nothing to it: never read as zero.
    httpx.post(f"{second}/hide").raise_for_status()
    checkouts(second, "on", orders=1, left=0)

    (release,) = view(project).releases
    # The first replica's 2 orders and 3 checkouts since the last stored scrape went
    # with its reset (counted from zero: +1, +1); the second's orders are hidden (+0),
    # its checkouts counted (+4).
    assert release.metrics == {"orders": 15, "checkouts": 35}
    notes = "\n".join(release.notes)
    assert f"{first.removeprefix('http://')}, orders: restarted" in notes
    assert f"{second.removeprefix('http://')}, orders: answered without the counter" in notes

    # The continuous watch's consumer scrapes too, at most every EVERY seconds.
    with project.open_store() as store:
        before = stored_rows(store)
        sample_on_watch(project, store, "staging", 1e9)
        once = stored_rows(store)
        sample_on_watch(project, store, "staging", 1e9 + 1)
        assert stored_rows(store) == once > before


def stored_rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(business_samples)).scalar_one()
        )


class Shoppers:
    """Checkouts through the router from a few clients, cookies dropped each time (new
    users, spread by the weights); each release decides whether they order."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Shoppers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self.stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    client.get("/checkout")
                client.cookies.clear()
                self.stop.wait(0.02)


def test_the_guardrail_rolls_back_a_canary_that_lowers_conversion_and_passes_a_neutral_one(
    tmp_path: Path, projects: list[Project]
) -> None:
    project = checkout_project(tmp_path / "p", replicas=1, strategy=CANARY)
    projects.append(project)
    stable = build_checkout_app(project, tmp_path, "v1", 0.5)
    worse = build_checkout_app(project, tmp_path, "v2", 0.1)
    neutral = build_checkout_app(project, tmp_path, "v3", 0.5)
    assert deploy(project, stable).state is DeployState.SUCCEEDED
    with project.open_store() as store:
        record = store.ledger.environments.get("staging")
    assert record is not None

    with Shoppers(f"http://127.0.0.1:{record.port}"):
        rolled_back = deploy(project, worse)
        promoted = deploy(project, neutral)

    assert rolled_back.state is DeployState.ROLLED_BACK, rolled_back.reason
    assert rolled_back.reason is not None
    assert rolled_back.reason.startswith("business guardrail conversion: canary")
    business = rolled_back.report["evidence"]["business"]
    assert business["reference"].endswith("-baseline")  # against the stable version's twin
    (rail,) = business["rails"]
    assert rail["status"] == "breached" and rail["ratio_interval"]["high"] < 0.95
    assert promoted.state is DeployState.SUCCEEDED, promoted.reason
    with project.open_store() as store:
        decisions = store.ledger.history.events("staging", (EventKind.RELEASE_DECISION,))
    recorded = [d for d in decisions if d.data["deploy_id"] == rolled_back.deploy_id]
    assert recorded[-1].data["verdict"] == "rollback"
    assert recorded[-1].data["evidence"]["business"]["rails"][0]["status"] == "breached"
    final = [d for d in decisions if d.data["deploy_id"] == promoted.deploy_id][-1]
    assert final.data["verdict"] == "promote"
    assert final.data["evidence"]["business"]["rails"][0]["status"] in ("watching", "holds")
