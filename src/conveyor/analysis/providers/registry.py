"""The typed registry of metrics providers. Adding one = its module (with a `from_site` factory)
and one line in `PROVIDER_FACTORIES` (conveyor/backends.py), which the spec also reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.backends import PROVIDER_FACTORIES, Backends

if TYPE_CHECKING:
    from conveyor.analysis.providers.base import MetricsProvider, ProviderSite

PROVIDERS: Backends[ProviderSite, MetricsProvider] = Backends(
    "metrics provider", PROVIDER_FACTORIES
)
