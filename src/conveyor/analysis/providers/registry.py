"""The one table of metrics providers. Adding a provider = one module (with a
`from_site` factory) and one line here; its name joins `Provider` in spec/strategy.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.backends import Backends

if TYPE_CHECKING:
    from conveyor.analysis.providers.base import MetricsProvider, ProviderSite

PROVIDERS: Backends[ProviderSite, MetricsProvider] = Backends(
    "metrics provider",
    {
        "router": "conveyor.analysis.providers.router:from_site",
        "prometheus": "conveyor.analysis.providers.prometheus:from_site",
    },
)
