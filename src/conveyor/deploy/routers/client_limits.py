"""How long a client may take and how many may be connected: the builtin router's limits.

Without them a few hundred connections that never finish a request (slowloris, or just
left open) hold as many file descriptors until the proxy can accept nothing. Each phase
has its own deadline, and the connections are counted: when all slots are taken, the
one that has waited longest for a request head makes room (as nginx reuses idle
keep-alive connections); when every slot has a request in flight, a new connection is
answered 503 at once and closed.
"""

from __future__ import annotations

import argparse
import enum
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

# Each client connection can hold one upstream connection too, plus the idle pool and
# the proxy's own files: what the descriptor limit must cover.
DESCRIPTORS_PER_CLIENT = 2
DESCRIPTORS_SPARE = 256


@dataclass(frozen=True)
class ClientLimits:
    header_timeout: float = 10.0  # connection (or first byte of a request) to end of head
    body_timeout: float = 30.0  # the longest wait for more request body, or for a client
    # to take more of the response
    idle_timeout: float = 60.0  # a kept-alive connection with no new request
    max_connections: int = 1024  # client connections open at once

    def arguments(self) -> list[str]:
        return [
            f"--header-timeout={self.header_timeout}",
            f"--body-timeout={self.body_timeout}",
            f"--idle-timeout={self.idle_timeout}",
            f"--max-connections={self.max_connections}",
        ]

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        defaults = ClientLimits()
        parser.add_argument("--header-timeout", type=float, default=defaults.header_timeout)
        parser.add_argument("--body-timeout", type=float, default=defaults.body_timeout)
        parser.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout)
        parser.add_argument("--max-connections", type=int, default=defaults.max_connections)

    @staticmethod
    def from_options(options: argparse.Namespace) -> ClientLimits:
        return ClientLimits(
            header_timeout=options.header_timeout,
            body_timeout=options.body_timeout,
            idle_timeout=options.idle_timeout,
            max_connections=fit_descriptor_limit(options.max_connections),
        )


def fit_descriptor_limit(max_connections: int) -> int:
    """Raise the soft descriptor limit to what `max_connections` needs, or lower the
    connection count to what the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections * DESCRIPTORS_PER_CLIENT + DESCRIPTORS_SPARE
    if soft != resource.RLIM_INFINITY and soft < needed:
        ceiling = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        soft = ceiling
    if soft != resource.RLIM_INFINITY and soft < needed:
        fitted = max(1, (soft - DESCRIPTORS_SPARE) // DESCRIPTORS_PER_CLIENT)
        print(
            f"max connections lowered from {max_connections} to {fitted}: "
            f"the descriptor limit is {soft}",
            file=sys.stderr,
        )
        return fitted
    return max_connections


class Phase(enum.Enum):
    WAITING = "waiting"  # for a request head: may be closed to make room
    BUSY = "busy"  # a request in flight (or a tunnel): never closed to make room


@dataclass(eq=False)
class Slot:
    close: Callable[[], None]
    phase: Phase = field(default=Phase.WAITING)


class ConnectionSlots:
    """At most `limit` connections; the oldest waiting one gives way to a new one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[Slot, None] = {}  # ordered: longest in its phase first

    def __len__(self) -> int:
        return len(self._slots)

    def admit(self, close: Callable[[], None]) -> Slot | None:
        """A slot for a new connection, or None when every slot has a request in flight."""
        if len(self._slots) >= self.limit:
            waiting = next((s for s in self._slots if s.phase is Phase.WAITING), None)
            if waiting is None:
                return None
            self.release(waiting)
            waiting.close()
        slot = Slot(close)
        self._slots[slot] = None
        return slot

    def enter(self, slot: Slot, phase: Phase) -> None:
        if slot in self._slots:
            del self._slots[slot]
            self._slots[slot] = None  # to the end: the order is time in the phase
        slot.phase = phase

    def release(self, slot: Slot) -> None:
        self._slots.pop(slot, None)
