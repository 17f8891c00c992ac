"""The typed registry of runtimes. Adding one = its module (with a `from_site` factory)
and one line in `RUNTIME_FACTORIES` (conveyor/backends.py), which the spec also reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.backends import RUNTIME_FACTORIES, Backends

if TYPE_CHECKING:
    from conveyor.deploy.runtimes.base import Runtime, RuntimeSite

RUNTIMES: Backends[RuntimeSite, Runtime] = Backends("runtime", RUNTIME_FACTORIES)
