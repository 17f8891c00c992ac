"""The one table of metrics providers. Adding a provider = one module (with a
`from_site` factory) and one line here; its name joins `Provider` in spec/strategy.py.

Factories are named by module path and imported only when asked for: the `router`
provider reads the data plane and lives in deploy/, which analysis/ never imports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.backends import Backends

if TYPE_CHECKING:
    from conveyor.analysis.providers.base import MetricsProvider, ProviderSite

PROVIDERS: Backends[ProviderSite, MetricsProvider] = Backends(
    "metrics provider",
    {
        "router": "conveyor.deploy.router_metrics:from_site",
        "prometheus": "conveyor.analysis.providers.prometheus:from_site",
    },
)
