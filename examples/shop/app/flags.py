"""Feature flags from Conveyor's evaluation API, used only when CONVEYOR_FLAGS_URL is set.

The shop asks `POST {url}/evaluate` per use, with a short timeout, and falls back to the
default on any failure: a flag service that is down must never take the shop down. It is
a few lines over httpx, which the shop already ships, so its image needs nothing more.
(A service that can take the dependency uses conveyor's OpenFeature provider instead,
which evaluates locally from cached definitions: see Conveyor's docs/flags.md.)
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

# Toggles a banner announcing the new catalogue above the product list.
NEW_CATALOGUE_BANNER = "new-catalogue-banner"
TIMEOUT_S = 0.5


class FlagClient:
    """Evaluates flags of one environment; closes its connections on `close`."""

    def __init__(
        self,
        url: str,
        environment: str,
        *,
        timeout: float = TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.environment = environment
        self._http = httpx.Client(base_url=url, timeout=timeout, transport=transport)

    def is_enabled(self, flag: str, context: Mapping[str, str], default: bool = False) -> bool:
        body = {"environment": self.environment, "flag": flag, "context": dict(context)}
        try:
            response = self._http.post("/evaluate", json=body)
            response.raise_for_status()
            value = response.json().get("value")
        except (httpx.HTTPError, ValueError, AttributeError):
            return default
        return value if isinstance(value, bool) else default

    def close(self) -> None:
        self._http.close()


class NoFlags:
    """Every flag at its default: what the shop does without CONVEYOR_FLAGS_URL."""

    def is_enabled(self, flag: str, context: Mapping[str, str], default: bool = False) -> bool:
        return default

    def close(self) -> None:
        pass


def flag_client(url: str, environment: str) -> FlagClient | NoFlags:
    return FlagClient(url, environment) if url else NoFlags()
