"""The `prometheus` metrics provider: counts from PromQL templates against a Prometheus.

Each template (`analysis.prometheus` in the strategy) must return one number, a count
over the window, and is filled with:

- `{release}` and `{environment}`: escaped for a PromQL string literal;
- `{window}`: the window as a range duration in whole seconds, e.g. `5s`;
- `{threshold}`: the latency threshold in seconds as Python writes a float (`0.25`,
  `1.0`), for a histogram's `le` label.

PromQL's own braces are doubled: `sum(increase(http_requests_total{{release="{release}"}}
[{window}]))`. A vector result is summed over its series; an empty vector is 0.

Windows tile time: each one starts where the previous ended and lasts whole seconds, and
every query of a reading is evaluated at the window's end. `increase()` needs two samples
in its range, so a window is never shorter than two scrape intervals: a `read` sooner
than that returns zero counts over zero seconds and the next window covers the time.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, ValidationError

from conveyor.analysis.model import Absolute, Counts
from conveyor.analysis.providers.base import ProviderSite, Reading
from conveyor.errors import ConveyorError
from conveyor.spec.strategy import PrometheusQueries

PLACEHOLDER_HINT = (
    "placeholders are {release}, {environment}, {window} and {threshold}; "
    "write PromQL's own braces doubled: {{ and }}"
)


class _QueryData(BaseModel):
    result_type: str = Field(alias="resultType")
    result: Any


class _ApiAnswer(BaseModel):
    """The envelope of every Prometheus HTTP API answer."""

    status: Literal["success", "error"]
    data: _QueryData | None = None
    error: str | None = None


class PrometheusProvider:
    """Counts per release from the templates of `queries` (see the module docstring).

    `scrape_interval` is how often Prometheus scrapes the metrics the templates read.
    Absolute figures (p99, CPU, memory) are not read: they stay None.
    """

    name = "prometheus"

    def __init__(
        self,
        queries: PrometheusQueries,
        environment: str,
        *,
        scrape_interval: float = 1.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queries = queries
        self.environment = environment
        self.min_window = max(1, math.ceil(2 * scrape_interval))
        self._timeout = timeout
        self._clock = clock
        self._releases: tuple[str, ...] = ()
        self._threshold = 0.0
        self._window_start: float | None = None

    def start(self, releases: Sequence[str], latency_threshold: float) -> None:
        """Remember where the first window starts; every template is run once here, so a
        wrong URL or PromQL fails at the start rather than at the first reading."""
        self._releases = tuple(releases)
        self._threshold = latency_threshold
        now = self._clock()
        self._counts_at(now, self.min_window)
        self._window_start = now

    def read(self) -> Mapping[str, Reading]:
        if self._window_start is None:
            raise RuntimeError("PrometheusProvider.start() has not been called")
        seconds = math.floor(self._clock() - self._window_start)
        if seconds < self.min_window:
            return {release: Reading(Counts(), Absolute(), 0.0) for release in self._releases}
        end = self._window_start + seconds
        counts = self._counts_at(end, seconds)
        self._window_start = end
        return {
            release: Reading(counts[release], Absolute(), float(seconds))
            for release in self._releases
        }

    def _counts_at(self, end: float, seconds: int) -> dict[str, Counts]:
        # Every template is filled before any is sent: a typo fails before the network.
        filled = {release: self._filled(release, seconds) for release in self._releases}
        with httpx.Client(base_url=self.queries.url, timeout=self._timeout) as client:
            return {
                release: self._release_counts(client, promql, end)
                for release, promql in filled.items()
            }

    def _filled(self, release: str, seconds: int) -> dict[str, str]:
        """The release's PromQL by count name ("requests", "errors", "slow")."""
        templates = {
            "requests": self.queries.requests,
            "errors": self.queries.errors,
            "slow": self.queries.slow,
        }
        return {
            name: self._fill(name, template, release, seconds)
            for name, template in templates.items()
            if template is not None
        }

    def _release_counts(self, client: httpx.Client, promql: dict[str, str], end: float) -> Counts:
        def count(name: str) -> int:
            if name not in promql:
                return 0
            return max(round(self._query(client, name, promql[name], end)), 0)

        requests = count("requests")
        # Series extrapolated apart can disagree by a little: a part is never above the whole.
        return Counts(
            requests=requests,
            errors=min(count("errors"), requests),
            slow=min(count("slow"), requests),
        )

    def _fill(self, name: str, template: str, release: str, seconds: int) -> str:
        try:
            return template.format(
                release=_promql_string(release),
                environment=_promql_string(self.environment),
                window=f"{seconds}s",
                threshold=repr(float(self._threshold)),
            )
        except (KeyError, IndexError, ValueError) as error:
            raise ConveyorError(
                f"the prometheus {name} query {template!r} cannot be filled in: {error!r}",
                hint=PLACEHOLDER_HINT,
            ) from error

    def _query(self, client: httpx.Client, name: str, promql: str, at: float) -> float:
        url = self.queries.url
        try:
            response = client.get("/api/v1/query", params={"query": promql, "time": f"{at:.3f}"})
            answer = _ApiAnswer.model_validate_json(response.content)
        except httpx.HTTPError as error:
            raise ConveyorError(
                f"cannot reach Prometheus at {url}: {error}",
                hint="check analysis.prometheus.url and that Prometheus is running",
            ) from error
        except ValidationError as error:
            raise ConveyorError(
                f"{url} did not answer like a Prometheus server (HTTP {response.status_code})",
                hint="analysis.prometheus.url is the server's base URL, e.g. http://127.0.0.1:9090",
            ) from error
        if answer.status == "error" or answer.data is None:
            raise ConveyorError(
                f"Prometheus rejected the {name} query {promql!r}: {answer.error}",
                hint=f"check analysis.prometheus.{name}",
            )
        return _one_number(name, promql, answer.data)


def _one_number(name: str, promql: str, data: _QueryData) -> float:
    """The value of a scalar, or the sum of a vector's series (0 when empty)."""
    try:
        if data.result_type == "scalar":
            values = [float(data.result[1])]
        elif data.result_type == "vector":
            values = [float(series["value"][1]) for series in data.result]
        else:
            values = [math.nan]
    except (TypeError, KeyError, IndexError, ValueError):
        values = [math.nan]
    total = math.fsum(values)
    if not math.isfinite(total):
        raise ConveyorError(
            f"the prometheus {name} query {promql!r} returned a {data.result_type} that is "
            "not one finite number",
            hint="each query must return a count over the window, e.g. sum(increase(...))",
        )
    return total


def _promql_string(value: str) -> str:
    """`value` escaped for use inside a double-quoted PromQL string."""
    return json.dumps(value)[1:-1]


def from_site(site: ProviderSite) -> PrometheusProvider:
    """The registry's factory: the settings' `prometheus:` section (the spec requires it
    with `provider: prometheus`)."""
    queries = site.settings.prometheus
    if queries is None:
        raise ConveyorError(
            "provider prometheus needs a `prometheus:` section",
            hint="add `prometheus: {url: ..., requests: ..., errors: ...}` to the analysis",
        )
    return PrometheusProvider(queries, site.environment, scrape_interval=site.settings.interval)
