"""The typed registry of metrics providers. Adding one = its module (with a `from_site` factory)
and one line in `PROVIDER_FACTORIES` (conveyor/backends.py), which the spec also reads.

The `router` provider reads the data plane and lives in deploy/, which analysis/ never
imports: it is named by module path and imported only when asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.backends import PROVIDER_FACTORIES, Backends

if TYPE_CHECKING:
    from conveyor.analysis.providers.base import MetricsProvider, ProviderSite

PROVIDERS: Backends[ProviderSite, MetricsProvider] = Backends(
    "metrics provider", PROVIDER_FACTORIES
)
