"""Signed heads of the audit chain: a chain rewritten whole no longer verifies.

A hash chain in the database proves nothing to someone who can write the database: they
can edit an entry and recompute every hash after it. So each verification of an intact
chain, and each export of its head, signs the head (entry count and hash) with the
project's ed25519 key (`images.signing_key`, the key that signs provenance) and keeps the
signed head twice: in the database and in the state folder's `audit-heads.jsonl`.
`verify` then holds the chain to the last signed head whose signature the project's
public key accepts: entry N must still hash to what was signed.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.errors import ConveyorError
from conveyor.service.pages import Page, clamp_limit, decode_cursor, page_of
from conveyor.service.project import Project
from conveyor.store.audit import (
    AuditEntry,
    Problem,
    SignedHead,
    check_signed_head,
    entries_before,
)
from conveyor.store.db import read_transaction
from conveyor.store.private import open_private_append
from conveyor.store.store import Store
from conveyor.supply.keys import PUBLIC_SUFFIX, PublicKey, SigningKey, load_private, load_public

HEADS_FILENAME = "audit-heads.jsonl"


@dataclass(frozen=True)
class ProjectKey:
    """The project's key: the private key when this machine has it, else its .pub."""

    path: Path
    signer: SigningKey | None
    public: PublicKey | None


@dataclass(frozen=True)
class AuditVerdict:
    entries: int
    problems: list[Problem]
    checked_against: SignedHead | None  # the last signed head the chain was held to
    signed: SignedHead | None  # the head this verification signed (None: not signed)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def heads_path(project: Project) -> Path:
    return project.state_dir / HEADS_FILENAME


def project_key(project: Project) -> ProjectKey:
    from conveyor.service.images import images_config

    path = images_config(project).signing_key
    path = path if path.is_absolute() else project.directory / path
    if path.exists():
        signer = load_private(path)
        return ProjectKey(path, signer, signer.public)
    public = path.with_suffix(PUBLIC_SUFFIX)
    if public.exists():
        return ProjectKey(path, None, load_public(public))
    return ProjectKey(path, None, None)


def verify(project: Project, store: Store, expected_head: str | None = None) -> AuditVerdict:
    """Recompute the chain, hold it to the last signed head, and sign its head if intact."""
    key = project_key(project)
    chain, problems = store.audit_check(expected_head)
    heads, head_problems = _known_heads(project, store)
    problems += head_problems
    trusted, signature_problems, notes = _verified_heads(heads, key)
    problems += signature_problems
    last = max(trusted, key=lambda head: (head.entries, head.signed_at), default=None)
    if last is not None and (mismatch := check_signed_head(chain, last)) is not None:
        problems.append(mismatch)
    signed = None
    if not problems:
        signed, note = _sign(project, store, key, chain, last)
        notes += [note] if note else []
    return AuditVerdict(len(chain), problems, last, signed, notes)


def sign_head(project: Project, store: Store) -> SignedHead | None:
    """For an export: the current head, signed, when the chain verifies (else None)."""
    verdict = verify(project, store)
    if not verdict.intact:
        return None
    return verdict.signed or verdict.checked_against


def _sign(
    project: Project,
    store: Store,
    key: ProjectKey,
    chain: list[AuditEntry],
    last: SignedHead | None,
) -> tuple[SignedHead | None, str | None]:
    if not chain:
        return None, None
    if last is not None and (last.entries, last.head) == (len(chain), chain[-1].hash):
        return last, None  # already signed: the files do not grow at every verify
    if key.signer is None:
        return None, (
            f"the head was not signed: no private key at {key.path} "
            "(create one with `conveyor keys generate`)"
        )
    signed_at = round(time.time(), 3)
    unsigned = SignedHead(len(chain), chain[-1].hash, signed_at, key.signer.key_id, "")
    signature = base64.b64encode(key.signer.sign(unsigned.payload())).decode()
    head = SignedHead(unsigned.entries, unsigned.head, signed_at, unsigned.key_id, signature)
    _append(heads_path(project), head)  # outside the database first: it is the one that counts
    store.add_audit_signed_head(head)
    return head, None


def _known_heads(project: Project, store: Store) -> tuple[list[SignedHead], list[Problem]]:
    """The signed heads of the state folder's file and of the database, each once."""
    from_file, problems = _read_heads(heads_path(project))
    seen, heads = set(), []
    for head in [*from_file, *store.audit_signed_heads()]:
        if head.signature not in seen:
            seen.add(head.signature)
            heads.append(head)
    return heads, problems


def _verified_heads(
    heads: list[SignedHead], key: ProjectKey
) -> tuple[list[SignedHead], list[Problem], list[str]]:
    if heads and key.public is None:
        problem = Problem(
            None,
            None,
            f"{len(heads)} signed heads cannot be checked: the project's key "
            f"({key.path} or its {PUBLIC_SUFFIX}) is missing",
        )
        return [], [problem], []
    trusted, problems, other_keys = [], [], 0
    for head in heads:
        assert key.public is not None
        if head.key_id != key.public.key_id:
            other_keys += 1  # a rotated key: not this key's to judge
        elif _signature_verifies(head, key.public):
            trusted.append(head)
        else:
            problems.append(
                Problem(
                    None,
                    None,
                    f"the signed head of {head.entries} entries does not verify with the "
                    f"project's key {key.public.short_id}: it was forged or edited",
                )
            )
    notes = [f"{other_keys} signed heads of another key were not checked"] if other_keys else []
    return trusted, problems, notes


def _signature_verifies(head: SignedHead, public: PublicKey) -> bool:
    try:
        signature = base64.b64decode(head.signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    return public.verifies(signature, head.payload())


def _read_heads(path: Path) -> tuple[list[SignedHead], list[Problem]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError) as error:
        raise ConveyorError(f"cannot read the signed audit heads {path}: {error}") from None
    heads, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            heads.append(SignedHead.from_json(json.loads(line)))
        except (ValueError, AttributeError):
            problems.append(Problem(None, None, f"{path.name} line {number} is not a signed head"))
    return heads, problems


def _append(path: Path, head: SignedHead) -> None:
    line = json.dumps(head.to_json(), sort_keys=True) + "\n"
    with open_private_append(path) as handle:  # 0600, like the rest of the state folder
        handle.write(line)


def entries_page(
    store: Store, limit: int | None = None, cursor: str | None = None
) -> Page[AuditEntry]:
    """The audit log a page at a time, newest first (`conveyor audit log`'s entries)."""
    size = clamp_limit(limit)
    with read_transaction(store.engine) as conn:
        found = entries_before(conn, decode_cursor(cursor), size + 1)
    return page_of(found, size, lambda entry: entry.seq)
