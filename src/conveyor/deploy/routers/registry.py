"""The typed registry of routers. Adding one = its module (with a `from_site` factory)
and one line in `ROUTER_FACTORIES` (conveyor/backends.py), which the spec also reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.backends import ROUTER_FACTORIES, Backends

if TYPE_CHECKING:
    from conveyor.deploy.routers.base import Router, RouterSite

ROUTERS: Backends[RouterSite, Router] = Backends("router", ROUTER_FACTORIES)
