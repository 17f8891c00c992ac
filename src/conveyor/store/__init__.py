"""Durable state: the event log, run/job projections, job cache, locks and blobs."""

from conveyor.store.blobs import BlobStore
from conveyor.store.db import default_url
from conveyor.store.migrate import open_engine
from conveyor.store.records import (
    CacheEntry,
    EventKind,
    EventRecord,
    JobRecord,
    LockState,
    LockTicket,
    NewJob,
    NewRun,
    RunRecord,
)
from conveyor.store.store import Store

__all__ = [
    "BlobStore",
    "CacheEntry",
    "EventKind",
    "EventRecord",
    "JobRecord",
    "LockState",
    "LockTicket",
    "NewJob",
    "NewRun",
    "RunRecord",
    "Store",
    "default_url",
    "open_engine",
]
