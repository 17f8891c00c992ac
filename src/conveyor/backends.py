"""The registry lines of every pluggable backend, and the lazy table that reads them.

Adding a runtime, router or metrics provider is one module (with a `from_site` factory)
and one line in the matching table below. The tables sit at the bottom layer so the spec
can offer their names (`runtime:`, `router:`, `provider:` in conveyor.yml) without
importing `deploy/` or `analysis/`; each kind's typed registry (`RUNTIMES` in
deploy/runtimes/registry.py, ...) wraps its table.

Each entry names a factory as `module:function`; the module is imported only when that
backend is asked for, so `conveyor run` and `conveyor lint` never load a deploy backend.
Every factory of a kind takes the same "site" (what any backend of that kind needs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Final, Generic, TypeVar

from conveyor.errors import ConveyorError

RUNTIME_FACTORIES: Final[Mapping[str, str]] = {
    "process": "conveyor.deploy.runtimes.process:from_site",
    "podman": "conveyor.deploy.runtimes.podman:from_site",
    "kubernetes": "conveyor.deploy.kubernetes.runtime:from_site",
}
ROUTER_FACTORIES: Final[Mapping[str, str]] = {
    "builtin": "conveyor.deploy.routers.builtin:from_site",
    "haproxy": "conveyor.deploy.routers.haproxy:from_site",
}
PROVIDER_FACTORIES: Final[Mapping[str, str]] = {
    "router": "conveyor.deploy.router_metrics:from_site",
    "prometheus": "conveyor.analysis.providers.prometheus:from_site",
}

# A forge's factory takes its own name as its site: Gitea and Forgejo share a module.
FORGE_FACTORIES: Final[Mapping[str, str]] = {
    "github": "conveyor.forge.github:from_site",
    "gitlab": "conveyor.forge.gitlab:from_site",
    "gitea": "conveyor.forge.gitea:from_site",
    "forgejo": "conveyor.forge.gitea:from_site",
}

Site = TypeVar("Site")
Backend = TypeVar("Backend")


class Backends(Generic[Site, Backend]):
    """Name to factory, for one kind; `kind` is how errors name it ("runtime")."""

    def __init__(self, kind: str, factories: Mapping[str, str]) -> None:
        self.kind = kind
        self._factories = dict(factories)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    def factory(self, name: str) -> Callable[[Site], Backend]:
        """The factory registered as `name`; an unknown name is refused with the known."""
        where = self._factories.get(name)
        if where is None:
            raise ConveyorError(
                f"unknown {self.kind} {name!r} (known: {', '.join(self.names)})",
                hint=f"choose one of the registered {self.kind}s",
            )
        module_name, _, function_name = where.partition(":")
        made: Callable[[Site], Backend] = getattr(
            importlib.import_module(module_name), function_name
        )
        return made

    def create(self, name: str, site: Site) -> Backend:
        return self.factory(name)(site)
