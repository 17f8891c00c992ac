"""The router Protocol: the data plane that splits an environment's traffic.

Backends, one module each and listed in `registry.py`: `builtin` (an asyncio reverse
proxy in its own long-running process, the default) and `haproxy` (generated
configuration, weights changed live through the runtime API socket). A router keeps
serving with its last routes when the Conveyor process that configured it is killed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from conveyor.deploy.model import ReleaseSignals, RouteTable


@dataclass(frozen=True)
class RouterSite:
    """What every router backend is made from (its factory's one argument)."""

    folder: Path  # the environment's router folder: its process's state and routes
    port: int  # public
    admin_port: int
    # Origins besides the environment's own whose pages may post feedback (CORS).
    feedback_origins: tuple[str, ...] = ()


@runtime_checkable
class Router(Protocol):
    name: str

    def ensure_running(self) -> str:
        """Start the router if it is not running; returns the URL users reach."""
        ...

    def set_routes(self, routes: RouteTable) -> None:
        """Apply new weights at once; requests in flight finish on their backend."""
        ...

    def routes(self) -> RouteTable: ...

    def signals(self) -> list[ReleaseSignals]: ...

    def stop(self) -> None: ...
