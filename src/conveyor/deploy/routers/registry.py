"""The one table of routers. Adding a router = one module (with a `from_site` factory)
and one line here; its name joins `RouterName` in spec/environments.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.backends import Backends

if TYPE_CHECKING:
    from conveyor.deploy.routers.base import Router, RouterSite

ROUTERS: Backends[RouterSite, Router] = Backends(
    "router",
    {
        "builtin": "conveyor.deploy.routers.builtin:from_site",
        "haproxy": "conveyor.deploy.routers.haproxy:from_site",
    },
)
