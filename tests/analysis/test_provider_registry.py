"""Every registered metrics provider is made from one site, is a `MetricsProvider`, and
matches the spec."""

from pathlib import Path

import pytest

from conveyor.analysis.providers.base import MetricsProvider, ProviderSite
from conveyor.analysis.providers.registry import PROVIDERS
from conveyor.deploy.routers.builtin import BuiltinRouter
from conveyor.deploy.runtimes.process import ProcessRuntime
from conveyor.errors import ConveyorError
from conveyor.spec.strategy import Analysis, PrometheusQueries
from conveyor.supply.oci.layout import LayoutStore

QUERIES = PrometheusQueries(url="http://127.0.0.1:9", requests="r{release}", errors="e{release}")


def site(tmp_path: Path, name: str) -> ProviderSite:
    settings = Analysis(provider=name, prometheus=QUERIES)
    router = BuiltinRouter(tmp_path / "router", 1, 2)  # made, never started
    runtime = ProcessRuntime(tmp_path / "runtime", LayoutStore(tmp_path / "images"))
    return ProviderSite(settings, "staging", router, runtime, on_sample=lambda samples: None)


def test_every_provider_is_made_under_its_own_name(tmp_path: Path) -> None:
    for name in PROVIDERS.names:
        provider = PROVIDERS.create(name, site(tmp_path, name))
        assert isinstance(provider, MetricsProvider)
        assert provider.name == name


def test_the_spec_allows_exactly_the_registered_providers() -> None:
    for name in PROVIDERS.names:
        assert Analysis.model_validate({"provider": name, "prometheus": QUERIES}).provider == name
    with pytest.raises(ValueError, match=r"unknown metrics provider 'datadog'"):
        Analysis.model_validate({"provider": "datadog"})
    schema = Analysis.model_json_schema()["properties"]["provider"]
    assert schema["enum"] == list(PROVIDERS.names)


def test_an_unknown_provider_is_refused_with_the_known_ones() -> None:
    with pytest.raises(
        ConveyorError, match=r"unknown metrics provider 'datadog' \(known: prometheus, router\)"
    ):
        PROVIDERS.factory("datadog")


def test_prometheus_without_its_queries_is_refused(tmp_path: Path) -> None:
    bare = site(tmp_path, "router")
    settings = Analysis(provider="router")
    with pytest.raises(ConveyorError, match="needs a `prometheus:` section"):
        PROVIDERS.create("prometheus", ProviderSite(settings, "staging", bare.router, bare.runtime))
