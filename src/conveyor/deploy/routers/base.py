"""The router Protocol: the data plane that splits an environment's traffic.

Backends, one module each: `builtin` (an asyncio reverse proxy in its own long-running
process, the default) and `haproxy` (generated configuration, weights changed live
through the runtime API socket). A router keeps serving with its last routes when the
Conveyor process that configured it is killed.
"""

from __future__ import annotations

from typing import Protocol

from conveyor.deploy.model import ReleaseSignals, RouteTable


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
