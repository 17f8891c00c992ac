import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.errors import InfrastructureError
from conveyor.store import EventKind, LockState, NewJob, NewRun, Store

# A process that takes the lock of group "deploy" and dies holding it.
_DYING_HOLDER = """
import sys
from pathlib import Path
from conveyor.store import NewJob, NewRun, Store

with Store(Path(sys.argv[1]), sys.argv[2] or None) as store:
    run_id = store.create_run(NewRun("ci"), [NewJob("deploy", "deploy")])
    print(store.lock_enqueue("deploy", run_id, "deploy", supersede=False).state)
"""


@pytest.fixture
def stores(tmp_path: Path, store_url: str | None) -> Iterator[tuple[Store, Store]]:
    """Two independent Store instances on one database, as two conveyor processes have."""
    with Store(tmp_path, store_url) as first, Store(tmp_path, store_url) as second:
        yield first, second


def _run(store: Store) -> int:
    return store.create_run(NewRun("ci"), [NewJob("deploy", "deploy")])


def test_the_first_ticket_holds_and_the_next_waits_until_release(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    holder = first.lock_enqueue("deploy", _run(first), "deploy", supersede=False)
    waiter = second.lock_enqueue("deploy", _run(second), "deploy", supersede=False)

    assert holder.state is LockState.HOLDING
    assert waiter.state is LockState.QUEUED
    assert second.lock_poll(waiter.id) is LockState.QUEUED

    first.lock_release(holder.id)

    assert first.lock_poll(holder.id) is LockState.RELEASED
    assert second.lock_poll(waiter.id) is LockState.HOLDING


def test_waiters_acquire_in_fifo_order(stores: tuple[Store, Store]) -> None:
    first, second = stores
    holder = first.lock_enqueue("deploy", _run(first), "deploy", supersede=False)
    older = second.lock_enqueue("deploy", _run(second), "deploy", supersede=False)
    newer = first.lock_enqueue("deploy", _run(first), "deploy", supersede=False)

    first.lock_release(holder.id)

    assert first.lock_poll(newer.id) is LockState.QUEUED  # polling first does not jump the queue
    assert second.lock_poll(older.id) is LockState.HOLDING
    second.lock_release(older.id)
    assert first.lock_poll(newer.id) is LockState.HOLDING


def test_groups_are_independent(stores: tuple[Store, Store]) -> None:
    first, second = stores
    deploy = first.lock_enqueue("deploy", _run(first), "deploy", supersede=False)
    docs = second.lock_enqueue("docs", _run(second), "deploy", supersede=False)
    assert (deploy.state, docs.state) == (LockState.HOLDING, LockState.HOLDING)


def test_supersede_replaces_queued_tickets_of_other_runs(stores: tuple[Store, Store]) -> None:
    first, second = stores
    holder_run, old_run, new_run = _run(first), _run(second), _run(first)
    holder = first.lock_enqueue("deploy", holder_run, "deploy", supersede=True)
    old = second.lock_enqueue("deploy", old_run, "deploy", supersede=True)
    same_run_earlier = first.lock_enqueue("deploy", new_run, "migrate", supersede=False)

    newest = first.lock_enqueue("deploy", new_run, "deploy", supersede=True)

    assert [(t.id, t.run_id, t.state) for t in newest.superseded] == [
        (old.id, old_run, LockState.SUPERSEDED)
    ]
    assert second.lock_poll(old.id) is LockState.SUPERSEDED
    assert first.lock_poll(holder.id) is LockState.HOLDING  # a holder is never superseded
    assert first.lock_poll(same_run_earlier.id) is LockState.QUEUED  # nor its own run's tickets
    superseded_events = [
        e for e in first.events(run_id=old_run) if e.kind == EventKind.LOCK_SUPERSEDED
    ]
    assert [e.data["by_run"] for e in superseded_events] == [new_run]

    first.lock_release(holder.id)
    assert first.lock_poll(newest.id) is LockState.QUEUED
    assert first.lock_poll(same_run_earlier.id) is LockState.HOLDING


def test_a_dead_holder_is_released_so_the_group_is_not_blocked(
    tmp_path: Path, store_url: str | None
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _DYING_HOLDER, str(tmp_path), store_url or ""],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "holding"

    with Store(tmp_path, store_url) as store:
        ticket = store.lock_enqueue("deploy", _run(store), "deploy", supersede=False)

        assert ticket.state is LockState.HOLDING
        released = [e for e in store.events() if e.kind == EventKind.LOCK_RELEASED]
        assert [(e.actor, e.data["reason"]) for e in released] == [
            ("conveyor", "its conveyor process died")
        ]


def test_release_is_idempotent_and_unknown_tickets_are_refused(
    stores: tuple[Store, Store],
) -> None:
    first, _ = stores
    ticket = first.lock_enqueue("deploy", _run(first), "deploy", supersede=False)
    first.lock_release(ticket.id)
    count = len(first.events())

    first.lock_release(ticket.id)

    assert len(first.events()) == count
    with pytest.raises(InfrastructureError, match="lock ticket 999"):
        first.lock_poll(999)


def test_at_most_one_holder_when_many_stores_compete(tmp_path: Path, store_url: str | None) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def compete(rounds: int) -> None:
        try:
            with Store(tmp_path, store_url) as store:
                run_id = _run(store)
                start.wait()
                for _ in range(rounds):
                    ticket = store.lock_enqueue("deploy", run_id, "deploy", supersede=False)
                    try:  # release even on error, so the other threads cannot wait forever
                        while store.lock_poll(ticket.id) is not LockState.HOLDING:
                            time.sleep(0.001)
                        for _ in range(3):  # hold it across other transactions
                            store.get_jobs(run_id)
                            time.sleep(0.001)
                    finally:
                        store.lock_release(ticket.id)
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)

    Store(tmp_path, store_url).close()  # create the tables before the threads race
    threads = [threading.Thread(target=compete, args=(5,), daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with Store(tmp_path, store_url) as store:
        # The log is in commit order: each acquisition must be released before the next one.
        handovers = [
            (e.kind, e.data["ticket"])
            for e in store.events()
            if e.kind in (EventKind.LOCK_ACQUIRED, EventKind.LOCK_RELEASED)
        ]
    assert len(handovers) == 40
    for acquired, released in zip(handovers[::2], handovers[1::2], strict=True):
        assert acquired[0] == EventKind.LOCK_ACQUIRED
        assert released == (EventKind.LOCK_RELEASED, acquired[1])
