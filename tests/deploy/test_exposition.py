"""The environment's golden signals in the Prometheus text format: read back with
prometheus_client's parser and checked by the real promtool."""

from __future__ import annotations

import math
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.deploy.exposition import exposition
from conveyor.deploy.model import ReleaseSignals, Saturation, SignalSample

INF = math.inf
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def sample(
    release_id: str,
    ts: float,
    requests: int,
    *,
    saturation: Saturation | None = None,
    buckets: dict[float, int] | None = None,
    weight: int = 100,
) -> SignalSample:
    signals = ReleaseSignals(
        release_id=release_id,
        requests=requests,
        responses_4xx=requests // 10,
        responses_5xx=requests // 20,
        connect_failures=3,
        latency_buckets=buckets if buckets is not None else {},
        latency_sum=requests * 0.05,
    )
    return SignalSample("production", release_id, ts, signals, saturation, weight)


def parsed(text: bytes) -> Series:
    """Every sample as (name, sorted labels) -> value."""
    return {
        (point.name, tuple(sorted(point.labels.items()))): point.value
        for family in text_string_to_metric_families(text.decode())
        for point in family.samples
    }


def labels(release: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"environment": "production", "release": release, **extra}.items()))


def promtool_check(text: bytes) -> subprocess.CompletedProcess[bytes]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required: apt-get install -y prometheus"
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, check=False
    )


@pytest.fixture
def two_releases() -> list[SignalSample]:
    running = Saturation(cpu_seconds=12.5, memory_bytes=52_428_800, open_files=17)
    buckets = {0.005: 40, 0.1: 150, 1.0: 190, INF: 200}
    return [
        sample("shop-old", 100.0, 100, saturation=running, buckets={0.1: 100, INF: 100}),
        sample("shop-old", 110.0, 200, saturation=running, buckets=buckets, weight=90),
        sample("shop-new", 110.0, 20, weight=10),  # not running here: no saturation
    ]


def test_the_latest_sample_of_each_release_parses_back(two_releases: list[SignalSample]) -> None:
    series = parsed(exposition("production", two_releases))

    old = labels("shop-old")
    assert series["conveyor_release_requests_total", old] == 200
    assert series["conveyor_release_responses_total", labels("shop-old", code="4xx")] == 20
    assert series["conveyor_release_responses_total", labels("shop-old", code="5xx")] == 10
    assert series["conveyor_release_responses_total", labels("shop-old", code="other")] == 170
    assert series["conveyor_release_connect_failures_total", old] == 3
    assert series["conveyor_release_weight", old] == 90
    assert series["conveyor_release_weight", labels("shop-new")] == 10
    assert series["conveyor_release_cpu_seconds_total", old] == 12.5
    assert series["conveyor_release_memory_bytes", old] == 52_428_800
    assert series["conveyor_release_open_files", old] == 17


def test_the_latency_histogram_has_the_router_buckets_sum_and_count(
    two_releases: list[SignalSample],
) -> None:
    series = parsed(exposition("production", two_releases))

    name = "conveyor_release_request_duration_seconds"
    buckets = {
        dict(key)["le"]: value
        for (metric, key), value in series.items()
        if metric == f"{name}_bucket" and dict(key)["release"] == "shop-old"
    }
    assert buckets == {"0.005": 40, "0.1": 150, "1.0": 190, "+Inf": 200}
    assert series[f"{name}_sum", labels("shop-old")] == pytest.approx(10.0)
    assert series[f"{name}_count", labels("shop-old")] == 200


def test_a_release_without_buckets_still_counts_every_request(
    two_releases: list[SignalSample],
) -> None:
    series = parsed(exposition("production", two_releases))

    name = "conveyor_release_request_duration_seconds"
    assert series[f"{name}_bucket", labels("shop-new", le="+Inf")] == 20
    assert series[f"{name}_count", labels("shop-new")] == 20


def test_saturation_is_exposed_only_for_releases_that_have_it(
    two_releases: list[SignalSample],
) -> None:
    series = parsed(exposition("production", two_releases))

    saturated = {
        dict(key)["release"]
        for (metric, key) in series
        if metric
        in {
            "conveyor_release_cpu_seconds_total",
            "conveyor_release_memory_bytes",
            "conveyor_release_open_files",
        }
    }
    assert saturated == {"shop-old"}


def test_every_metric_has_help_text(two_releases: list[SignalSample]) -> None:
    families = text_string_to_metric_families(exposition("production", two_releases).decode())

    assert all(family.documentation.strip() for family in families)


def test_samples_of_another_environment_are_refused(two_releases: list[SignalSample]) -> None:
    with pytest.raises(ValueError, match="'staging'"):
        exposition("staging", two_releases)


def test_the_exposition_passes_promtool(two_releases: list[SignalSample]) -> None:
    check = promtool_check(exposition("production", two_releases))

    assert (check.returncode, check.stdout, check.stderr) == (0, b"", b"")


def test_an_empty_environment_passes_promtool() -> None:
    text = exposition("production", [])

    check = promtool_check(text)

    assert (check.returncode, check.stdout, check.stderr) == (0, b"", b"")
    assert parsed(text) == {}
