"""Locust's final statistics as a typed result: what conveyor/verify/locust_report.py
writes at the end of a run, validated.

Latencies are Locust's own. Locust keeps response times in rounded buckets (whole
milliseconds below 100 ms, tens below 1 s, hundreds above), so p50, p95 and p99 are
those rounded bucket values: a percentile can read a little above the exact maximum.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Metric(StrEnum):
    P95 = "p95"
    P99 = "p99"
    ERROR_RATE = "error_rate"
    RPS = "rps"

    @property
    def lower_is_better(self) -> bool:
        return self is not Metric.RPS

    def show(self, value: float) -> str:
        if self is Metric.ERROR_RATE:
            return f"{value:.2f}%"
        if self is Metric.RPS:
            return f"{value:.1f} req/s"
        return f"{value:g} ms"


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class EndpointStats(_Row):
    """One row of Locust's statistics (an endpoint by request name, or the total)."""

    method: str
    name: str
    requests: int = Field(ge=0)
    failures: int = Field(ge=0)
    p50_ms: float = Field(ge=0)
    p95_ms: float = Field(ge=0)
    p99_ms: float = Field(ge=0)
    max_ms: float = Field(ge=0)
    avg_ms: float = Field(ge=0)
    rps: float = Field(ge=0)

    @property
    def error_rate(self) -> float:
        """Failed requests, in percent of all requests."""
        return 100 * self.failures / self.requests if self.requests else 0.0

    def measure(self, metric: Metric) -> float:
        match metric:
            case Metric.P95:
                return self.p95_ms
            case Metric.P99:
                return self.p99_ms
            case Metric.ERROR_RATE:
                return self.error_rate
            case Metric.RPS:
                return self.rps


class FailedRequests(_Row):
    method: str
    name: str
    error: str
    occurrences: int = Field(ge=0)


class LocustfileError(_Row):
    count: int = Field(ge=0)
    message: str


class LoadStats(_Row):
    """What conveyor/verify/locust_report.py writes at the end of a Locust run."""

    format: Literal[1]
    endpoints: tuple[EndpointStats, ...]
    total: EndpointStats
    errors: tuple[FailedRequests, ...]
    exceptions: tuple[LocustfileError, ...]


class StatsUnreadable(ValueError):
    """The statistics file is not what the Locust plugin writes."""


def parse_stats(content: bytes) -> LoadStats:
    try:
        return LoadStats.model_validate_json(content)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise StatsUnreadable(f"{where}: {first['msg']}") from None
