"""The run queue shared by servers: every entry is claimed once however many claim at
once; on PostgreSQL an entry being claimed is passed over, not waited for, and an empty
queue is polled without the write lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from conveyor.store import Store
from conveyor.store import queue as run_queue_store
from conveyor.store.db import write_transaction
from conveyor.store.procs import ProcessIdentity, this_process
from conveyor.store.queue import NewQueued, QueueState
from conveyor.store.schema import run_queue
from pg_server import PostgresServer

T = TypeVar("T")
PROMPT_SECONDS = 5.0  # only bounds a claim that waits; an answer takes milliseconds

ENTRY = NewQueued(
    repository="/srv/repo.git",
    commit_sha="abc123",
    branch="main",
    trigger={"kind": "manual"},
    actor="ada",
    options={},
)


@pytest.fixture
def stores(tmp_path: Path, store_url: str | None) -> Iterator[tuple[Store, Store]]:
    """Two stores on one database, as two servers have."""
    with Store(tmp_path, store_url) as first, Store(tmp_path, store_url) as second:
        yield first, second


def test_each_entry_is_claimed_once_when_servers_claim_at_once(
    stores: tuple[Store, Store],
) -> None:
    first = stores[0]
    queued = [run_queue_store.enqueue(first.engine, ENTRY) for _ in range(12)]
    claimed: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def claim_all(store: Store) -> None:
        try:
            start.wait()
            while (entry := run_queue_store.claim_next(store.engine, this_process())) is not None:
                claimed.append(entry.id)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=claim_all, args=(store,)) for store in stores * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(claimed) == queued
    states = {entry.state for entry in run_queue_store.pending(first.engine)}
    assert states == {QueueState.CLAIMED}


@pytest.fixture
def postgres_stores(
    tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[tuple[Store, Store]]:
    url = postgres_server.url(postgres_server.new_database())
    with Store(tmp_path, url) as first, Store(tmp_path, url) as second:
        yield first, second


def promptly(call: Callable[[], T]) -> T:
    """`call()`'s result, failing the test if it waits (for a lock) instead of answering."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(call).result(timeout=PROMPT_SECONDS)
    except FutureTimeout:
        pytest.fail("it waited for a lock instead of answering")
    finally:
        pool.shutdown(wait=False)  # a waiting call ends when the test lets go of the lock


@pytest.mark.real
def test_an_entry_being_claimed_is_passed_over_and_cannot_be_cancelled(
    postgres_stores: tuple[Store, Store],
) -> None:
    first, second = postgres_stores
    oldest = run_queue_store.enqueue(first.engine, ENTRY)
    newer = run_queue_store.enqueue(first.engine, ENTRY)
    with first.engine.connect() as claiming, claiming.begin():
        # Another server, half-way through claiming the oldest: it holds the row's lock.
        claiming.execute(
            sa.select(run_queue.c.id).where(run_queue.c.id == oldest).with_for_update()
        )

        entry = promptly(lambda: run_queue_store.claim_next(second.engine, this_process()))
        cancelled = promptly(lambda: run_queue_store.cancel_queued(second.engine, oldest, "bob"))

    assert entry is not None and entry.id == newer
    assert cancelled is False
    last = run_queue_store.claim_next(second.engine, this_process())
    assert last is not None and last.id == oldest  # its claimer gave up: free again


@pytest.mark.real
def test_polling_an_empty_queue_does_not_wait_for_the_write_lock(
    postgres_stores: tuple[Store, Store],
) -> None:
    first, second = postgres_stores
    with write_transaction(first.engine) as conn:  # a long write elsewhere holds the lock
        conn.execute(sa.select(run_queue.c.id))
        polled = promptly(lambda: run_queue_store.claim_next(second.engine, this_process()))

    assert polled is None


def _claimed_elsewhere(store: Store, minutes_ago: float) -> int:
    """An entry claimed by a process on another host, `minutes_ago`."""
    queue_id = run_queue_store.enqueue(store.engine, ENTRY)
    far = ProcessIdentity(pid=4242, host="far-away-host", started=1)
    assert run_queue_store.claim_next(store.engine, far) is not None
    with write_transaction(store.engine) as conn:
        conn.execute(
            run_queue.update()
            .where(run_queue.c.id == queue_id)
            .values(claimed_at=time.time() - minutes_ago * 60)
        )
    return queue_id


@pytest.mark.real
def test_an_entry_of_another_host_is_queued_again_only_once_its_lock_is_free(
    postgres_stores: tuple[Store, Store],
) -> None:
    """No pid can be checked across hosts: the run's process holds the entry's session
    lock, which the database frees when that process, or its host, is gone."""
    first, second = postgres_stores
    fresh = _claimed_elsewhere(first, minutes_ago=0)  # its process may not hold it yet
    running = _claimed_elsewhere(first, minutes_ago=5)
    lost = _claimed_elsewhere(first, minutes_ago=5)

    with run_queue_store.held_by_this_process(first.engine, running):  # its process lives
        assert run_queue_store.requeue_orphans(second.engine) == [lost]
    states = {entry.id: entry.state for entry in run_queue_store.pending(first.engine)}
    assert states == {
        fresh: QueueState.CLAIMED,
        running: QueueState.CLAIMED,
        lost: QueueState.QUEUED,
    }
    assert run_queue_store.requeue_orphans(second.engine) == [running]  # its lock is free now


def test_on_sqlite_an_entry_of_another_host_is_never_taken_for_dead(tmp_path: Path) -> None:
    """SQLite is one machine's: an entry claimed elsewhere cannot be, and stays as it is."""
    with Store(tmp_path) as store:
        queue_id = _claimed_elsewhere(store, minutes_ago=5)
        with run_queue_store.held_by_this_process(store.engine, queue_id):
            pass
        assert run_queue_store.requeue_orphans(store.engine) == []
