"""A dead owner whose pid the kernel gave to another process is still dead: owners are
recorded with their start time (/proc/PID/stat field 22), not by pid alone.

The reuse is made real without waiting for pids to wrap: a holder takes a lock and dies,
then its ticket's pid is pointed at a live process (`sleep`), as if that process had been
handed the pid. Its start time is not the holder's, so the ticket is released.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.store import EventKind, LockState, NewJob, NewRun, Store
from conveyor.store.procs import is_dead_here, start_time, this_process
from conveyor.store.schema import lock_tickets

_DYING_HOLDER = """
import sys
from pathlib import Path
from conveyor.store import NewJob, NewRun, Store

with Store(Path(sys.argv[1]), sys.argv[2] or None) as store:
    run_id = store.create_run(NewRun("ci"), [NewJob("deploy", "deploy")])
    print(store.lock_enqueue("deploy", run_id, "deploy", supersede=False).id)
"""


@pytest.fixture
def spawn() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start a live process: the one the kernel hands the dead holder's pid to. Started
    after the holder died, as a reused pid's process is."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        started.append(subprocess.Popen(["sleep", "60"]))
        return started[-1]

    yield start
    for process in started:
        process.kill()
        process.wait()


def dead_holder_ticket(state: Path, url: str | None) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _DYING_HOLDER, str(state), url or ""],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def point_ticket_at(state: Path, url: str | None, ticket_id: int, pid: int) -> None:
    with Store(state, url) as store, store.engine.begin() as conn:
        conn.execute(sa.update(lock_tickets).where(lock_tickets.c.id == ticket_id).values(pid=pid))


def _run(store: Store) -> int:
    return store.create_run(NewRun("ci"), [NewJob("deploy", "deploy")])


def test_a_lock_whose_dead_holders_pid_was_reused_is_released(
    tmp_path: Path, store_url: str | None, spawn: Callable[[], subprocess.Popen[bytes]]
) -> None:
    ticket_id = dead_holder_ticket(tmp_path, store_url)
    point_ticket_at(tmp_path, store_url, ticket_id, spawn().pid)  # the pid, reused

    with Store(tmp_path, store_url) as store:
        ticket = store.lock_enqueue("deploy", _run(store), "deploy", supersede=False)

        assert ticket.state is LockState.HOLDING
        released = [e for e in store.events() if e.kind == EventKind.LOCK_RELEASED]
        assert [(e.data["ticket"], e.data["reason"]) for e in released] == [
            (ticket_id, "its conveyor process died")
        ]


def test_a_live_holder_keeps_its_lock(
    tmp_path: Path, store_url: str | None, spawn: Callable[[], subprocess.Popen[bytes]]
) -> None:
    ticket_id = dead_holder_ticket(tmp_path, store_url)
    other_process = spawn()
    point_ticket_at(tmp_path, store_url, ticket_id, other_process.pid)
    with Store(tmp_path, store_url) as store, store.engine.begin() as conn:
        started = start_time(other_process.pid)
        conn.execute(
            sa.update(lock_tickets)
            .where(lock_tickets.c.id == ticket_id)
            .values(pid_started=started)  # it really is that process's ticket
        )

    with Store(tmp_path, store_url) as store:
        ticket = store.lock_enqueue("deploy", _run(store), "deploy", supersede=False)

        assert ticket.state is LockState.QUEUED


def test_liveness_compares_the_start_time() -> None:
    me = this_process()
    host = socket.gethostname()

    assert me.started is not None and me.started == start_time(os.getpid())
    assert not is_dead_here(me.pid, host, me.started)
    assert is_dead_here(me.pid, host, me.started + 1)  # same pid, another process
    assert not is_dead_here(me.pid, host, None)  # recorded without a start time: pid only
    assert not is_dead_here(me.pid, "another-host", me.started + 1)
