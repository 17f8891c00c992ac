"""One controller per environment: the lock a controller holds while it changes one.

Which lock depends on where the ledger is, since the lock must be seen by every process
that could drive the environment:
- `sqlite` (one machine): an fcntl lock on a file in the state folder. The kernel frees
  it when its holder dies, however it dies.
- `postgresql` (any number of servers on one database): a session advisory lock
  (store/session_locks.py). The database frees it when the holder's session ends: its
  process died, or its connection was cut.

A session can end while its process still runs: the lock is then free for another
controller, which adopts the deploy. So a holder checks the lock before each change
(`check`, called with every check for a superseded intent) and stops without touching
anything when it was lost (`EnvironmentLockLost`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import sqlalchemy as sa

from conveyor.errors import ConveyorError
from conveyor.store.session_locks import HeldSession, SessionLockHeld, is_held, session_lock


class EnvironmentLockHeld(ConveyorError):
    """Another controller changes the environment now."""

    def __init__(self, environment: str, holder: str) -> None:
        super().__init__(
            f"{environment} is being changed by {holder}",
            hint="wait for it, or `conveyor rollback` (which does not wait)",
        )
        self.holder = holder


class EnvironmentLockLost(ConveyorError):
    """This controller's lock ended under it: another may have adopted the deploy."""


class EnvironmentLock(Protocol):
    """The lock of one environment's controller."""

    def hold(self) -> contextlib.AbstractContextManager[None]:
        """Held for the block; raises EnvironmentLockHeld at once if another holds it."""
        ...

    def check(self) -> None:
        """Raises EnvironmentLockLost if this holder's lock ended; nothing when not held."""
        ...

    def is_free(self) -> bool:
        """Whether no controller holds it now, without taking it (an adoption poll's
        probe, cheap enough for every second)."""
        ...


def holder_description() -> str:
    """Who holds a lock, as a refused controller is told."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


class FileLock:
    """fcntl on `path`: one machine; the kernel frees it with its holder."""

    def __init__(self, environment: str, path: Path) -> None:
        self.environment = environment
        self.path = path

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise EnvironmentLockHeld(self.environment, holder) from None
            handle.truncate(0)
            handle.write(f"{holder_description()}\n")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def check(self) -> None:
        """A kernel lock is never lost while its holder lives."""

    def is_free(self) -> bool:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return True  # never held
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(handle, fcntl.LOCK_UN)
            return True


class SessionLock:
    """A PostgreSQL session advisory lock: every server on the database sees it."""

    def __init__(self, environment: str, engine: sa.Engine) -> None:
        self.environment = environment
        self.engine = engine
        self._held: HeldSession | None = None

    @property
    def _name(self) -> str:
        return f"environment {self.environment}"

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        try:
            with session_lock(self.engine, self._name, holder_description()) as held:
                self._held = held
                try:
                    yield
                finally:
                    self._held = None
        except SessionLockHeld as refused:
            raise EnvironmentLockHeld(self.environment, refused.holder) from None

    def is_free(self) -> bool:
        with self.engine.connect() as conn:
            return not is_held(conn, self._name)

    def check(self) -> None:
        if self._held is not None and not self._held.alive():
            raise EnvironmentLockLost(
                f"{self.environment}: this controller's database session ended, and with "
                "it its lock; another controller adopts the deploy",
                hint="nothing was changed after the lock was lost",
            )


@dataclass(frozen=True)
class LockSite:
    """What any environment lock is made from."""

    environment: str
    engine: sa.Engine
    state_dir: Path


def _file_lock(site: LockSite) -> EnvironmentLock:
    return FileLock(
        site.environment, site.state_dir / "environments" / site.environment / "deploy.lock"
    )


def _session_lock(site: LockSite) -> EnvironmentLock:
    return SessionLock(site.environment, site.engine)


# By the store's SQL dialect: the lock lives where every possible controller looks.
LOCKS: Final[Mapping[str, Callable[[LockSite], EnvironmentLock]]] = {
    "sqlite": _file_lock,
    "postgresql": _session_lock,
}


def environment_lock(site: LockSite) -> EnvironmentLock:
    return LOCKS[site.engine.dialect.name](site)
