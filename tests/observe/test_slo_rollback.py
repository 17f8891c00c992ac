"""The built-in path end to end: a server's continuous watch samples an environment, the
SLO evaluator sees the error budget burning, its page alert goes through the one alert
intake, and the release deployed inside the bake window is rolled back, with the alert
as evidence and an incident that names the suspect release."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import wait_until
from conveyor.observe import incidents
from conveyor.service import environments
from conveyor.store.records import EventKind
from observe.live_traffic import STAGING_SPEC, bad_over_good, live_release
from server import conftest as server_fixtures
from server.conftest import MakeServer, ServerUnderTest

make_server = server_fixtures.make_server
pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]

# time_scale 720: the page's windows, 1 h and 5 min, become 5 s and 0.4 s.
SPEC = (
    STAGING_SPEC
    + """\
    slos:
      - kind: availability
        objective: 99
        time_scale: 720
"""
)


@pytest.fixture
def served(make_server: MakeServer) -> Iterator[ServerUnderTest]:
    served = make_server(SPEC)
    yield served
    context = served.context
    environments.stop_environment(context.project, context.store, "staging")


def test_a_burning_error_budget_rolls_the_new_release_back(
    served: ServerUnderTest, tmp_path: Path
) -> None:
    store = served.context.store
    v1, v2, traffic = bad_over_good(served, tmp_path)
    try:
        wait_until(lambda: live_release(served) == v1, "the SLO alert's rollback", timeout=60)
        wait_until(lambda: traffic.last == "v1", "traffic back on v1", timeout=10)
    finally:
        traffic.stopped.set()
        traffic.thread.join()

    [rollback] = [e for e in store.events() if e.kind == EventKind.ROLLBACK.value]
    assert rollback.actor == "conveyor-alerts"
    assert (rollback.data["from"], rollback.data["to"]) == (v2, v1)
    alert = rollback.data["evidence"]["alert"]
    assert alert["source"] == "conveyor"
    assert alert["labels"]["alertname"] == "ErrorBudgetBurn"
    assert alert["labels"]["severity"] == "page"
    assert alert["labels"]["release"] == v2
    # The intake records the incident mitigated once the rollback it made has returned.
    incident = wait_until(lambda: _mitigated(served), "the incident mitigated by the rollback")
    assert incident.suspects[0]["release_id"] == v2  # newest first
    assert incident.time_to_restore is not None and incident.time_to_restore < 30


def _mitigated(served: ServerUnderTest) -> incidents.Incident | None:
    store = served.context.store
    [incident] = incidents.list_incidents(store, environment="staging").items
    return incident if incident.state is incidents.IncidentState.MITIGATED else None
