"""Feature flags per environment: definitions, pure evaluation, the store, an HTTP API and
an OpenFeature provider (docs/flags.md)."""

from conveyor.flags.evaluate import Evaluation, Reason, evaluate, normalized_hash
from conveyor.flags.model import Constraint, Flag, Operator, Segment, Variant
from conveyor.flags.store import FlagLedger, FlagRecord, Snapshot

__all__ = [
    "Constraint",
    "Evaluation",
    "Flag",
    "FlagLedger",
    "FlagRecord",
    "Operator",
    "Reason",
    "Segment",
    "Snapshot",
    "Variant",
    "evaluate",
    "normalized_hash",
]
