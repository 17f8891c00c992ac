"""Prometheus metrics: request counts by route template, latency, private registries."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

Reader = Callable[[TestClient, str, dict[str, str]], float | None]


def test_requests_are_counted_by_method_route_template_and_status(
    client: TestClient, read_metric: Reader
) -> None:
    created = client.post("/api/products", json={"name": "Cup", "price": 2}).json()
    client.get(f"/api/products/{created['id']}")
    client.get("/api/products/999")
    client.get("/api/products/998")

    def count(method: str, route: str, status: str) -> float | None:
        labels = {"method": method, "route": route, "status": status}
        return read_metric(client, "shop_http_requests_total", labels)

    assert count("POST", "/api/products", "201") == 1
    assert count("GET", "/api/products/{product_id}", "200") == 1
    assert count("GET", "/api/products/{product_id}", "404") == 2


def test_latency_is_observed_per_route(client: TestClient, read_metric: Reader) -> None:
    client.get("/healthz")
    client.get("/healthz")

    observed = read_metric(
        client, "shop_http_request_duration_seconds_count", {"route": "/healthz"}
    )

    assert observed == 2


def test_unknown_paths_share_one_label(client: TestClient, read_metric: Reader) -> None:
    client.get("/no/such/page")
    client.get("/another/one")

    labels = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert read_metric(client, "shop_http_requests_total", labels) == 2


def test_wrong_method_is_labelled_with_the_route(client: TestClient, read_metric: Reader) -> None:
    assert client.put("/healthz").status_code == 405

    labels = {"method": "PUT", "route": "/healthz", "status": "405"}
    assert read_metric(client, "shop_http_requests_total", labels) == 1


def test_build_info_names_the_version(client: TestClient, read_metric: Reader) -> None:
    assert read_metric(client, "shop_build_info", {"version": "1.2.3"}) == 1


def test_each_app_counts_only_its_own_requests(
    make_client: Callable[..., TestClient], read_metric: Reader
) -> None:
    first, second = make_client(), make_client()
    first.get("/healthz")

    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    assert read_metric(first, "shop_http_requests_total", labels) == 1
    assert read_metric(second, "shop_http_requests_total", labels) is None


def test_metrics_use_the_prometheus_text_format(client: TestClient) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE shop_http_requests_total counter" in response.text


def test_metrics_offer_openmetrics_to_scrapers_asking_for_it(client: TestClient) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})

    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
