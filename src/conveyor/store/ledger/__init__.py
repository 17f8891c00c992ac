"""The release controller's ledger, one module per aggregate.

- `environments`: each environment's ports and intent (routes, live and warm releases);
- `releases`: the releases started in an environment and their states;
- `deploys`: deploys, their progress and the commands people send them;
- `samples`: the golden signals sampled per release, and their retention;
- `history`: environment events and the deploy/rollback history folded from them.

Every change of intent appends its event in the same transaction, so history is read back
from the event log and the tables are projections the controller reconciles to after a
crash. `DeployLedger` only groups the aggregates over one engine for the controller.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from conveyor.store.ledger.deploys import DeployRecord, Deploys
from conveyor.store.ledger.environments import EnvironmentRecord, Environments
from conveyor.store.ledger.history import History, HistoryEntry
from conveyor.store.ledger.releases import ReleaseRecord, Releases
from conveyor.store.ledger.samples import Retention, SampleRow, Samples
from conveyor.store.procs import ProcessIdentity


@dataclass(frozen=True)
class DeployLedger:
    environments: Environments
    releases: Releases
    deploys: Deploys
    samples: Samples
    history: History

    @classmethod
    def over(cls, engine: sa.Engine, owner: ProcessIdentity) -> DeployLedger:
        return cls(
            environments=Environments(engine),
            releases=Releases(engine),
            deploys=Deploys(engine, owner),
            samples=Samples(engine),
            history=History(engine),
        )


__all__ = [
    "DeployLedger",
    "DeployRecord",
    "Deploys",
    "EnvironmentRecord",
    "Environments",
    "History",
    "HistoryEntry",
    "ReleaseRecord",
    "Releases",
    "Retention",
    "SampleRow",
    "Samples",
]
