"""Security headers on every response, a CSP that allows exactly the page's inline code,
and optional extra routes mounted behind the same headers."""

from __future__ import annotations

import base64
import hashlib
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import APIRouter
from fastapi.testclient import TestClient

from app import __main__ as entry
from app.db import ProductStore
from app.main import EXTRA_ROUTES_MODULE
from app.security import DOCS_POLICY, PAGE_POLICY, inline_hashes

EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.mark.parametrize("path", ["/", "/api/products", "/api/products/9", "/healthz", "/nope"])
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    response = client.get(path)

    for name, value in EXPECTED.items():
        assert response.headers[name] == value
    assert response.headers["content-security-policy"] == PAGE_POLICY
    assert "strict-transport-security" not in response.headers  # plain HTTP: meaningless


def test_injected_faults_carry_the_headers_too(make_client: Callable[..., TestClient]) -> None:
    response = make_client(fault_rate=1.0).get("/api/products")

    assert response.status_code == 500
    assert response.headers["x-content-type-options"] == "nosniff"


def test_https_requests_get_hsts(client: TestClient) -> None:
    response = client.get("https://testserver/healthz")

    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_the_page_policy_allows_the_pages_own_script_and_style_and_nothing_else(
    client: TestClient,
) -> None:
    page = client.get("/").text
    # The catalogue's own, and the feedback widget's (app/feedback_widget.py).
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    styles = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    policy = dict(
        directive.strip().split(" ", 1) for directive in PAGE_POLICY.split(";") if directive
    )

    assert policy["default-src"] == "'none'"
    assert len(scripts) == len(styles) == 2
    assert policy["script-src"] == " ".join(csp_hash(script) for script in scripts)
    assert policy["style-src"] == " ".join(csp_hash(style) for style in styles)
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in PAGE_POLICY


def test_inline_hashes_change_with_the_code() -> None:
    assert inline_hashes("<script>a()</script><p><script>b()</script>", "script") == [
        csp_hash("a()"),
        csp_hash("b()"),
    ]
    assert inline_hashes("<p>no code</p>", "script") == []


def test_only_the_api_docs_get_the_looser_policy(client: TestClient) -> None:
    docs = client.get("/docs")

    assert docs.status_code == 200
    assert docs.headers["content-security-policy"] == DOCS_POLICY
    assert client.get("/redoc").headers["content-security-policy"] == DOCS_POLICY
    assert client.get("/docsearch").headers["content-security-policy"] == PAGE_POLICY


def test_the_server_does_not_announce_itself(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options))
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("SHOP_DB", str(tmp_path / "shop.db"))
    monkeypatch.delenv("CONVEYOR_FLAGS_URL", raising=False)  # no flag client to close

    assert entry.main() == 0
    assert served["port"] == 8123
    assert served["server_header"] is False


def test_an_extra_routes_module_is_mounted_behind_the_same_headers(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    def router(store: ProductStore) -> APIRouter:
        routes = APIRouter()

        @routes.get("/api/count")
        def count() -> dict[str, int]:
            return {"products": len(store.list_products())}

        return routes

    extra = types.ModuleType(f"app.{EXTRA_ROUTES_MODULE}")
    extra.__dict__["router"] = router  # what main.py looks up in the module
    monkeypatch.setitem(sys.modules, extra.__name__, extra)

    response = make_client().get("/api/count")

    assert response.json() == {"products": 0}
    assert response.headers["x-frame-options"] == "DENY"
