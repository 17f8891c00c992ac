"""The audit log: a SHA-256 hash chain over the events that record decisions.

Every audited event gets, in the same transaction, an entry holding the digest of the
event's content and the hash of the previous entry. `verify` recomputes both, so editing
or deleting an audited event, or editing, deleting or reordering entries, is found.
Deleting the newest entries together with their events leaves a shorter valid chain, and
someone who can write the database can rewrite every entry and recompute every hash: so
the head is signed with the project's key (service/audit.py) and kept as a `SignedHead`,
and `check_signed_head` holds the chain to the last one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from conveyor.store.records import EventKind
from conveyor.store.schema import audit_log, audit_signed_heads, events

GENESIS = "0" * 64
AUDITED = frozenset(
    {
        EventKind.DEPLOY_STARTED.value,
        EventKind.DEPLOY_FINISHED.value,
        EventKind.ROLLBACK.value,
        EventKind.RELEASE_COMMAND.value,
        EventKind.FLAG_CHANGED.value,
        EventKind.FLAG_KILLED.value,
        EventKind.APPROVAL_REQUESTED.value,
        EventKind.APPROVAL_GRANTED.value,
        EventKind.APPROVAL_REJECTED.value,
        EventKind.APPROVAL_REFUSED.value,
        EventKind.APPROVAL_EXPIRED.value,
        EventKind.BASELINE_ACCEPTED.value,
    }
)
GATE_REPORT_PREFIX = "gate"  # report.added events of gate decisions are audited too


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    event_id: int
    ts: float
    kind: str
    actor: str | None
    event_digest: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Problem:
    seq: int | None
    event_id: int | None
    what: str


@dataclass(frozen=True)
class SignedHead:
    """The chain's first `entries` entries ended at `head`, said the key `key_id` at
    `signed_at`; `signature` (base64) signs `payload()`."""

    entries: int
    head: str
    signed_at: float
    key_id: str
    signature: str

    def payload(self) -> bytes:
        return signed_head_payload(self.entries, self.head, self.signed_at)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SignedHead:
        """A stored head; ValueError when it is not one."""
        try:
            head = cls(
                entries=int(data["entries"]),
                head=str(data["head"]),
                signed_at=float(data["signed_at"]),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a signed head: {error}") from None
        if head.entries < 1:
            raise ValueError("a signed head covers at least one entry")
        return head


def signed_head_payload(entries: int, head: str, signed_at: float) -> bytes:
    """What a head's signature signs; the prefix keeps it from meaning anything else."""
    fields = {"entries": entries, "head": head, "signed_at": signed_at}
    return b"conveyor-audit-head-v1\n" + json.dumps(fields, sort_keys=True).encode()


def is_audited(row: Mapping[str, Any]) -> bool:
    kind = str(row["kind"])
    if kind in AUDITED:
        return True
    data = row.get("data") or {}
    return kind == EventKind.REPORT_ADDED.value and str(data.get("kind", "")).startswith(
        GATE_REPORT_PREFIX
    )


def event_digest(event: Mapping[str, Any]) -> str:
    """The digest of what an event says (its id included, so it cannot be moved)."""
    fields = {name: event.get(name) for name in _EVENT_FIELDS}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def chain_hash(prev_hash: str, seq: int, event_digest_hex: str) -> str:
    return hashlib.sha256(f"{prev_hash}:{seq}:{event_digest_hex}".encode()).hexdigest()


