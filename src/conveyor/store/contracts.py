"""Contract records: the pacts consumer runs recorded and the verifications provider runs
made (tables `pacts` and `pact_verifications`, migration 0012). The pact files themselves
are blobs; a verification names the pact it verified by that blob's digest, so a later
consumer version whose pact is the same content inherits the verification (as the Pact
Broker does)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.schema import pact_verifications, pacts


@dataclass(frozen=True)
class PactRecord:
    consumer: str
    provider: str
    consumer_version: str
    run_id: int
    job_id: str
    digest: str
    interactions: list[str]
    ts: float = 0.0


@dataclass(frozen=True)
class FailedInteraction:
    interaction: str  # its description, as the pact names it
    mismatch: str  # what the provider answered instead

    def to_json(self) -> dict[str, str]:
        return {"interaction": self.interaction, "mismatch": self.mismatch}


@dataclass(frozen=True)
class VerificationRecord:
    provider: str
    provider_version: str
    run_id: int
    job_id: str
    consumer: str
    consumer_version: str
    pact_digest: str
    environment: str  # where that consumer version ran, or "latest"
    passed: bool
    failures: list[FailedInteraction] = field(default_factory=list)
    ts: float = 0.0


def record_pact(engine: sa.Engine, pact: PactRecord) -> None:
    values = {**pact.__dict__, "ts": pact.ts or time.time()}
    with write_transaction(engine) as conn:
        conn.execute(sa.insert(pacts).values(values))


def pacts_of_runs(
    engine: sa.Engine, run_ids: Iterable[int], *, consumer: str, provider: str
) -> list[PactRecord]:
    """The pacts of `consumer` with `provider` recorded by these runs, newest first."""
    query = (
        sa.select(pacts)
        .where(pacts.c.consumer == consumer, pacts.c.provider == provider)
        .where(pacts.c.run_id.in_(list(run_ids)))
        .order_by(pacts.c.id.desc())
    )
    with read_transaction(engine) as conn:
        return [_pact(row._mapping) for row in conn.execute(query)]


def latest_pact(engine: sa.Engine, *, consumer: str, provider: str) -> PactRecord | None:
    query = (
        sa.select(pacts)
        .where(pacts.c.consumer == consumer, pacts.c.provider == provider)
        .order_by(pacts.c.id.desc())
        .limit(1)
    )
    with read_transaction(engine) as conn:
        row = conn.execute(query).first()
    return _pact(row._mapping) if row else None


def record_verification(engine: sa.Engine, verification: VerificationRecord) -> None:
    values: dict[str, Any] = {**verification.__dict__}
    values["failures"] = [f.to_json() for f in verification.failures]
    values["ts"] = verification.ts or time.time()
    with write_transaction(engine) as conn:
        conn.execute(sa.insert(pact_verifications).values(values))


def verifications_of_runs(
    engine: sa.Engine, run_ids: Iterable[int], *, consumer: str, pact_digest: str
) -> list[VerificationRecord]:
    """What these provider runs found verifying that pact, newest first."""
    query = (
        sa.select(pact_verifications)
        .where(pact_verifications.c.run_id.in_(list(run_ids)))
        .where(pact_verifications.c.consumer == consumer)
        .where(pact_verifications.c.pact_digest == pact_digest)
        .order_by(pact_verifications.c.id.desc())
    )
    with read_transaction(engine) as conn:
        return [_verification(row._mapping) for row in conn.execute(query)]


def _pact(row: Any) -> PactRecord:
    return PactRecord(
        consumer=row["consumer"],
        provider=row["provider"],
        consumer_version=row["consumer_version"],
        run_id=row["run_id"],
        job_id=row["job_id"],
        digest=row["digest"],
        interactions=list(row["interactions"]),
        ts=row["ts"],
    )


def _verification(row: Any) -> VerificationRecord:
    return VerificationRecord(
        provider=row["provider"],
        provider_version=row["provider_version"],
        run_id=row["run_id"],
        job_id=row["job_id"],
        consumer=row["consumer"],
        consumer_version=row["consumer_version"],
        pact_digest=row["pact_digest"],
        environment=row["environment"],
        passed=bool(row["passed"]),
        failures=[FailedInteraction(**f) for f in row["failures"]],
        ts=row["ts"],
    )
