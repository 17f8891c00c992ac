"""The one table of runtimes. Adding a runtime = one module (with a `from_site`
factory) and one line here; its name joins `RuntimeName` in spec/environments.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.backends import Backends

if TYPE_CHECKING:
    from conveyor.deploy.runtimes.base import Runtime, RuntimeSite

RUNTIMES: Backends[RuntimeSite, Runtime] = Backends(
    "runtime",
    {
        "process": "conveyor.deploy.runtimes.process:from_site",
        "podman": "conveyor.deploy.runtimes.podman:from_site",
    },
)
