"""Every registered metrics provider is made from one site, is a `MetricsProvider`, and
matches the spec."""

from pathlib import Path

import pytest

from conveyor.analysis.providers.base import MetricsProvider, ProviderSite
from conveyor.analysis.providers.registry import PROVIDERS
from conveyor.deploy.routers.builtin import BuiltinRouter
from conveyor.deploy.runtimes.process import ProcessRuntime
from conveyor.deploy.sampler import DataPlane
from conveyor.errors import ConveyorError
from conveyor.spec.strategy import Analysis, PrometheusQueries
from conveyor.supply.oci.layout import LayoutStore

QUERIES = PrometheusQueries(url="http://127.0.0.1:9", requests="r{release}", errors="e{release}")


def site(tmp_path: Path, name: str) -> ProviderSite:
    settings = Analysis(provider=name, prometheus=QUERIES)
    router = BuiltinRouter(tmp_path / "router", 1, 2)  # made, never started
    runtime = ProcessRuntime(tmp_path / "runtime", LayoutStore(tmp_path / "images"))
    plane = DataPlane(router, runtime, on_sample=lambda samples: None)
    return ProviderSite(settings, "staging", target=plane)


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


def test_prometheus_without_its_queries_is_refused() -> None:
    settings = Analysis(provider="router")
    with pytest.raises(ConveyorError, match="needs a `prometheus:` section"):
        PROVIDERS.create("prometheus", ProviderSite(settings, "staging"))


def test_prometheus_needs_no_data_plane() -> None:
    """Flag releases make it with nothing but the settings and the environment."""
    settings = Analysis.model_validate({"provider": "prometheus", "prometheus": QUERIES})
    provider = PROVIDERS.create("prometheus", ProviderSite(settings, "production"))
    assert provider.name == "prometheus"


def test_the_router_provider_without_a_data_plane_is_a_clear_error() -> None:
    with pytest.raises(ConveyorError, match="reads an environment's router: staging gave it none"):
        PROVIDERS.create("router", ProviderSite(Analysis(), "staging"))
