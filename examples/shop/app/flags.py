"""Feature flags through OpenFeature, from Conveyor's flag service when it is configured.

With CONVEYOR_FLAGS_URL set, the shop's OpenFeature client uses the standard OFREP
provider (openfeature-provider-ofrep) against Conveyor's OFREP endpoint for the shop's
environment; without it, every flag is at its default. OpenFeature answers the default on
any failure: a flag service that is down must never take the shop down.
"""

from __future__ import annotations

from collections.abc import Mapping

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider import FeatureProvider

# Toggles a banner announcing the new catalogue above the product list.
NEW_CATALOGUE_BANNER = "new-catalogue-banner"
TIMEOUT_S = 0.5
TARGETING_KEY = "remoteAddress"  # one visitor, one answer (a sticky rollout)


class FlagClient:
    """An OpenFeature client of its own domain, so several shops in one process (tests)
    keep their providers apart."""

    def __init__(self, provider: FeatureProvider, environment: str) -> None:
        self.environment = environment
        self.domain = f"shop-{environment}-{id(self)}"
        self._provider = provider
        api.set_provider(provider, self.domain)
        self._client = api.get_client(self.domain)

    def is_enabled(self, flag: str, context: Mapping[str, str], default: bool = False) -> bool:
        evaluation = EvaluationContext(
            targeting_key=context.get(TARGETING_KEY), attributes=dict(context)
        )
        return self._client.get_boolean_value(flag, default, evaluation)

    def close(self) -> None:
        self._provider.shutdown()


class NoFlags:
    """Every flag at its default: what the shop does without CONVEYOR_FLAGS_URL."""

    environment = ""

    def is_enabled(self, flag: str, context: Mapping[str, str], default: bool = False) -> bool:
        return default

    def close(self) -> None:
        pass


def flag_client(url: str, environment: str) -> FlagClient | NoFlags:
    if not url:
        return NoFlags()
    base = f"{url.rstrip('/')}/environments/{environment}"
    return FlagClient(OFREPProvider(base, timeout=TIMEOUT_S), environment)
