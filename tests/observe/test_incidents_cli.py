"""`conveyor incidents list|show|ack|mitigate|resolve`, text and JSON, and its errors."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from conftest import run_cli
from conveyor.observe import requirements
from conveyor.observe.alerts import receive_alert
from conveyor.observe.requirements import FiledRequirement
from conveyor.service.project import Project
from conveyor.store.store import Store
from observe import shipping
from observe.shipping import Ship, firing

ship = shipping.ship


def test_incidents_through_the_cli(ship: Ship, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = ship()
    incident = receive_alert(shipped.project, shipped.store, firing("cli")).incident
    root = shipped.git.root
    listed = run_cli(["incidents", "list", "-o", "json"], root)
    assert listed.exit_code == 0, listed.stderr
    assert [i["id"] for i in listed.json()["items"]] == [incident]
    shown = run_cli(["incidents", "show", str(incident)], root)
    assert "suspect " + shipped.releases[1] in shown.stdout
    assert "ship v2" in shown.stdout  # the suspect's commit
    assert "mitigated" in shown.stdout  # the automatic rollback
    again = run_cli(["incidents", "ack", str(incident)], root)
    assert again.exit_code == 2 and "cannot become acknowledged" in again.stderr

    def file_requirement(
        project: Project,
        store: Store,
        *,
        title: str,
        body: str,
        labels: Sequence[str] = (),
        source: str,
        actor: str,
    ) -> FiledRequirement:
        return FiledRequirement("REQ-3", title, "requirements/REQ-3.md")

    monkeypatch.setattr(requirements, "file_requirement", file_requirement)
    resolved = run_cli(["incidents", "resolve", str(incident), "-m", "done", "-o", "json"], root)
    assert resolved.exit_code == 0, resolved.stderr
    assert resolved.json()["state"] == "resolved"
    assert resolved.json()["requirement"]["key"] == "REQ-3"
    assert resolved.json()["timeline"][-1]["note"] == "done"
    open_only = run_cli(["incidents", "list", "--open"], root)
    assert open_only.stdout.strip() == "no incidents"
    missing = run_cli(["incidents", "show", "42"], root)
    assert missing.exit_code == 4 and "no incident 42" in missing.stderr
