"""A history whose DORA figures were computed by hand (tests/observe/test_dora.py), written
as real events through the store's append API (store/events.py `append`), and the runs
behind its deploys through `Store.create_run`.

Times are hours from `base` (a Monday, 00:00 UTC). Production:

    deploy  release  commit  full traffic  afterwards
    1       v1       -1 h    1 h           -
    2       v2       19 h    25 h          rolled back by a person at 27 h (no deploy id)
    3       v3       45 h    49 h          flag killed at 50 h
    4       v4       72 h    73 h          incident opened at 80 h, resolved at 83 h
    5       v5       94 h    never         10 % at 96 h; the judge: rollback at 96.5 h
    6       v6       160 h   169 h         incident opened at 170 h, never resolved
    7       v7       (hand)  193 h         incident at 220 h: 27 h later, outside the window
    9       v9       286 h   290 h         baking: the judge's rollback at 291 h (deploy id)
    10      v10      299 h   300 h         -

Staging (never counted for production): deploy 8 of s8, full at 194 h, a flag killed
there at 195 h and an incident there at 196 h.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from conveyor.store import events as event_log
from conveyor.store.db import write_transaction
from conveyor.store.records import EventKind, NewRun
from conveyor.store.store import Store

H = 3600.0
BASE = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC


class Writer:
    def __init__(self, store: Store, base: float) -> None:
        self.store, self.base = store, base

    def at(self, hours: float) -> float:
        return self.base + hours * H

    def append(
        self, kind: EventKind | str, hours: float, *, run_id: int | None = None, **data: Any
    ) -> None:
        state = data.pop("state", None)
        row = event_log.event_row(
            EventKind.REPLICA_EVENT, self.at(hours), run_id=run_id, state=state, data=data
        )
        # incident.* kinds are the incidents part's (observe/incidents.py): by name here.
        row["kind"] = kind.value if isinstance(kind, EventKind) else kind
        with write_transaction(self.store.engine) as conn:
            event_log.append(conn, [row])

    def run(self, committed_hours: float) -> int:
        sha = f"{int(committed_hours * 10):040x}"
        meta = NewRun(pipeline="ci", commit_sha=sha, committed_at=self.at(committed_hours))
        return self.store.create_run(meta, [])

    def deploy(
        self,
        env: str,
        deploy_id: int,
        release: str,
        full: float | None,
        *,
        commit: float | None,
        previous: str | None,
    ) -> None:
        run_id = self.run(commit) if commit is not None else None
        started = (full if full is not None else 96.0) - 0.25
        self.append(
            EventKind.DEPLOY_STARTED,
            started,
            run_id=run_id,
            environment=env,
            deploy_id=deploy_id,
            release=release,
            digest=f"sha256:{deploy_id:064x}",
            previous=previous,
            approval=None,
        )
        if full is not None:
            weights = {release: 100, **({previous: 0} if previous else {})}
            self.append(
                EventKind.TRAFFIC_SHIFTED,
                full,
                environment=env,
                deploy_id=deploy_id,
                weights=weights,
                why="1/1 replicas ready",
            )


def write_history(store: Store, base: float = BASE) -> None:
    w = Writer(store, base)
    prod = "production"
    w.deploy(prod, 1, "v1", 1, commit=-1, previous=None)
    w.append(EventKind.DEPLOY_FINISHED, 1.01, environment=prod, deploy_id=1, state="succeeded")
    w.deploy(prod, 2, "v2", 25, commit=19, previous="v1")
    rollback: dict[str, Any] = {"from": "v2", "to": "v1", "reason": "requested"}
    w.append(EventKind.ROLLBACK, 27, environment=prod, **rollback)
    w.deploy(prod, 3, "v3", 49, commit=45, previous="v2")
    w.append(EventKind.FLAG_KILLED, 50, environment=prod, flag="checkout", rollback=True)
    w.deploy(prod, 4, "v4", 73, commit=72, previous="v3")
    w.append("incident.opened", 80, environment=prod, incident=1)
    w.append("incident.state", 81, environment=prod, incident=1, state="acknowledged")
    w.append("incident.state", 83, environment=prod, incident=1, state="resolved")
    # 5: the canary takes 10 %, the judge stops it; traffic goes back by its deploy id.
    w.deploy(prod, 5, "v5", None, commit=94, previous="v4")
    w.append(
        EventKind.TRAFFIC_SHIFTED, 96, environment=prod, deploy_id=5, weights={"v5": 10, "v4": 90}
    )
    w.append(EventKind.RELEASE_DECISION, 96.25, environment=prod, deploy_id=5, verdict="continue")
    w.append(EventKind.RELEASE_DECISION, 96.5, environment=prod, deploy_id=5, verdict="rollback")
    back: dict[str, Any] = {
        "deploy_id": 5,
        "from": "v5",
        "to": "v4",
        "weights": {"v4": 100, "v5": 0},
    }
    w.append(EventKind.ROLLBACK, 96.5, environment=prod, **back)
    w.append(EventKind.DEPLOY_FINISHED, 96.51, environment=prod, deploy_id=5, state="rolled_back")
    w.deploy(prod, 6, "v6", 169, commit=160, previous="v4")
    w.append("incident.opened", 170, environment=prod, incident=2)
    w.deploy(prod, 7, "v7", 193, commit=None, previous="v6")
    # Staging: a deploy, a kill switch and an incident there count for staging only.
    w.deploy("staging", 8, "s8", 194, commit=190, previous=None)
    w.append(EventKind.FLAG_KILLED, 195, environment="staging", flag="checkout", rollback=True)
    w.append("incident.opened", 196, environment="staging", incident=3)
    w.append("incident.opened", 220, environment=prod, incident=4)
    w.deploy(prod, 9, "v9", 290, commit=286, previous="v7")
    w.append(EventKind.RELEASE_DECISION, 291, environment=prod, deploy_id=9, verdict="rollback")
    back = {
        "deploy_id": 9,
        "from": "v9",
        "to": "v7",
        "weights": {"v7": 100, "v9": 0},
    }
    w.append(EventKind.ROLLBACK, 291, environment=prod, **back)
    w.deploy(prod, 10, "v10", 300, commit=299, previous="v7")
