"""Every server is a standby controller of every environment: a deploy whose controller
died (a server or `conveyor deploy` killed, a machine lost, a database session cut) is
adopted by a server within about a second, and carried on from the step its progress
records (deploy/controller.py `reconcile`).

Which server adopts is decided by the environment's lock (deploy/locks.py): on
PostgreSQL a session advisory lock every server on the database sees, on one machine an
fcntl lock. A server polls for deploys in progress whose lock is free, and drives each
one it wins in a thread of its own, holding the lock until the deploy ends. If this
server dies in turn, its lock frees itself and another server adopts the deploy again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.concurrency import run_in_threadpool

from conveyor.deploy.locks import EnvironmentLockHeld
from conveyor.errors import ConveyorError
from conveyor.server.context import ServerContext
from conveyor.service import environments

POLL_SECONDS = 1.0  # part of the failover time: a dead controller's deploy waits this long
# context.parts: True when `conveyor server` adopts (its default). An app made in-process
# (the tests' servers, over ledgers they fill by hand) adopts nothing unless told to.
ADOPT_SETTING = "controllers.adopt"
log = logging.getLogger("conveyor.server.controllers")


class Adopter:
    """Polls for orphaned deploys and carries each on in a thread of its own."""

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.stop = threading.Event()
        self.driving: dict[str, threading.Thread] = {}  # environment -> its thread
        self._failures: dict[str, str] = {}  # environment -> the last error logged

    def run(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception:  # a store gone away: try again at the next poll
                log.exception("deploys in progress could not be read")

    def poll(self) -> list[str]:
        """Start carrying on every orphaned deploy not driven here yet; their environments."""
        self.driving = {name: t for name, t in self.driving.items() if t.is_alive()}
        context = self.context
        found = environments.orphaned(context.project, context.store)
        started = [name for name in found if name not in self.driving]
        for name in started:
            thread = threading.Thread(
                target=self._adopt, args=(name,), name=f"conveyor-adopt-{name}", daemon=True
            )
            self.driving[name] = thread
            thread.start()
        return started

    def _adopt(self, name: str) -> None:
        context = self.context

        def say(text: str) -> None:
            log.info("%s: %s", name, text)

        try:
            outcome = environments.reconcile(context.project, context.store, name, say)
        except EnvironmentLockHeld:
            return  # another server won it
        except ConveyorError as error:
            self._failed(name, error.message)
            return
        except Exception as error:  # a bug, or the store gone: logged, never kills the server
            self._failed(name, repr(error), with_traceback=True)
            return
        self._failures.pop(name, None)
        if outcome is not None:
            log.warning(
                "%s: carried on deploy %s: %s", name, outcome.deploy_id, outcome.state.value
            )

    def _failed(self, name: str, reason: str, *, with_traceback: bool = False) -> None:
        """Say why once, not at every poll."""
        if self._failures.get(name) != reason:
            log.warning(
                "%s: the interrupted deploy cannot be carried on: %s",
                name,
                reason,
                exc_info=with_traceback,
            )
            self._failures[name] = reason


def configure_adoption(context: ServerContext, *, enabled: bool) -> None:
    context.parts[ADOPT_SETTING] = enabled


@asynccontextmanager
async def lifespan(context: ServerContext) -> AsyncIterator[None]:
    if context.parts.get(ADOPT_SETTING) is not True:
        yield
        return
    adopter = Adopter(context)
    thread = threading.Thread(target=adopter.run, name="conveyor-adopter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        adopter.stop.set()
        await run_in_threadpool(thread.join, POLL_SECONDS * 2)
