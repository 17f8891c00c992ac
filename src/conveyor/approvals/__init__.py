"""Approval gates: people who did not write a change accept it before it is deployed
(docs/approvals.md). Identities come from the users file, decisions go into the event log
and the audit chain, and `service/environments.deploy` refuses a gated environment
without an approved request."""

from conveyor.approvals.ledger import ApprovalLedger, Attempt, NewRequest
from conveyor.approvals.model import (
    ApprovalRequest,
    ApprovalState,
    ApprovalStatus,
    Decision,
    Refusal,
    Refused,
    Verdict,
)
from conveyor.approvals.users import User, UsersFile

__all__ = [
    "ApprovalLedger",
    "ApprovalRequest",
    "ApprovalState",
    "ApprovalStatus",
    "Attempt",
    "Decision",
    "NewRequest",
    "Refusal",
    "Refused",
    "User",
    "UsersFile",
    "Verdict",
]