def record(conn: sa.Connection, event_id: int, row: Mapping[str, Any]) -> None:
    """Chain the event `event_id` (inserted as `row`) into the audit log."""
    last = conn.execute(
        sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    digest = event_digest({**row, "id": event_id})
    conn.execute(
        sa.insert(audit_log).values(
            seq=seq,
            event_id=event_id,
            ts=row["ts"],
            kind=row["kind"],
            actor=row.get("actor"),
            event_digest=digest,
            prev_hash=prev,
            hash=chain_hash(prev, seq, digest),
        )
    )


def entries(conn: sa.Connection, last: int | None = None) -> list[AuditEntry]:
    query = sa.select(audit_log).order_by(audit_log.c.seq)
    rows = [AuditEntry(**dict(row._mapping)) for row in conn.execute(query)]
    return rows[-last:] if last else rows


def entries_before(conn: sa.Connection, before: int | None, limit: int) -> list[AuditEntry]:
    """Up to `limit` entries, newest first, below sequence number `before` (a page)."""
    query = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(audit_log.c.seq < before)
    return [AuditEntry(**dict(row._mapping)) for row in conn.execute(query)]


def head(conn: sa.Connection) -> AuditEntry | None:
    found = entries(conn, last=1)
    return found[0] if found else None


def check(
    conn: sa.Connection, expected_head: str | None = None
) -> tuple[list[AuditEntry], list[Problem]]:
    """The chain and every way it and the events disagree, each table read once."""
    problems: list[Problem] = []
    prev = GENESIS
    chain = entries(conn)
    stored = {row.id: dict(row._mapping) for row in conn.execute(sa.select(events))}
    for index, entry in enumerate(chain, start=1):
        if entry.seq != index:
            problems.append(Problem(entry.seq, entry.event_id, f"entry {index} is missing"))
        if entry.prev_hash != prev:
            problems.append(Problem(entry.seq, entry.event_id, "the chain is broken here"))
        if entry.hash != chain_hash(entry.prev_hash, entry.seq, entry.event_digest):
            problems.append(Problem(entry.seq, entry.event_id, "the entry was edited"))
        prev = entry.hash
        problems += _event_problem(stored.get(entry.event_id), entry)
    problems += _unchained_events(stored, {entry.event_id for entry in chain})
    if expected_head is not None and prev != expected_head:
        problems.append(Problem(None, None, f"the head is {prev[:16]}, not {expected_head[:16]}"))
    return chain, problems


def _event_problem(event: dict[str, Any] | None, entry: AuditEntry) -> list[Problem]:
    if event is None:
        return [Problem(entry.seq, entry.event_id, f"event {entry.event_id} was deleted")]
    if event_digest(event) != entry.event_digest:
        return [Problem(entry.seq, entry.event_id, f"event {entry.event_id} was edited")]
    return []


def _unchained_events(stored: dict[int, dict[str, Any]], chained: set[int]) -> list[Problem]:
    """Audited events without an entry: inserted behind the store's back."""
    return [
        Problem(None, event_id, f"event {event_id} is not chained")
        for event_id, event in sorted(stored.items())
        if is_audited(event) and event_id not in chained
    ]


_EVENT_FIELDS = ("id", "ts", "kind", "run_id", "job_id", "state", "commit_sha", "actor", "data")


def save_signed_head(conn: sa.Connection, head: SignedHead) -> None:
    conn.execute(sa.insert(audit_signed_heads).values(**head.to_json()))


def signed_heads(conn: sa.Connection) -> list[SignedHead]:
    query = sa.select(audit_signed_heads).order_by(audit_signed_heads.c.id)
    heads = []
    for row in conn.execute(query):
        fields = dict(row._mapping)
        fields.pop("id")
        heads.append(SignedHead.from_json(fields))
    return heads


def check_signed_head(chain: list[AuditEntry], signed: SignedHead) -> Problem | None:
    """A problem when the chain no longer holds what `signed` (a verified head) says.

    Entry N's hash commits to every entry before it, so one comparison finds an edit,
    deletion or recomputation anywhere in the first N entries."""
    when = datetime.fromtimestamp(signed.signed_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if len(chain) < signed.entries:
        return Problem(
            None,
            None,
            f"the chain has {len(chain)} entries, fewer than the {signed.entries} of the head "
            f"signed {when}: entries were deleted",
        )
    now = chain[signed.entries - 1].hash
    if now != signed.head:
        return Problem(
            signed.entries,
            chain[signed.entries - 1].event_id,
            f"the chain was rewritten since the signed head of {signed.entries} entries "
            f"(signed {when}): entry {signed.entries} hashes to {now[:16]}, the signed head "
            f"says {signed.head[:16]}",
        )
    return None
