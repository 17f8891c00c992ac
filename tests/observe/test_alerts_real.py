"""The whole path for real: a release that answers 5xx, a real Prometheus scraping the
environment's router with an alerting rule, a real Alertmanager delivering the alert to a
real Conveyor server with a bearer token, and the release rolled back with the alert as
evidence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import wait_until
from conveyor.service import environments
from conveyor.store.records import EventKind
from observe.alerting import error_rate_rule, running_alertmanager, running_prometheus
from observe.live_traffic import STAGING_SPEC, bad_over_good, live_release
from server import conftest as server_fixtures
from server.conftest import MakeServer, ServerUnderTest

make_server = server_fixtures.make_server
pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]

SPEC = STAGING_SPEC


@pytest.fixture
def served(make_server: MakeServer) -> Iterator[ServerUnderTest]:
    served = make_server(SPEC)
    yield served
    context = served.context
    environments.stop_environment(context.project, context.store, "staging")


def test_alertmanager_delivers_a_real_alert_that_rolls_the_release_back(
    served: ServerUnderTest, tmp_path: Path
) -> None:
    store = served.context.store
    v1, v2, traffic = bad_over_good(served, tmp_path)
    record = store.ledger.environments.get("staging")
    assert record is not None
    webhook = f"{served.url}/api/v1/alerts/alertmanager"
    try:
        with (
            running_alertmanager(tmp_path / "am", webhook, served.tokens["developer"]) as am,
            running_prometheus(
                tmp_path / "prometheus",
                f"127.0.0.1:{record.admin_port}",
                "/-/metrics",
                error_rate_rule("staging"),
                am,
            ),
        ):
            wait_until(lambda: live_release(served) == v1, "the alert's rollback", timeout=60)
            wait_until(lambda: traffic.last == "v1", "traffic back on v1", timeout=10)
    finally:
        traffic.stopped.set()
        traffic.thread.join()
    [rollback] = [e for e in store.events() if e.kind == EventKind.ROLLBACK.value]
    assert rollback.actor == "conveyor-alerts"
    assert (rollback.data["from"], rollback.data["to"]) == (v2, v1)
    alert = rollback.data["evidence"]["alert"]
    assert alert["source"] == "alertmanager"
    assert alert["labels"]["alertname"] == "HighErrorRate"
    assert alert["labels"]["release"] == v2
    received = wait_until(
        lambda: [e for e in store.events() if e.kind == EventKind.ALERT_RECEIVED.value],
        "the alert's outcome recorded",
    )
    assert received[0].data["outcome"] == "rolled-back"
    assert received[0].data["incident"] is not None
