"""The audit log through the API: entries page newest first without gaps, and the chain's
verification notices an edited event."""

from __future__ import annotations

import sqlalchemy as sa

from conveyor.flags.store import FlagLedger
from conveyor.store.schema import events
from server.conftest import ServerUnderTest


def test_entries_page_newest_first_and_the_chain_verifies(served: ServerUnderTest) -> None:
    ledger = FlagLedger(served.context.store.engine)
    for n in range(5):
        ledger.set_enabled("staging", f"flag-{n}", True, actor="dana")
    viewer = served.as_user("viewer")
    assert served.client.get("/api/v1/audit").status_code == 401
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = served.client.get("/api/v1/audit", params=params, headers=viewer).json()
        seen += [entry["seq"] for entry in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1]
    verdict = served.client.get("/api/v1/audit/verify", headers=viewer).json()
    assert verdict["intact"] is True and verdict["entries"] == 5
    kept = served.client.get("/api/v1/audit", params={"limit": 1}, headers=viewer).json()
    head = kept["items"][0]["hash"]
    held = served.client.get("/api/v1/audit/verify", params={"head": head}, headers=viewer)
    assert held.json()["intact"] is True
    other = served.client.get("/api/v1/audit/verify", params={"head": "0" * 64}, headers=viewer)
    assert other.json()["intact"] is False


def test_an_edited_event_breaks_the_chain(served: ServerUnderTest) -> None:
    FlagLedger(served.context.store.engine).set_enabled("staging", "banner", True, actor="dana")
    with served.context.store.engine.begin() as conn:
        conn.execute(sa.update(events).values(actor="mallory"))
    verdict = served.client.get("/api/v1/audit/verify", headers=served.as_user("admin")).json()
    assert verdict["intact"] is False and verdict["problems"]
