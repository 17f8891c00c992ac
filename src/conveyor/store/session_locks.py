"""Named locks held by a database session: one controller per environment across machines.

On one machine the controller holds an fcntl lock, which the kernel frees when its
process dies. Servers sharing a PostgreSQL use the database's session advisory locks
instead, which the server frees when the holding session ends: a clean exit, a crash or
a SIGKILL of the holder (its socket closes), or a lost connection. SQLite has no sessions
to hold them: there the fcntl lock stays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from conveyor.errors import ConveyorError, InfrastructureError

# A bigint advisory key is split over classid (high half) and objid (low half).
_HOLDER_OF = sa.text(
    "SELECT activity.application_name FROM pg_locks AS lock"
    " JOIN pg_stat_activity AS activity ON activity.pid = lock.pid"
    " WHERE lock.locktype = 'advisory' AND lock.granted AND lock.objsubid = 1"
    " AND lock.classid::bigint = :high AND lock.objid::bigint = :low"
)
_IS_HELD = sa.text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks AS lock"
    " WHERE lock.locktype = 'advisory' AND lock.granted AND lock.objsubid = 1"
    " AND lock.classid::bigint = :high AND lock.objid::bigint = :low)"
)


class SessionLockHeld(ConveyorError):
    """Another session holds the lock."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(
            f"{name} is held by {holder}",
            hint="wait for it; the lock frees itself when its holder's session ends",
        )
        self.holder = holder


def lock_key(name: str) -> int:
    """A stable key for `name` in PostgreSQL's one space of bigint advisory lock keys."""
    digest = hashlib.sha256(f"conveyor session lock:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class HeldSession:
    """A session lock being held: `alive` says whether its session still is."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def alive(self) -> bool:
        """False once the holding session is gone (the connection was cut, the server
        restarted or terminated it): the lock is free for others, whatever this process
        still believes. Call it from the thread that took the lock."""
        try:
            self._conn.execute(sa.text("SELECT 1"))
        except DBAPIError:
            return False
        return True


@contextmanager
def session_lock(engine: sa.Engine, name: str, holder: str) -> Iterator[HeldSession]:
    """Hold lock `name` for the block, on a connection of its own; `holder` (a process's
    description) is what a refused caller is told. Raises SessionLockHeld at once when
    another session holds it."""
    if engine.dialect.name != "postgresql":
        raise InfrastructureError(
            f"session locks need PostgreSQL, not {engine.dialect.name}",
            hint="on one machine the controller's fcntl lock does this",
        )
    key = lock_key(name)
    with engine.connect() as opened:
        conn = opened.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(
            sa.text("SELECT set_config('application_name', :holder, false)"), {"holder": holder}
        )
        try:
            taken = conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
            if not taken.scalar_one():
                raise SessionLockHeld(name, _holder_of(conn, key))
            yield HeldSession(conn)
        finally:
            conn.invalidate()  # closes the session: frees the lock, forgets application_name


def is_held(conn: sa.Connection, name: str) -> bool:
    """Whether some session holds lock `name` now, asked on any connection (a pooled one:
    no session of its own, no lock taken). A probe: it may be taken the moment after."""
    return bool(conn.execute(_IS_HELD, _key_halves(lock_key(name))).scalar())


def _holder_of(conn: sa.Connection, key: int) -> str:
    return conn.execute(_HOLDER_OF, _key_halves(key)).scalar() or "another session"


def _key_halves(key: int) -> dict[str, int]:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF}
